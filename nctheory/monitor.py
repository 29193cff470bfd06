"""Run folders, and :class:`Monitor`: the run folder of ``nctheory train`` written from any training loop.

A run folder (``nctheory plot RUN`` and ``nctheory compare RUN...`` read it):

    config.json     {"writer": "nctheory train" | "nctheory.Monitor", "config": {...}, "k", "counts", ...}
    metrics.csv     one row per measured epoch, the columns :data:`COLUMNS` (empty where not measured)
    summary.json    the last value of every column, the counts, and what the bound means for these features
    gram_final.npy  the class-mean Gram G_M of the last measured epoch
    embeddings.npz  the last measured features: keys features, labels (and test_features, test_labels),
                    so ``nctheory measure RUN/embeddings.npz`` can be rerun on them
    *.png           the plots
    tensorboard/    TensorBoard event files of every numeric column (optional; needs the tensorboard package)
    checkpoint.pt   (``nctheory train`` only) everything a resumed run needs

:class:`RunFolder` writes these files (the trainer and Monitor share it); the per-epoch geometry columns
come from :func:`nctheory.measure.geometry_from_statistics` for both, and the bound from
:mod:`nctheory.bounds`.

Columns of metrics.csv
- epoch: epochs done (1 after the first).
- loss: the papers' sum form (Kini et al. Eq. 2 full batch / Eq. 4 summed over the epoch's batches), float64.
  ``nctheory train``: summed over the batches as trained (parameters change between batches; each batch's
  term is bounded by its own Thm-2 term, so the sum bound holds for the epoch sum). Monitor: of the features
  given to :meth:`Monitor.log_epoch`, over the epoch's batches (or the full batch).
- loss_per_anchor: loss / number of anchors (the reference SupCon mean form with base_tau = tau).
- bound / excess (SCL): Kini Thm 1 (one full batch) or Thm 2 (the epoch's batches), with the view duplication
  of every batch, :func:`nctheory.bounds.batch_bound`, and loss - bound. A theorem only for unit features in
  the non-negative orthant; summary.json records ``bound_is_theorem``.
- zero_feature_rows: feature rows that are exactly 0 (train: before normalisation). Such a row is not a unit
  vector, so in that epoch the bound is outside Thm 1/2's hypotheses.
- delta_to_of, delta_to_etf, delta_to_prototypes, delta_to_ufm, beta_nc, mean_class_cosine, ncc_train,
  ncc_test, ncc_test_pre, geometry and the Koromilas columns: :func:`nctheory.measure.geometry_from_statistics`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import time
from pathlib import Path

import numpy as np

from nctheory import bounds
from nctheory._json import jsonable
from nctheory.errors import InputError
from nctheory.measure import (CHUNK_ROWS, UNIT_TOL, ArrayRows, accumulate, encode_labels, geometry_from_statistics,
                              mapping_note, scl_plan, scl_streamed, ufm_optimum)
from nctheory.runfolder import (MAX_EPOCH, TENSORBOARD_DIR, TIMING_COLUMNS, RunLock,  # noqa: F401 (TIMING_COLUMNS: re-exported)
                                atomic_save_npy, atomic_write, atomic_write_csv, atomic_write_json, read_metrics_csv,
                                repair_metrics_csv, run_state)
from nctheory.validate import boolean, output_dir, real

BASE_COLUMNS = ["epoch", "loss", "loss_per_anchor", "bound", "excess", "lr", "n_batches", "epoch_seconds",
                "images_per_second", "zero_feature_rows"]
GEOMETRY_COLUMNS = ["delta_to_of", "delta_to_etf", "delta_to_prototypes", "delta_to_ufm", "beta_nc",
                    "mean_class_cosine", "ncc_train", "ncc_test", "ncc_test_pre", "geometry"]
KOROMILAS_COLUMNS = ["erank_intra", "erank_inter", "erank_weights", "align_weight_instance", "align_weight_class",
                     "mir", "hdr"]
COLUMNS = BASE_COLUMNS + GEOMETRY_COLUMNS + KOROMILAS_COLUMNS

BOUND_NOTE = ("Kini et al. Thm 1/2 with e^{-1/tau}, summed over the epoch's batches with their view duplication; "
              "a theorem for unit features in the non-negative orthant; with signed features it is reported for "
              "reference only, and in an epoch with zero_feature_rows > 0 it is outside its hypotheses")


def write_json(obj, path) -> Path:
    """A run file's JSON (config.json, summary.json), written atomically (:func:`nctheory.runfolder.atomic_write`)."""
    return atomic_write_json(path, obj, default=jsonable)


