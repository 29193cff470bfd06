"""`nctheory train`: train one configuration (or a config file's sweep) and write the run folder(s)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from nctheory.errors import InputError
from nctheory.validate import child_name

NAME = "train"
HELP = "train a network with SCL (or another loss) and measure loss-to-bound and geometry per epoch"
DESCRIPTION = (
    "Train one configuration and write a run folder: config.json, metrics.csv (one row per epoch: the loss "
    "in the papers' sum form, Kini et al.'s lower bound for exactly the batches seen and the excess, "
    "Delta to OF / ETF / prototypes / UFM optimum, beta_NC, mean class cosine, Koromilas metrics, NCC "
    "accuracy), summary.json and PNG plots. Defaults run on a 2-core CPU in about a minute: digits, an MLP "
    "with ReLU head, SCL with tau=0.1, reshuffled batches of 128 with vertical-flip duplication, SGD lr 0.1 "
    "momentum 0.9. A --config JSON file sets any TrainConfig key; with a \"sweep\" list it trains one run "
    "per entry into OUT/<name>. Explicit flags override the file. The run folder also holds embeddings.npz, "
    "the final network's features, for `nctheory measure`. --model and --dataset take your own factories as "
    "package.module:callable (a callable returning a torch.nn.Module of images to features / a dataset of "
    "(image, label) pairs, or a (train, test) pair of them). Running the same command again on an unfinished "
    "run resumes it from its last saved epoch (a finished run is reported, a folder without a checkpoint "
    "starts afresh). Exit 0 on success, 2 on bad input, 130 when interrupted (the last saved epoch is named)."
)

# (flag, config key, type, help); every default is None so that only explicit flags override the file
FLAGS = [
    ("--dataset", "dataset", str, "digits (default, no download) | mnist | cifar10 | cifar100 | synthetic | "
                                  "package.module:factory (your dataset of (image, label) pairs)"),
    ("--data-root", "data_root", str, "folder holding MNIST/ or cifar-10-batches-py/ (torchvision layout)"),
    ("--model", "model", str, "mlp (default) | resnet18 | resnet34 | package.module:factory (your network: "
                              "images -> features; the papers' head, ReLU and normalisation follow)"),
    ("--width", "width", int, "ResNet base width (64 = the papers' ResNet-18)"),
    ("--feat-dim", "feat_dim", int, "feature dimension d"),
    ("--feature-layer", "feature_layer", str,
     "auto | linear | identity: the layer after the backbone without a projector (identity = the backbone's "
     "post-ReLU penultimate features, non-negative even with --no-relu; auto = identity with --relu, linear "
     "without)"),
    ("--loss", "loss", str, "the loss (listed from nctheory.losses.catalogue when this help is shown)"),
    ("--tau", "tau", float, "temperature (default 0.1)"),
    ("--base-tau", "base_tau", float, "optimise (tau/base_tau) x the mean form (reference SupCon scaling)"),
    ("--n-w", "n_w", int, "prototype copies per class for scl_prototypes (Gill et al.)"),
    ("--prototypes", "prototypes", str, "prototype geometry: etf | minority-angles | majority-collapse"),
    ("--batching", "batching", str, "full | fixed | reshuffle | class_balanced"),
    ("--batch-size", "batch_size", int, "images per batch before view duplication"),
    ("--chunk-size", "chunk_size", int, "--batching full: images per chunk of the two-pass exact gradient "
                                        "(memory: one chunk's activations; default the whole batch)"),
    ("--norm", "norm", str, "batch (default) | group | frozen | none: the networks' normalisation layer; only "
                            "group/frozen/none give the exact full-batch gradient with --chunk-size"),
    ("--views", "views", int, "views per image (2 = batch duplication, Kini et al. §3)"),
    ("--augment", "augment", str, "first view's transform: none | vflip | hflip | crop_flip"),
    ("--view-augment", "view_augment", str, "extra views' transform (default vflip, Kini et al.)"),
    ("--imbalance", "imbalance", str, "none | step | longtail"),
    ("--ratio", "ratio", float, "imbalance ratio R"),
    ("--n-max", "n_max", int, "majority class size"),
    ("--n-total", "n_total", int, "total training samples (sets n_max)"),
    ("--epochs", "epochs", int, "epochs"),
    ("--lr", "lr", float, "SGD learning rate (default 0.1)"),
    ("--momentum", "momentum", float, "SGD momentum (default 0.9)"),
    ("--weight-decay", "weight_decay", float, "weight decay (default 0)"),
    ("--schedule", "schedule", str, "constant | cosine | step"),
    ("--seed", "seed", int, "seed"),
    ("--device", "device", str, "auto | cpu | cuda | cuda:N"),
    ("--amp", "amp", str, "auto (bf16 on cuda) | bf16 | off"),
    ("--eval-every", "eval_every", int, "measure geometry every N epochs"),
    ("--name", "name", str, "run name (labels in compare plots)"),
]


class _HelpFormatter(argparse.HelpFormatter):
    """Lists the catalogue's training losses in --loss's help only when help is printed: the catalogue
    imports torch, which the other subcommands' start-up does not need."""

    def _get_help_string(self, action):
        if action.dest == "loss":
            from nctheory.losses.catalogue import LOSSES

            return (" | ".join(name for name, spec in LOSSES.items() if spec.trains)
                    + " ('-' may replace '_', e.g. scl-prototypes; default scl)")
        return super()._get_help_string(action)


