"""Run plots (nctheory.runplots): every panel has a y label, integer epoch ticks and the run's setting, beta_NC and
the cosines sit on separate axes, and a curve equal to another is drawn so that both are visible."""

from __future__ import annotations

import json

import pytest

from nctheory import runplots
from nctheory.monitor import RunFolder


def _run(tmp_path, rows, config):
    tmp_path.mkdir(exist_ok=True)
    folder = RunFolder(tmp_path)
    folder.open_metrics()
    for r in rows:
        folder.write_row(r)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.fixture
def figures(monkeypatch):
    """The figures plot_run / compare_runs save, kept open for inspection."""
    saved = {}

    def keep(fig, path, **kw):
        saved[path.name] = fig
        return path

    monkeypatch.setattr(runplots, "atomic_savefig", keep)
    monkeypatch.setattr(runplots.pyplot(), "close", lambda fig=None: None)
    return saved


def test_panels_label_axes_use_integer_epochs_and_say_the_setting(tmp_path, figures):
    rows = [{"epoch": e, "loss": 10.0 / e, "bound": 1.0, "excess": 10.0 / e - 1, "delta_to_of": 0.5 / e,
             "delta_to_etf": 0.9, "delta_to_ufm": 0.5 / e, "beta_nc": 3.0 / e, "mean_class_cosine": 0.2 / e,
             "ncc_train": 0.5, "ncc_test": 0.4} for e in (1, 2, 3)]
    run = _run(tmp_path, rows, {"writer": "nctheory train", "counts": [100, 100, 10, 10],
                                "config": {"loss": "scl_prototypes", "n_w": 100, "tau": 0.1}})
    runplots.plot_run(run)
    assert set(figures) == {"loss.png", "excess.png", "geometry.png", "collapse.png", "accuracy.png"}
    for name, fig in figures.items():
        assert "R = 10, n_w = 100, τ = 0.1" in fig._suptitle.get_text(), name
        for ax in fig.axes:
            assert ax.get_ylabel() and ax.get_xlabel() == "epoch", name
            assert all(float(t).is_integer() for t in ax.get_xticks()), name
    collapse = figures["collapse.png"].axes
    assert len(collapse) == 2  # beta_NC and the cosine on separate axes
    assert [line.get_label() for ax in collapse for line in ax.get_lines()] == ["β_NC", "avg class-mean cosine"]
    lines = {line.get_label(): line for line in figures["geometry.png"].axes[0].get_lines()}
    twin = lines["Δ to UFM optimum (= Δ to OF)"]  # equal to Delta to OF: said so, dashed, open markers, on top
    assert twin.get_linestyle() == "--" and twin.get_markerfacecolor() == "none"
    assert twin.get_zorder() > lines["Δ to OF"].get_zorder()
    assert "Δ to ETF" in lines  # a different curve keeps its plain label


def test_a_curve_that_differs_is_not_called_equal(tmp_path, figures):
    rows = [{"epoch": e, "delta_to_of": 0.5 / e, "delta_to_ufm": 0.5 / e * (1 + 1e-9)} for e in (1, 2)]
    runplots.plot_run(_run(tmp_path, rows, {"counts": [5, 5], "config": {"tau": 1.0}}))
    labels = [line.get_label() for line in figures["geometry.png"].axes[0].get_lines()]
    assert labels == ["Δ to OF", "Δ to UFM optimum"]
    assert runplots.run_setting(tmp_path) == "R = 1, τ = 1"


def test_compare_labels_runs_with_their_setting(tmp_path, figures):
    a = _run(tmp_path / "a", [{"epoch": 1, "excess": 2.0}, {"epoch": 2, "excess": 1.0}],
             {"counts": [10, 1], "config": {"name": "R10", "tau": 0.5}})
    b = _run(tmp_path / "b", [{"epoch": 1, "excess": 2.0}, {"epoch": 2, "excess": 1.0}],
             {"counts": [10, 10], "config": {"name": "R1", "tau": 0.5}})
    runplots.compare_runs([a, b], ["excess"], tmp_path / "c.png")
    ax = figures["c.png"].axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["R10 (R = 10, τ = 0.5)", "R1 (R = 1, τ = 0.5) (= R10 (R = 10, τ = 0.5))"]
    assert ax.get_ylabel() == "excess" and all(float(t).is_integer() for t in ax.get_xticks())
