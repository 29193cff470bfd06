"""Per-epoch measurements of a run: loss against the predicted bound, and the geometry of the features.

All numbers here are float64. Definitions are those of :mod:`nctheory.metrics` and
:mod:`nctheory.bounds` (one definition each); this module only decides *what* is measured on *which*
features and writes it to metrics.csv / summary.json.

Columns of metrics.csv
- loss: the papers' sum form summed over the epoch's batches (Kini et al. Eq. 4), float64, as trained
  (parameters change between batches; each batch's term is bounded by its own Thm-2 term, so the sum
  bound holds for the epoch sum).
- zero_feature_rows: rows of the epoch's batches that were exactly 0 before normalisation (not unit
  vectors: the epoch's bound is then outside Thm 1/2's hypotheses).
- bound / excess (SCL only): Kini Thm 1 (one full batch) or Thm 2 (the epoch's batches), with the
  view duplication of every batch, :func:`nctheory.bounds.batch_bound`, and loss - bound. A theorem
  only for features in the non-negative orthant (relu=True, or feature_layer identity, whose features
  are the backbone's post-ReLU output); summary.json records ``bound_is_theorem``.
- delta_to_of: Kini §3, ||G_M/||G_M||_F - I_k/||I_k||_F||_F with G_M = M^T M of the (uncentred) class
  means of the training features (eval mode, first view only).
- delta_to_etf, delta_to_prototypes, delta_to_ufm: Gill et al. Def. 3, Delta_{G*} for G* = the simplex
  ETF Gram, the fixed prototypes' Gram W W^T, and the class-mean Gram of the certified UFM optimum of
  the full-batch loss for the training counts (``nctheory.solvers.reduced``; computed once per run,
  UFM without ReLU / its DNN relaxation with ReLU; only for loss = scl).
- beta_nc = tr(Sigma_W Sigma_B^+)/k (Kini E.3.1), mean_class_cosine = Ave_{c != c'} cos(mu_c, mu_c')
  (Kini E.3.2).
- ncc_train / ncc_test: nearest-class-centre accuracy with the training class means (Kini E.7.1);
  ncc_test_pre: the same on the pre-projection features (only with a projection head).
- Koromilas metrics (§3 of the spec): erank_intra, erank_inter, erank_weights, align_weight_instance,
  align_weight_class, mir, hdr; the weights are the learned classifier (CE-type losses), the fixed
  prototypes, or the normalised training class means (SCL's FP classifier).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import torch

from nctheory import bounds
from nctheory import metrics as M
from nctheory.batching import duplicate_views
from nctheory.errors import NCTheoryError
from nctheory.losses.catalogue import get_loss

BASE_COLUMNS = ["epoch", "loss", "loss_per_anchor", "bound", "excess", "lr", "n_batches", "epoch_seconds",
                "images_per_second", "zero_feature_rows"]
GEOMETRY_COLUMNS = ["delta_to_of", "delta_to_etf", "delta_to_prototypes", "delta_to_ufm", "beta_nc",
                    "mean_class_cosine", "ncc_train", "ncc_test", "ncc_test_pre", "geometry"]
KOROMILAS_COLUMNS = ["erank_intra", "erank_inter", "erank_weights", "align_weight_instance", "align_weight_class",
                     "mir", "hdr"]
COLUMNS = BASE_COLUMNS + GEOMETRY_COLUMNS + KOROMILAS_COLUMNS
# Tolerance of the "geometry" column: a trained network never reaches Delta = 0, so the name uses a
# loose tolerance, 0.1, capped at 0.3 x the OF-ETF separation sqrt(2 - 2 sqrt((k-1)/k)) (0.32 at k = 10,
# 0.10 at k = 100) so that the two names never overlap at large k.
GEOMETRY_TOL = 0.1


def geometry_tol(k: int) -> float:
    return min(GEOMETRY_TOL, 0.3 * math.sqrt(2.0 - 2.0 * math.sqrt((k - 1) / k)))
TIMING_COLUMNS = ("epoch_seconds", "images_per_second")  # the only columns allowed to differ between reruns


@torch.no_grad()
def embed_all(model, x: torch.Tensor, batch: int, amp_dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """(pre-projection, features) of every row of x, in eval mode, as float64 CPU tensors."""
    pre, feats = [], []
    for i in range(0, x.shape[0], batch):
        xb = x[i: i + batch]
        with torch.autocast(device_type=xb.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
            f, h = model.embed(xb)
        pre.append(f.float().cpu())
        feats.append(h.float().cpu())
    return torch.cat(pre).double(), torch.cat(feats).double()


class Measurer:
    def __init__(self, cfg, data, out: Path, head, is_main: bool, features_nonnegative: bool):
        self.cfg, self.data, self.out, self.head, self.is_main = cfg, data, Path(out), head, is_main
        # the theorems' setting (UFM+) is features in the non-negative orthant: a ReLU head, or the
        # backbone's own post-ReLU output (feature_layer identity); the model knows which
        # (SphereNet.features_nonnegative), cfg.relu alone does not
        self.nonneg = bool(features_nonnegative)
        self.k = data.k
        self.y = data.y_train.cpu().numpy()
        self.y_test = data.y_test.cpu().numpy()
        self.counts = np.bincount(self.y, minlength=self.k)
        self.rows: list[dict] = []
        self.G_proto = None
        if head.W is not None and get_loss(cfg.loss).classifier == "fixed":
            W = head.W.detach().double().cpu().numpy()
            self.G_proto = W @ W.T
        self.ufm = self._ufm_optimum() if (cfg.ufm_optimum and is_main) else {"status": "not requested"}
        self.last_gram = None

    # -------------------------------------------------------------------------------- bound
    def bound_terms(self, plan, loss_sum: float) -> dict:
        """Kini Thm 1/2 for exactly this epoch's batches, each duplicated into ``views`` views."""
        if self.cfg.loss != "scl":
            return {}
        labels, (dup,) = duplicate_views(self.y, [[b.numpy() for b in plan]], self.cfg.views)
        bound = bounds.batch_bound(labels, dup, self.cfg.tau)
        return {"bound": float(bound), "excess": float(loss_sum - bound)}

    def _ufm_optimum(self) -> dict:
        """Class-mean Gram of the certified full-batch UFM(+) optimum for the training counts (once per run)."""
        if self.cfg.loss != "scl":
            return {"status": "not applicable (loss is not scl)"}
        try:  # solvers (cvxpy) are imported only for a run that measures against them
            from nctheory.solvers.reduced import solve_reduced
        except ImportError as exc:
            return {"status": f"solver not available ({exc})"}
        try:
            res = solve_reduced((self.counts * self.cfg.views).tolist(), tau=self.cfg.tau, nonneg=self.nonneg)
        except NCTheoryError as exc:
            return {"status": f"not certified: {exc}"}
        except Exception as exc:  # the harness must not die on an optional measurement
            return {"status": f"solver failed: {type(exc).__name__}: {exc}"}
        return {"status": res.status, "value": float(res.value), "rel_gap": float(res.rel_gap),
                "geometry": res.geometry, "class_mean_gram": np.asarray(res.class_mean_gram, dtype=np.float64),
                "relaxation": "DNN relaxation of UFM+ (certified lower bound, tight at completely positive G)"
                if self.nonneg else "UFM (exact convex program)", "seconds": float(res.seconds)}

    # -------------------------------------------------------------------------------- geometry
    def geometry(self, model, amp_dtype) -> dict:
        cfg, k = self.cfg, self.k
        pre_tr, H = embed_all(model, self.data.x_train, cfg.eval_batch, amp_dtype)
        pre_te, Ht = embed_all(model, self.data.x_test, cfg.eval_batch, amp_dtype)
        H, Ht = H.numpy(), Ht.numpy()
        G = M.class_mean_gram(H, self.y, k)
        self.last_gram = G
        row = {"delta_to_of": M.delta_to_of(G), "delta_to_etf": M.delta_to_etf(G),
               "beta_nc": M.beta_nc(H, self.y, k), "mean_class_cosine": M.mean_class_cosine(H, self.y, k)}
        if self.G_proto is not None:
            row["delta_to_prototypes"] = M.delta_to_gram(G, self.G_proto)
        if "class_mean_gram" in self.ufm:
            row["delta_to_ufm"] = M.delta_to_gram(G, self.ufm["class_mean_gram"])
        row["ncc_train"] = M.ncc_accuracy(H, self.y, H, self.y, k)
        row["ncc_test"] = M.ncc_accuracy(H, self.y, Ht, self.y_test, k)
        if cfg.projection:
            row["ncc_test_pre"] = M.ncc_accuracy(pre_tr.numpy(), self.y, pre_te.numpy(), self.y_test, k)
        try:
            row["geometry"] = M.classify_geometry(G, geometry_tol(k))["name"]
        except Exception as exc:  # e.g. a class with a zero mean
            row["geometry"] = f"unclassified ({type(exc).__name__})"
        if cfg.koromilas_metrics:
            row.update(self._koromilas(H))
        np.save(self.out / "gram_final.npy", G)
        return row

    def _koromilas(self, H) -> dict:
        k = self.k
        # the authors' code measures L2-normalised features for every method (spec §3.6), CE included
        H = H / np.maximum(np.linalg.norm(H, axis=1, keepdims=True), 1e-300)
        if self.head.W is not None:
            W = self.head.W.detach().double().cpu().numpy()
        else:  # SCL / proto: the fixed-prototype (FP) classifier, normalised training class means
            mu = M.class_means(H, self.y, k)
            W = mu / np.maximum(np.linalg.norm(mu, axis=1, keepdims=True), 1e-300)
        out = {}
        for name, fn in (("erank_intra", lambda: M.erank_intra(H, self.y, k)),
                         ("erank_inter", lambda: M.erank_inter(H, self.y, k)),
                         ("erank_weights", lambda: M.erank_weights(W)),
                         ("align_weight_instance", lambda: M.align_weight_instance(H, W, self.y)),
                         ("align_weight_class", lambda: M.align_weight_class(H, W, self.y, k)),
                         ("mir", lambda: M.mir(W, H, self.y, k)),
                         ("hdr", lambda: M.hdr(W, H, self.y, k))):
            try:
                out[name] = float(fn())
            except Exception:  # undefined at degenerate points (e.g. zero within-class scatter)
                out[name] = math.nan
        return out

    # -------------------------------------------------------------------------------- files
    def open_csv(self, start_epoch: int) -> None:
        path = self.out / "metrics.csv"
        kept = []
        if start_epoch > 0 and path.exists():  # resume: drop rows of epochs after the checkpoint
            with open(path, newline="") as f:
                kept = [r for r in csv.DictReader(f) if int(r["epoch"]) <= start_epoch]
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(kept)
        self.rows = [{k: _parse(v) for k, v in r.items()} for r in kept]

    def write_row(self, row: dict) -> None:
        unknown = set(row) - set(COLUMNS)
        if unknown:
            raise RuntimeError(f"metrics row has unknown columns {sorted(unknown)}")
        self.rows.append(row)
        with open(self.out / "metrics.csv", "a", newline="") as f:
            csv.DictWriter(f, fieldnames=COLUMNS).writerow({c: _fmt(row.get(c)) for c in COLUMNS})

    def summary(self, seconds: float) -> dict:
        final = {}
        for r in self.rows:  # last value of every column
            for c, v in r.items():
                if v is not None and v != "" and not (isinstance(v, float) and math.isnan(v)):
                    final[c] = v
        ufm = {k: v for k, v in self.ufm.items() if k != "class_mean_gram"}
        if "class_mean_gram" in self.ufm:
            ufm["class_mean_gram"] = self.ufm["class_mean_gram"].tolist()
        counted = [r for r in self.rows if isinstance(r.get("zero_feature_rows"), (int, float))]
        zero_epochs = [int(r["epoch"]) for r in counted if r["zero_feature_rows"] > 0]
        out = {"epochs": len(self.rows), "seconds": seconds, "device": str(self.data.x_train.device),
               "epochs_with_zero_feature_rows": zero_epochs,
               "k": self.k, "counts": self.counts.tolist(), "final": final,
               "features_nonnegative": self.nonneg,
               "bound_is_theorem": bool(self.cfg.loss == "scl" and self.nonneg),
               "bound_note": ("Kini et al. Thm 1/2 with e^{-1/tau}, summed over the epoch's batches with their "
                              "view duplication; a theorem for unit features in the non-negative orthant (a ReLU "
                              "head, or feature_layer identity); with signed features it is reported for "
                              "reference only, and in an epoch with zero_feature_rows > 0 it is outside its "
                              "hypotheses")
               if self.cfg.loss == "scl" else "no bound for this loss",
               "ufm_optimum": ufm}
        if len(counted) < len(self.rows):  # epochs of a run resumed from a version that did not count them
            out["epochs_without_zero_row_count"] = [int(r["epoch"]) for r in self.rows if r not in counted]
        return out


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