def add_arguments(p):
    p.formatter_class = _HelpFormatter
    p.add_argument("--config", metavar="FILE.json", help="JSON config (TrainConfig keys, optional \"sweep\")")
    for flag, key, typ, help_ in FLAGS:
        p.add_argument(flag, dest=key, type=typ, default=None, help=help_)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--relu", dest="relu", action="store_true", default=None, help="ReLU before normalisation")
    g.add_argument("--no-relu", dest="relu", action="store_false", help="no ReLU before normalisation")
    p.add_argument("--projection", action="store_true", default=None, help="2-layer projection head (Khosla)")
    p.add_argument("--bind", action="store_true", default=None, help="batch-binding (Kini et al. Alg. 1)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the network")
    p.add_argument("--tensorboard", action="store_true", default=None,
                   help="also write TensorBoard event files into RUN_DIR/tensorboard (needs tensorboard)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="set any config key (VALUE parsed as JSON when possible); repeatable")
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default runs/<time>-<dataset>-<loss>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint, with its saved configuration unless "
                        "--config is given (rerunning the same command resumes too)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def _load_config_file(path) -> dict:
    from nctheory.validate import input_file

    p = input_file(path, "--config")
    try:
        text = p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"--config {path} is not UTF-8 text (a JSON config file is)") from None
    except OSError as exc:
        raise InputError(f"cannot read config {path}: {exc.strerror}") from None
    try:
        d = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InputError(f"config {path} is not valid JSON: {exc}") from None
    if not isinstance(d, dict):
        raise InputError(f"config {path} must hold a JSON object")
    return d


