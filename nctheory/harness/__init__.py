"""Deep-net training harness: train networks with SCL (and the papers' other losses) and measure, epoch by
epoch, how close they get to what the theory predicts.

- :mod:`~nctheory.harness.models`: CIFAR-style ResNet-18/34 (3x3 stem, no max-pool), an MLP, and the
  papers' heads (optional Khosla projector, optional ReLU, unit-norm features);
- :mod:`~nctheory.harness.data`: digits (default, bundled with scikit-learn), MNIST / CIFAR-10 /
  CIFAR-100 from torchvision's on-disk layout (parsed here), synthetic; STEP / long-tail imbalance
  (Kini et al. §3); device-side augmentation and view duplication;
- :mod:`~nctheory.harness.plans`: each epoch's batches from :class:`nctheory.batching.PlanBatchSampler`;
- :mod:`~nctheory.harness.train`: the training loop (one file), checkpoint / exact resume, DDP;
- :mod:`~nctheory.harness.distributed`: differentiable all_gather (global-batch contrastive loss);
- :mod:`~nctheory.harness.measure`: loss vs Kini Thm 1/2 bound for the batches seen, Delta to OF /
  ETF / prototypes / UFM optimum, beta_NC, class-mean cosine, NCC accuracy, Koromilas metrics;
- :mod:`~nctheory.harness.plots`: run-folder PNGs and run overlays.

Imports losses (the loss catalogue, nctheory.losses.catalogue), metrics, geometry, batching, bounds
(and, guarded, solvers); nothing imports the harness. Inside it: train imports measure, plans, plots,
data, models, distributed; none of those imports train. Command line: ``nctheory train``, ``nctheory plot``, ``nctheory compare``.
"""
