"""`nctheory measure FEATURES`: your own embeddings against the predicted bound and geometry."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from nctheory.errors import InputError

NAME = "measure"
JSON_GRAM_MAX_K = 100  # --json carries the k x k class-mean Gram matrices up to this k
HELP = "measure your own features: SCL loss vs Kini's bound, every NC metric, the certified UFM optimum, NCC"
DESCRIPTION = (
    "Measure an (n, d) feature matrix with its class labels: the SCL loss in sum and mean form, Kini et al.'s "
    "lower bound (Thm 1 for the full batch, Thm 2 with --plan) and the excess, whether the bound is a theorem "
    "for these features (entries >= 0 and unit rows are checked), every NC metric (Kini, Gill, Papyan, "
    "Koromilas, by variant), the certified UFM / UFM+ optimum for the same counts and tau with the distance "
    "to its geometry, and NCC accuracy (train, and test with --test). FEATURES is .npy (read in chunks: any "
    "size), .npz (keys features, labels, optional test_features, test_labels; e.g. a run folder's "
    "embeddings.npz) or .pt. Labels may be any integer or string ids; they are mapped to 0..k-1 in sorted "
    "order and the mapping is reported. Exit 0 on success, 2 on bad input."
)


def add_arguments(p):
    p.add_argument("features", metavar="FEATURES", help="features file: .npy, .npz or .pt")
    p.add_argument("--labels", metavar="L", help="labels file: .npy, .npz (key labels), .pt, .json or text "
                                                 "(one id per line); default: the features file's labels")
    p.add_argument("--tau", type=float, default=0.1, help="temperature (default %(default)s)")
    p.add_argument("--plan", metavar="PLAN", help="batching plan (.json / .npz) whose sample indices are feature "
                                                  "rows: Thm 2 and the mini-batch loss")
    p.add_argument("--test", metavar="FEATURES_TEST", help="test features for NCC test accuracy")
    p.add_argument("--test-labels", metavar="L", help="labels of the test features")
    p.add_argument("--chunk-rows", type=int, default=None, metavar="N",
                   help="rows read at a time (memory ~ N x (d + N) x 8 bytes; default 4096)")
    p.add_argument("--no-loss", action="store_true", help="skip the loss (full batch: O(n^2 d) time)")
    p.add_argument("--no-ufm", action="store_true", help="skip the certified UFM / UFM+ optimum")
    p.add_argument("--device", default="cpu", help="torch device for the loss tiles (cpu, cuda, ...)")
    p.add_argument("--plot", metavar="DIR", help="write class-mean Gram heatmaps (features, UFM, UFM+) to "
                                               "DIR/class_mean_gram.png")
    p.add_argument("--force", action="store_true", help="replace DIR/class_mean_gram.png inside a run folder")
    p.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    from nctheory._json import jsonable
    from nctheory.measure import CHUNK_ROWS, measure

    if args.test_labels and not args.test:
        raise InputError("--test-labels needs --test FEATURES_TEST")
    if args.test and not args.test_labels:
        from nctheory.measure import load_features

        tf = load_features(args.test)
        if tf.labels is None:
            raise InputError("--test needs --test-labels (or a test file holding 'labels')")
        test, test_labels = tf.features, tf.labels
    else:
        test, test_labels = args.test, args.test_labels
    device = _device(args.device)
    target = _plot_target(args.plot, args.force) if args.plot else None  # checked before any work
    chunk = CHUNK_ROWS if args.chunk_rows is None else args.chunk_rows
    report = measure(args.features, args.labels, tau=args.tau, plan=args.plan, test_features=test,
                     test_labels=test_labels, chunk_rows=chunk, loss=not args.no_loss, ufm=not args.no_ufm,
                     device=device, progress=sys.stderr.isatty() and not args.json)
    if target is not None:
        report["plot"] = str(plot_report(report, target))
    if args.json:
        if report["k"] > JSON_GRAM_MAX_K:  # k x k matrices of a 1000-class set: in the plot, not the JSON
            report.pop("class_mean_gram")
            for e in report["ufm_optimum"].values():
                if isinstance(e, dict):
                    e.pop("class_mean_gram", None)
        print(json.dumps(jsonable(report), indent=2))
    else:
        print(format_report(report))
    return 0


def _device(name: str) -> str:
    import torch

    try:
        dev = torch.device(name)
    except RuntimeError:
        raise InputError(f"unknown device {name!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda requested but torch.cuda.is_available() is False")
    return name


def _plot_target(folder, force: bool) -> Path:
    """DIR/class_mean_gram.png, checked (nctheory.validate) and DIR created before any measuring."""
    from nctheory.validate import output_dir, output_file

    folder = output_dir(folder, "--plot")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--plot {folder}: cannot create it ({exc.strerror})") from None
    return output_file(folder / "class_mean_gram.png", "--plot", force=force)


def plot_report(report: dict, target) -> Path:
    """The features' class-mean Gram heatmap next to the UFM and UFM+ optima's, written atomically."""
    import numpy as np

    from nctheory.plotting import gram_heatmap, pyplot
    from nctheory.runfolder import atomic_savefig

    panels = [("features", report["class_mean_gram"])]
    for key, label in (("ufm", "UFM optimum"), ("ufm_plus", "UFM+ optimum")):
        e = report["ufm_optimum"].get(key, {})
        if "class_mean_gram" in e:
            word = "" if e.get("certified") else ", relaxation"
            panels.append((f"{label}{word} (Δ = {_g(e.get('delta_to_optimum'))})", e["class_mean_gram"]))
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.6), squeeze=False)
    im = None
    for ax, (title, G) in zip(axes[0], panels):
        im = gram_heatmap(ax, np.asarray(G), f"class-mean Gram G_M / max|G_M|: {title}")
    fig.colorbar(im, ax=list(axes[0]))
    try:
        atomic_savefig(fig, target, dpi=110)
    finally:
        plt.close(fig)
    return Path(target)


def _g(v) -> str:
    return "undefined" if v is None else (f"{v:.6g}" if isinstance(v, (int, float)) else str(v))


def format_report(r: dict) -> str:
    c = r["checks"]
    lines = [f"features {r['features']}: n = {r['n']}, d = {r['d']}, k = {r['k']}, tau = {r['tau']:g}, "
             f"{r['batches']}",
             f"  class counts        {r['counts'] if r['k'] <= 20 else str(r['counts'][:20])[:-1] + ', ...]'}",
             f"  label mapping       {r['label_mapping'] if r['label_mapping'] == 'identity' else 'class c = ' + str(r['label_mapping'][:20])}"]
    loss = r["loss"]
    if "sum" in loss:
        lines.append(f"  SCL loss            sum {loss['sum']:.10g}   mean {loss['mean']:.10g}  ({loss['anchors']} anchors)")
    else:
        lines.append(f"  SCL loss            {loss['skipped']}")
    b = r["bound"]
    lines.append(f"  lower bound         {b['value']:.10g}  ({b['statement']}; printed formula {b['printed_formula']:.10g})")
    if r["excess"] is not None:
        lines.append(f"  excess              {r['excess']:.6g}")
    lines.append(f"  bound is a theorem  {'yes' if b['is_theorem'] else 'no'}: smallest entry {c['min_entry']:.3g} "
                 f"({'>= 0' if c['nonnegative'] else '< 0'}), max | ||h_i|| - 1 | = {c['max_norm_deviation']:.2g} "
                 f"(tolerance {c['unit_tol']:g}), zero rows {c['zero_rows']}")
    m = r["metrics"]
    lines.append("  NC metrics")
    for paper in ("kini2023", "gill2023", "papyan2020", "nctheory", "koromilas2026"):
        for key, v in m.get(paper, {}).items():
            if isinstance(v, dict):
                for var, x in v.items():
                    lines.append(f"    {paper:<14} {key + ' [' + var + ']':<40} {_g(x)}")
            elif key not in ("classifier", "features", "geometry_tol"):
                lines.append(f"    {paper:<14} {key:<40} {_g(v)}")
    if "koromilas2026" in m:
        lines.append(f"    (Koromilas metrics on {m['koromilas2026']['features']}, classifier "
                     f"{m['koromilas2026']['classifier']})")
    for key, why in m["undefined"].items():
        lines.append(f"    undefined: {key}: {why}")
    u = r["ufm_optimum"]
    if "status" in u:
        lines.append(f"  UFM optimum         {u['status']}")
    for key, label in (("ufm", "UFM optimum"), ("ufm_plus", "UFM+ optimum")):
        e = u.get(key)
        if e is None:
            continue
        if "status" in e:
            lines.append(f"  {label:<19} {e['status']}")
            continue
        num = (f"value {e['value']:.10g} (certified, rel. gap {e['rel_gap']:.1e})" if e.get("certified")
               else f"lower bound {e['lower_bound']:.10g} (certified false: {e.get('note') or 'relaxation'})")
        lines.append(f"  {label:<19} {num}, geometry {e['geometry']}; Δ to it {_g(e.get('delta_to_optimum'))}")
    ncc = r["ncc_accuracy"]
    lines.append(f"  NCC accuracy        train {ncc['train']:.4f}" + (f"   test {ncc['test']:.4f}" if "test" in ncc else ""))
    if "plot" in r:
        lines.append(f"  plot                {r['plot']}")
    return "\n".join(lines)