def tensorboard_available() -> bool:
    return importlib.util.find_spec("tensorboard") is not None


def check_tensorboard(wanted: bool) -> None:
    if wanted and not tensorboard_available():
        raise InputError("tensorboard event files need the tensorboard package (pip install tensorboard)")


class RunFolder:
    """The files of a run folder (module docstring): config.json, metrics.csv rows, summary.json,
    gram_final.npy, embeddings.npz and optional TensorBoard event files. Every file is written atomically
    (:mod:`nctheory.runfolder`); metrics.csv is rewritten whole after each row, so a kill leaves the old
    file or the new one. The caller holds the folder's :class:`nctheory.runfolder.RunLock`."""

    def __init__(self, out, tensorboard: bool = False):
        self.out = Path(out)
        self.rows: list[dict] = []   # parsed values (floats, text)
        self._csv: list[dict] = []   # the same rows as written (strings)
        check_tensorboard(tensorboard)
        self.tensorboard = bool(tensorboard)
        self._tb = None

    # ---- metrics.csv
    def open_metrics(self, start_epoch: int = 0) -> None:
        """Start metrics.csv; resuming after epoch ``start_epoch`` of a checkpoint, keep its rows 1..start_epoch
        (:func:`nctheory.runfolder.repair_metrics_csv`: rows after it and a torn last line dropped, missing rows
        refused)."""
        path = self.out / "metrics.csv"
        rows = repair_metrics_csv(path, start_epoch, fieldnames=COLUMNS).rows if start_epoch > 0 else []
        self._set_rows(rows)

    def continue_metrics(self, last_epoch: int) -> None:
        """Continue a metrics.csv without a checkpoint (a Monitor run): keep the rows of epochs <= last_epoch
        (:func:`nctheory.runfolder.read_metrics_csv` checks the file) and write empty rows up to it."""
        path = self.out / "metrics.csv"
        rows = []
        if path.exists() and last_epoch > 0:
            rows = [r for r in read_metrics_csv(path, fieldnames=COLUMNS).rows if int(r["epoch"]) <= last_epoch]
        rows += [{c: (str(e) if c == "epoch" else "") for c in COLUMNS} for e in range(len(rows) + 1, last_epoch + 1)]
        self._set_rows(rows)

    def _set_rows(self, rows: list[dict]) -> None:
        self._csv = [{c: r.get(c, "") for c in COLUMNS} for r in rows]
        self.rows = [{k: _parse(v) for k, v in r.items()} for r in self._csv]
        atomic_write_csv(self.out / "metrics.csv", COLUMNS, self._csv)

    def write_row(self, row: dict) -> None:
        """Append epoch ``row["epoch"]``'s row (epochs run 1, 2, ... in metrics.csv: a later epoch first gets
        empty rows for the epochs between, which were not measured)."""
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise RuntimeError(f"metrics row has unknown columns {sorted(unknown)}")
        epoch = int(row["epoch"])
        if epoch <= len(self._csv):
            raise RuntimeError(f"metrics row for epoch {epoch} after epoch {len(self._csv)}")
        for e in range(len(self._csv) + 1, epoch):
            self._csv.append({c: (str(e) if c == "epoch" else "") for c in COLUMNS})
            self.rows.append({c: (float(e) if c == "epoch" else "") for c in COLUMNS})
        self._csv.append({c: _fmt(row.get(c)) for c in COLUMNS})
        self.rows.append(row)
        atomic_write_csv(self.out / "metrics.csv", COLUMNS, self._csv)
        if self.tensorboard:
            self._tensorboard_row(row)

    def _tensorboard_row(self, row: dict) -> None:
        if self._tb is None:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.out / TENSORBOARD_DIR))
        step = int(row["epoch"])
        for c in COLUMNS:
            v = row.get(c)
            if c != "epoch" and isinstance(v, (int, float, np.integer, np.floating)) and math.isfinite(float(v)):
                self._tb.add_scalar(c, float(v), step)
        self._tb.flush()

    # ---- other files
    def write_config(self, info: dict) -> None:
        write_json(info, self.out / "config.json")

    def save_gram(self, G) -> None:
        atomic_save_npy(self.out / "gram_final.npy", np.asarray(G, dtype=np.float64))

    def save_embeddings(self, features, labels, test_features=None, test_labels=None) -> Path:
        """embeddings.npz (keys features, labels, test_features, test_labels), written atomically."""
        arrs = {"features": np.asarray(features), "labels": np.asarray(labels)}
        if test_features is not None:
            arrs["test_features"], arrs["test_labels"] = np.asarray(test_features), np.asarray(test_labels)
        return atomic_write(self.out / "embeddings.npz", lambda f: np.savez(f, **arrs))

    def final_values(self) -> dict:
        """The last non-empty value of every column."""
        final = {}
        for r in self.rows:
            for c, v in r.items():
                if v is not None and v != "" and not (isinstance(v, float) and math.isnan(v)):
                    final[c] = v
        return final

    def summary(self, **extra) -> dict:
        """The run's summary: epochs, ``extra`` (``seconds``: the time of this process, so of the resumed part
        only for a resumed run), the final value of every column, and ``seconds_all_epochs``: the sum of
        metrics.csv's ``epoch_seconds`` over every epoch, the parts before a resume included."""
        counted = [r for r in self.rows if isinstance(r.get("zero_feature_rows"), (int, float))
                   and not (isinstance(r["zero_feature_rows"], float) and math.isnan(r["zero_feature_rows"]))]
        measured = [r for r in self.rows if any(v not in ("", None) for c, v in r.items() if c != "epoch")]
        out = {"epochs": len(self.rows), **extra, "final": self.final_values(),
               "epochs_with_zero_feature_rows": [int(r["epoch"]) for r in counted if r["zero_feature_rows"] > 0]}
        timed = [r["epoch_seconds"] for r in self.rows if isinstance(r.get("epoch_seconds"), (int, float))
                 and math.isfinite(r["epoch_seconds"])]
        if timed:
            out["seconds_all_epochs"] = float(sum(timed))
        if len(counted) < len(measured):  # epochs of a run resumed from a version that did not count them
            out["epochs_without_zero_row_count"] = [int(r["epoch"]) for r in measured if r not in counted]
        return out

    def write_summary(self, summary: dict) -> None:
        write_json(summary, self.out / "summary.json")

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        return repr(float(v))
    if isinstance(v, np.integer):
        return int(v)  # full precision so a resumed run can be compared exactly
    return v


