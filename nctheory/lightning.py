"""A PyTorch Lightning callback that writes the run folder of ``nctheory train`` (``pip install nctheory[lightning]``).

    from nctheory.lightning import NCTheoryCallback
    trainer = lightning.Trainer(callbacks=[NCTheoryCallback("runs/mine", tau=0.1)], ...)

After every ``every_n_epochs``-th training epoch (and after the last), the callback embeds the training set
(``dataloader``, default the trainer's train dataloader) with the module in eval mode and no gradient, and
logs the features with :meth:`nctheory.Monitor.log_epoch` (epoch = epochs done). A batch is ``(x, y, ...)``;
the features are ``embed(module, x)`` (default ``module(x)``: the module's forward must return the (batch, d)
features the loss sees). ``test_dataloader`` adds NCC test accuracy. At the end of fit the Monitor is closed
(summary.json, embeddings.npz, plots). Every other keyword goes to :class:`nctheory.Monitor`. Only global
rank 0 writes; under DDP pass a ``dataloader`` over the whole training set (the trainer's own is a shard).
"""

from __future__ import annotations

try:
    import lightning.pytorch as pl
except ImportError:  # the older package name
    try:
        import pytorch_lightning as pl
    except ImportError:
        raise ImportError("nctheory.lightning needs PyTorch Lightning: pip install 'nctheory[lightning]'") from None

import torch

from nctheory.errors import InputError
from nctheory.monitor import Monitor


class NCTheoryCallback(pl.Callback):
    def __init__(self, out_dir, *, tau: float, dataloader=None, test_dataloader=None, embed=None,
                 every_n_epochs: int = 1, **monitor_options):
        super().__init__()
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise InputError(f"every_n_epochs must be a positive integer, got {every_n_epochs!r}")
        self.out_dir, self.tau, self.options = out_dir, tau, monitor_options
        self.monitor = None
        self.dataloader, self.test_dataloader = dataloader, test_dataloader
        self.embed = embed or (lambda module, x: module(x))
        self.every = every_n_epochs

    @torch.no_grad()
    def _features(self, module, loader):
        was_training = module.training
        module.eval()
        feats, labels = [], []
        try:
            for batch in loader:
                if not isinstance(batch, (tuple, list)) or len(batch) < 2:
                    raise InputError("NCTheoryCallback needs batches (x, y, ...) from its dataloader")
                x, y = batch[0], batch[1]
                x = x.to(module.device) if hasattr(x, "to") else x
                feats.append(self.embed(module, x).detach().float().cpu())
                labels.append(torch.as_tensor(y).cpu())
        finally:
            module.train(was_training)
        if not feats:
            raise InputError("NCTheoryCallback's dataloader gave no batch")
        return torch.cat(feats), torch.cat(labels)

    def setup(self, trainer, pl_module, stage=None):
        if stage in (None, "fit") and trainer.global_rank == 0 and self.monitor is None:
            self.monitor = Monitor(self.out_dir, tau=self.tau, **self.options)

    def on_train_epoch_end(self, trainer, pl_module):
        if self.monitor is None:  # not rank 0
            return
        epoch = trainer.current_epoch + 1
        last = trainer.max_epochs is not None and epoch >= trainer.max_epochs
        if epoch % self.every and not last:
            return
        loader = self.dataloader if self.dataloader is not None else trainer.train_dataloader
        H, y = self._features(pl_module, loader)
        kw = {}
        if self.test_dataloader is not None:
            kw["test_features"], kw["test_labels"] = self._features(pl_module, self.test_dataloader)
        lr = None
        if trainer.optimizers:
            lr = trainer.optimizers[0].param_groups[0].get("lr")
        self.monitor.log_epoch(epoch, H, y, lr=lr, **kw)

    def on_fit_end(self, trainer, pl_module):
        if self.monitor is not None:
            self.monitor.close()
