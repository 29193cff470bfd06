"""Per-epoch measurements of a training run: loss against the predicted bound, and the geometry of the features.

All numbers here are float64. The run folder's files and columns are :mod:`nctheory.monitor`'s
(:class:`nctheory.monitor.RunFolder`, shared with :class:`nctheory.Monitor`), the geometry columns
:func:`nctheory.measure.geometry_row`'s, the bound :mod:`nctheory.bounds`'s; this module only decides
*which* features of the network are measured (eval mode, first view) and with which classifier.

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
  the full-batch loss for the training counts with their views, in the feature dimension
  (:func:`nctheory.measure.ufm_optimum`; computed once per run, UFM without ReLU, UFM+ with it; only
  for loss = scl).
- beta_nc = tr(Sigma_W Sigma_B^+)/k (Kini E.3.1), mean_class_cosine = Ave_{c != c'} cos(mu_c, mu_c')
  (Kini E.3.2).
- ncc_train / ncc_test: nearest-class-centre accuracy with the training class means (Kini E.7.1);
  ncc_test_pre: the same on the pre-projection features (only with a projection head).
- Koromilas metrics (§3 of the spec): erank_intra, erank_inter, erank_weights, align_weight_instance,
  align_weight_class, mir, hdr; the weights are the learned classifier (CE-type losses), the fixed
  prototypes, or the normalised training class means (SCL's FP classifier).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from nctheory import bounds
from nctheory.batching import duplicate_views
from nctheory.losses.catalogue import get_loss
from nctheory.measure import geometry_row, ufm_optimum
from nctheory.monitor import BOUND_NOTE, RunFolder, ufm_summary


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
    def __init__(self, cfg, data, out: Path, head, is_main: bool, features_nonnegative: bool,
                 feat_dim: int | None = None):
        self.cfg, self.data, self.out, self.head, self.is_main = cfg, data, Path(out), head, is_main
        # the theorems' setting (UFM+) is features in the non-negative orthant: a ReLU head, or the
        # backbone's own post-ReLU output (feature_layer identity); the model knows which
        # (SphereNet.features_nonnegative), cfg.relu alone does not
        self.nonneg = bool(features_nonnegative)
        self.k = data.k
        self.y = data.y_train.cpu().numpy()
        self.y_test = data.y_test.cpu().numpy()
        self.counts = np.bincount(self.y, minlength=self.k)
        self.folder = RunFolder(out, tensorboard=getattr(cfg, "tensorboard", False)) if is_main else None
        self.G_proto = None
        if head.W is not None and get_loss(cfg.loss).classifier == "fixed":
            W = head.W.detach().double().cpu().numpy()
            self.G_proto = W @ W.T
        self.feat_dim = feat_dim
        self.ufm = self._ufm_optimum() if (cfg.ufm_optimum and is_main) else {"status": "not requested"}
        self.last_features = None  # (H, H_test) of the last measured epoch

    @property
    def rows(self) -> list[dict]:
        return self.folder.rows

    # -------------------------------------------------------------------------------- bound
    def bound_terms(self, plan, loss_sum: float) -> dict:
        """Kini Thm 1/2 for exactly this epoch's batches, each duplicated into ``views`` views."""
        if self.cfg.loss != "scl":
            return {}
        labels, (dup,) = duplicate_views(self.y, [[b.numpy() for b in plan]], self.cfg.views)
        bound = bounds.batch_bound(labels, dup, self.cfg.tau)
        return {"bound": float(bound), "excess": float(loss_sum - bound)}

    def _ufm_optimum(self) -> dict:
        """The certified full-batch UFM(+) optimum for the training counts with their views (once per run)."""
        if self.cfg.loss != "scl":
            return {"status": "not applicable (loss is not scl)"}
        if self.cfg.progress:
            print(f"certifying the UFM{'+' if self.nonneg else ''} optimum for counts "
                  f"{(self.counts * self.cfg.views).tolist()} (tau = {self.cfg.tau:g}) ...", file=sys.stderr)
        labels = np.repeat(np.arange(self.k), self.counts * self.cfg.views)
        try:
            return ufm_optimum(labels, self.cfg.tau, self.feat_dim or labels.size, relu=self.nonneg)
        except Exception as exc:  # the harness must not die on an optional measurement
            return {"status": f"solver failed: {type(exc).__name__}: {exc}"}

    # -------------------------------------------------------------------------------- geometry
    def geometry(self, model, amp_dtype) -> dict:
        cfg, k = self.cfg, self.k
        pre_tr, H = embed_all(model, self.data.x_train, cfg.eval_batch, amp_dtype)
        pre_te, Ht = embed_all(model, self.data.x_test, cfg.eval_batch, amp_dtype)
        H, Ht = H.numpy(), Ht.numpy()
        # the Koromilas alignments use the loss's classifier (CE-type losses: learned; fixed prototypes),
        # else SCL's fixed-prototype classifier (normalised class means): geometry_row's default
        W = self.head.W.detach().double().cpu().numpy() if self.head.W is not None else None
        row, G = geometry_row(H, self.y, k, test_features=Ht, test_labels=self.y_test, W=W, G_proto=self.G_proto,
                              G_ufm=self.ufm.get("class_mean_gram"),
                              pre=pre_tr.numpy() if cfg.projection else None,
                              pre_test=pre_te.numpy() if cfg.projection else None,
                              koromilas=cfg.koromilas_metrics)
        self.folder.save_gram(G)
        self.last_features = (H, Ht)
        return row

    def save_embeddings(self, model, amp_dtype) -> Path:
        """embeddings.npz of the final network (the last measured features; measured now if this process
        measured none, e.g. a resumed run that had already reached its last epoch)."""
        if self.last_features is None:
            _, H = embed_all(model, self.data.x_train, self.cfg.eval_batch, amp_dtype)
            _, Ht = embed_all(model, self.data.x_test, self.cfg.eval_batch, amp_dtype)
            self.last_features = (H.numpy(), Ht.numpy())
        H, Ht = self.last_features
        y, yt = self.y, self.y_test
        mapping = self.data.info.get("label_mapping")
        if isinstance(mapping, list):  # your dataset's own class ids (harness.data), so the mapping survives
            y, yt = np.asarray(mapping)[y], np.asarray(mapping)[yt]
        # float32: the network's features (embed_all's float64 copies of float32 values, so lossless)
        return self.folder.save_embeddings(H.astype(np.float32), y, Ht.astype(np.float32), yt)

    # -------------------------------------------------------------------------------- files
    def open_csv(self, start_epoch: int) -> None:
        self.folder.open_metrics(start_epoch)

    def write_row(self, row: dict) -> None:
        self.folder.write_row(row)

    def summary(self, seconds: float) -> dict:
        return self.folder.summary(
            seconds=seconds, device=str(self.data.x_train.device), writer="nctheory train", k=self.k,
            counts=self.counts.tolist(), features_nonnegative=self.nonneg,
            bound_is_theorem=bool(self.cfg.loss == "scl" and self.nonneg),
            bound_note=(BOUND_NOTE + " (a ReLU head, or feature_layer identity)") if self.cfg.loss == "scl"
            else "no bound for this loss",
            ufm_optimum=ufm_summary(self.ufm))