def _parse(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return v


def _stored(rows: ArrayRows) -> np.ndarray:
    """The features as embeddings.npz stores them: float64 input stays float64, anything else float32."""
    dt = str(rows.a.dtype)
    keep64 = dt in ("float64", "torch.float64")
    return rows.read(0, rows.n).astype(np.float64 if keep64 else np.float32)


def ufm_summary(entry: dict) -> dict:
    """The UFM optimum of a run, JSON-able (its class-mean Gram as a list)."""
    out = {k: v for k, v in entry.items() if k != "class_mean_gram"}
    if "class_mean_gram" in entry:
        out["class_mean_gram"] = np.asarray(entry["class_mean_gram"]).tolist()
    return out


def run_writer(out) -> str | None:
    """Who wrote the run folder ``out``, by its config.json: "nctheory train", "nctheory.Monitor", or None
    (no config.json saying so: no run, or one written before config.json named its writer; a checkpoint
    means ``nctheory train``)."""
    out = Path(out)
    try:
        info = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        info = None
    if isinstance(info, dict) and isinstance(info.get("writer"), str):
        return info["writer"]
    return "nctheory train" if (out / "checkpoint.pt").exists() else None


# ============================================================================================ Monitor
class Monitor:
    """The run folder of ``nctheory train``, written from your own training loop.

        monitor = nctheory.Monitor("runs/mine", tau=0.1)
        for epoch in range(1, epochs + 1):
            train_one_epoch(...)
            monitor.log_epoch(epoch, features, labels)      # features (n, d), labels (n,)
        monitor.close()                                     # summary.json, embeddings.npz, plots

    log_epoch measures exactly the features given (a numpy array or a torch tensor on any device; features
    of every view, with their labels, when training on several views): the SCL loss in the papers' sum form
    over the epoch's batches and Kini et al.'s bound for them (Thm 2; Thm 1 for the full batch), the excess,
    and every geometry column of metrics.csv (:mod:`nctheory.monitor`). The batches of an epoch are
    ``batches`` (lists of row indices into features) when given, else epoch ``epoch``'s batches of ``plan``
    (a :class:`nctheory.batching.Plan` or plan file, on feature rows: with views V the features hold V * n
    rows, view v of sample i at row v * n + i; its epochs are used cyclically, epoch 1 = the plan's first;
    a multiset plan's repeated samples are copies), else the full batch. Labels may be any integer or string ids; the mapping to 0..k-1 is fixed by
    the first call and recorded in config.json.

    tau: the temperature of the loss and the bound. loss=False skips the loss (the full-batch loss costs
    O(n^2 d) per epoch; it runs on the features' device). ufm_optimum: Delta to the certified UFM / UFM+
    optimum for the counts (UFM+ when the features are non-negative). koromilas_metrics: the Koromilas
    columns. tensorboard: event files in out_dir/tensorboard (needs the tensorboard package). resume:
    continue a Monitor run in out_dir (rows of epochs at or after the first epoch logged again are dropped);
    without it a folder that holds a run is refused. config: your own settings, stored in config.json.
    plots: draw the PNGs in close(). Bad input raises :class:`nctheory.errors.InputError`.
    """

    WRITER = "nctheory.Monitor"

    def __init__(self, out_dir, *, tau: float, plan=None, name: str = "", loss: bool = True,
                 ufm_optimum: bool = True, koromilas_metrics: bool = True, tensorboard: bool = False,
                 resume: bool = False, plots: bool = True, config: dict | None = None,
                 chunk_rows: int = CHUNK_ROWS):
        from nctheory.losses._inputs import check_tau
        from nctheory.measure import _plan

        self.tau = check_tau(tau)
        self.plan = _plan(plan)
        if config is not None and not isinstance(config, dict):
            raise InputError(f"config must be a dict of your settings, got {type(config).__name__}")
        self.out = output_dir(out_dir, "out_dir")
        check_tensorboard(tensorboard)
        self._lock = RunLock(self.out).acquire()  # one writer; released by close() (or when the process ends)
        try:
            state = run_state(self.out)
            writer = run_writer(self.out)
            if (self.out / "checkpoint.pt").exists() or writer == "nctheory train":
                raise InputError(f"{self.out} holds an `nctheory train` run; give Monitor another folder")
            if state.kind != "new" and not resume:
                raise InputError(f"{self.out} already holds a run ({state.kind}); pass resume=True to continue a "
                                 "Monitor run, or give another folder")
            if state.kind != "new" and writer != self.WRITER:
                raise InputError(f"{self.out} holds files that are not a Monitor run; give Monitor another folder")
        except BaseException:
            self._lock.release()
            raise
        self.folder = RunFolder(self.out, tensorboard)
        self.options = {"tau": self.tau, "name": name, "loss": bool(loss), "ufm_optimum": bool(ufm_optimum),
                        "koromilas_metrics": bool(koromilas_metrics), "tensorboard": bool(tensorboard),
                        "plan": (plan if isinstance(plan, (str, os.PathLike)) else
                                 (self.plan.meta.get("name", "a Plan object") if self.plan is not None else None)),
                        "user": config or {}}
        self.resume, self.plots, self.chunk_rows = bool(resume), bool(plots), chunk_rows
        self.classes = None
        self.last_epoch = None
        self.nonneg_epochs: list[bool] = []
        self._ufm: dict = {}
        self._last = None
        self._t = time.perf_counter()
        self._t0 = self._t
        self._opened = False
        self.closed = False

    # -------------------------------------------------------------------------------------------- logging
    def log_epoch(self, epoch: int, features, labels, batches=None, *, multiset: bool = False, test_features=None,
                  test_labels=None, lr: float | None = None, W=None) -> dict:
        """Measure the features after epoch ``epoch`` (epochs done, from 1) and append their metrics.csv row;
        returns the row. batches: lists of row indices into features; multiset=True lets a batch repeat a row
        (a sampler with replacement: every occurrence is a copy, as in :func:`nctheory.losses.scl_batches`).
        W: the (k, d) classifier / prototypes your loss uses, for the Koromilas alignment metrics (None: the
        fixed-prototype classifier, normalised class means)."""
        if self.closed:
            raise InputError("this Monitor is closed")
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 1:
            raise InputError(f"epoch must be an integer >= 1 (epochs done, as in metrics.csv), got {epoch!r}")
        epoch = int(epoch)
        lr = real(lr, "lr", allow_none=True)
        if self.last_epoch is not None and epoch <= self.last_epoch:
            raise InputError(f"epoch {epoch} logged after epoch {self.last_epoch}: epochs must increase")
        if epoch > MAX_EPOCH:
            raise InputError(f"epoch must be at most {MAX_EPOCH}, got {epoch}")
        rows = ArrayRows(features)
        y, classes = encode_labels(labels, self.classes)
        if y.size != rows.n:
            raise InputError(f"{y.size} labels for {rows.n} feature rows")
        if self.classes is None:
            self.classes = classes
        k = len(self.classes)
        yt = None
        if test_features is not None:
            if test_labels is None:
                raise InputError("test_features need test_labels")
            yt, _ = encode_labels(test_labels, self.classes, "test_labels")
        st = accumulate(rows, y, k, W=W, chunk_rows=self.chunk_rows, koromilas=self.options["koromilas_metrics"])
        nonneg = st.nonnegative
        G_ufm = self._ufm_gram(y, rows.d, nonneg) if self.options["ufm_optimum"] else None
        geo, G = geometry_from_statistics(st, test_features=test_features, test_labels=yt, G_ufm=G_ufm,
                                          koromilas=self.options["koromilas_metrics"], chunk_rows=self.chunk_rows)
        epoch_batches, multiset = self._batches(batches, epoch, rows.n, boolean(multiset, "multiset"))
        row = {"epoch": epoch, "n_batches": 1 if epoch_batches is None else len(epoch_batches),
               "zero_feature_rows": st.zero_rows, "lr": lr}
        if epoch_batches is None:
            row["bound"] = float(bounds.full_batch_bound(st.counts, self.tau))
            anchors = rows.n
        else:
            row["bound"] = float(bounds.batch_bound(y, epoch_batches, self.tau, multiset=multiset))
            anchors = sum(len(b) for b in epoch_batches)
        if self.options["loss"]:
            device = str(features.device) if hasattr(features, "device") else "cpu"
            value = (scl_streamed(rows, y, self.tau, class_sums=st.sums, chunk_rows=self.chunk_rows, device=device)
                     if epoch_batches is None else scl_plan(rows, y, epoch_batches, self.tau, device))
            row.update(loss=value, loss_per_anchor=value / anchors, excess=value - row["bound"])
        now = time.perf_counter()
        row["epoch_seconds"] = now - self._t
        self._t = now
        row.update(geo)
        if not self._opened:
            self._open(epoch, rows, st)
        self.folder.write_row(row)
        self.folder.save_gram(G)
        self.nonneg_epochs.append(bool(nonneg and st.unit_rows and st.zero_rows == 0))
        self._last = (rows, y, test_features, yt)
        self._last_features = _stored(rows)  # a copy: the caller may reuse its buffer
        self.last_epoch = epoch
        return row

    def _batches(self, batches, epoch, n, multiset):
        """(the epoch's batches as index arrays or None for the full batch, whether they are multisets)."""
        from nctheory.losses._inputs import as_batches

        if batches is None and self.plan is not None:  # the plan on feature rows (views expanded)
            if self.plan.n != n:
                raise InputError(f"the plan has {self.plan.n} feature rows (samples x views), the features {n}")
            eps = self.plan.epochs
            batches, multiset = eps[(epoch - 1) % len(eps)], self.plan.multiset
        if batches is None:
            return None, False
        return [b.numpy() for b in as_batches(batches, n, multiset=multiset)], multiset

    def _ufm_gram(self, y, d, nonneg):
        key = (tuple(np.bincount(y).tolist()), int(d), bool(nonneg))
        if key not in self._ufm:
            self._ufm[key] = ufm_optimum(y, self.tau, d, relu=nonneg)
        return self._ufm[key].get("class_mean_gram")

    def _open(self, epoch, rows, st):
        # epochs before the first one logged: a resumed run keeps its rows up to there, a new one has none
        self.folder.continue_metrics(epoch - 1 if self.resume else 0)
        info = {"writer": self.WRITER, "config": self.options, "k": st.k, "n_train": rows.n,
                "counts": st.counts.tolist(), "feat_dim": rows.d, "label_mapping": mapping_note(self.classes)}
        self.folder.write_config(info)
        self._opened = True

    # -------------------------------------------------------------------------------------------- closing
    def close(self) -> dict:
        """Write summary.json, embeddings.npz (the last epoch's features) and the plots; returns the summary."""
        if self.closed:
            return self.summary
        self.closed = True
        try:
            return self._finish()
        finally:
            self.folder.close()
            self._lock.release()

    def _finish(self) -> dict:
        if self._last is None:
            self.summary = {}
            return self.summary
        rows, y, tf, yt = self._last
        theorem = bool(self.nonneg_epochs) and all(self.nonneg_epochs)
        ufm = {f"{'ufm_plus' if key[2] else 'ufm'} counts={list(key[0])}": ufm_summary(v)
               for key, v in self._ufm.items()}
        self.summary = self.folder.summary(
            seconds=time.perf_counter() - self._t0, writer=self.WRITER, k=len(self.classes),
            counts=np.bincount(y, minlength=len(self.classes)).tolist(),
            features_nonnegative=theorem, bound_is_theorem=theorem, unit_tol=UNIT_TOL,
            bound_note=BOUND_NOTE + "; here: bound_is_theorem means every logged epoch's features were unit rows "
                       f"(| ||h|| - 1 | <= {UNIT_TOL:g}) with entries >= 0",
            loss_note="loss: SCL (sum form) of the features logged, over the epoch's batches (Monitor)",
            ufm_optimum=ufm)
        self.folder.write_summary(self.summary)
        tfe = None if tf is None else _stored(ArrayRows(tf, "test features"))
        ids = np.asarray(self.classes)  # the labels as given (class ids), so the mapping survives
        self.folder.save_embeddings(self._last_features, ids[y], tfe, None if yt is None else ids[yt])
        if self.plots:
            from nctheory.runplots import plot_run

            plot_run(self.out)
        return self.summary

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