def _overrides(args) -> dict:
    o = {key: getattr(args, key) for _, key, _, _ in FLAGS if getattr(args, key) is not None}
    for key in ("relu", "projection", "bind", "compile", "tensorboard"):
        if getattr(args, key) is not None:
            o[key] = getattr(args, key)
    for item in args.set:
        if "=" not in item:
            raise InputError(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        try:
            o[k.strip()] = json.loads(v)
        except ValueError:
            o[k.strip()] = v
    if args.no_progress:
        o["progress"] = False
    return o


def run(args) -> int:
    from nctheory.harness.train import TrainConfig, TrainingInterrupted, run_status, train

    if args.resume and not args.config and args.out and (Path(args.out) / "config.json").exists():
        try:  # resuming a single run without --config: its own saved configuration
            info = json.loads((Path(args.out) / "config.json").read_text())
            base = info["config"]
        except (ValueError, KeyError, TypeError):
            raise InputError(f"{args.out}/config.json is not a run configuration") from None
        if info.get("writer", "nctheory train") != "nctheory train":
            raise InputError(f"{args.out} holds a run written by {info['writer']}, not by `nctheory train`")
    else:
        base = _load_config_file(args.config) if args.config else {}
    sweep = base.pop("sweep", None)
    over = _overrides(args)
    if "sweep" in over:  # --set sweep=[...] replaces the file's sweep ([] or null: one run of the base config)
        sweep = over.pop("sweep") or None
    out = Path(args.out) if args.out else Path("runs") / (
        time.strftime("%Y%m%d-%H%M%S") + f"-{over.get('dataset', base.get('dataset', 'digits'))}-"
        f"{over.get('loss', base.get('loss', 'scl'))}")
    if args.resume and not args.out:
        raise InputError("--resume needs --out RUN_DIR")
    if sweep is None:
        runs = [(out, {**base, **over})]
    else:
        if not isinstance(sweep, list) or not all(isinstance(s, dict) and s.get("name") for s in sweep):
            raise InputError("\"sweep\" must be a list of objects, each with a \"name\"")
        for s in sweep:  # a sweep entry's folder stays inside OUT (nctheory.validate.child_name)
            child_name(out, s["name"], "sweep entry name")
        runs = [(out / s["name"], {**base, **s, **over}) for s in sweep]
    results = []
    talk = not args.json and int(os.environ.get("RANK", "0")) == 0
    for run_dir, d in runs:
        cfg = TrainConfig.from_dict(d)
        # every run resumes from its checkpoint when it has one; a single --resume run must have one
        status = run_status(run_dir, cfg)
        if args.resume and sweep is None and status.state == "new":
            raise InputError(f"cannot resume: {run_dir / 'checkpoint.pt'} does not exist")
        if status.state == "finished":
            if talk:
                print(f"{cfg.name or run_dir.name}: finished ({status.epoch} epochs) in {run_dir}; nothing to do "
                      "(a larger --epochs continues it)", file=sys.stderr)
            results.append((run_dir, json.loads((run_dir / "summary.json").read_text())))
            continue
        if talk:
            what = f"resuming after epoch {status.epoch}" if status.state == "unfinished" else "training"
            print(f"{what} {cfg.name or run_dir.name} -> {run_dir}", file=sys.stderr)
        try:
            summary = train(cfg, run_dir)
        except TrainingInterrupted as exc:
            from nctheory.cli.signals import Terminated

            terminated = isinstance(exc.cause, Terminated)
            print(f"nctheory train: {exc.message('terminated' if terminated else 'interrupted')}", file=sys.stderr)
            return 143 if terminated else 130
        results.append((run_dir, summary))
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        return 0
    if sweep is not None:
        from nctheory.runplots import compare_runs

        cols = [c for c in ("excess", "delta_to_of", "delta_to_prototypes", "beta_nc", "ncc_test")
                if any(c in s.get("final", {}) and s["final"][c] is not None for _, s in results)]
        if cols:
            try:
                compare_runs([r for r, _ in results], cols[:3], out / "compare.png")
            except Exception as exc:  # the sweep's runs are done: a failed overlay is a warning, not a lost sweep
                print(f"warning: the sweep's overlay {out / 'compare.png'} failed: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps([{"run": str(r), **s} for r, s in results] if sweep is not None else results[0][1],
                         indent=2, default=str))
    else:
        for r, s in results:
            print(format_summary(r, s))
    return 0


def format_summary(run_dir, s: dict) -> str:
    f = s.get("final", {})
    keys = ["loss", "bound", "excess", "delta_to_of", "delta_to_etf", "delta_to_prototypes", "delta_to_ufm",
            "beta_nc", "mean_class_cosine", "ncc_train", "ncc_test", "geometry"]
    lines = [f"run {run_dir}  ({s.get('epochs', '?')} epochs, {s.get('seconds', 0):.1f} s, {s.get('device', '')})"]
    for k in keys:
        v = f.get(k)
        if v is None or v == "":
            continue
        lines.append(f"  {k:<20} {v:.6g}" if isinstance(v, (int, float)) else f"  {k:<20} {v}")
    pc = s.get("plan_check")
    if pc and "first_epoch" in pc:
        def word(u):
            return {True: "yes", False: "no", None: "undecided"}[u.get("unique")]

        lines.append(f"  {'OF unique optimum':<20} first epoch's batches: {word(pc['first_epoch'])}; all "
                     f"{pc['epochs']} epochs' batches: {word(pc['all_epochs'])}  (Kini Thm 2 / Cor. 2.1, UFM+)")
    return "\n".join(lines)
