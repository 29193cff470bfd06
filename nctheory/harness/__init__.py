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
- :mod:`~nctheory.harness.measure`: which features of the network are measured (eval mode, first view)
  and with which classifier; the geometry row is :func:`nctheory.measure.geometry_row` and the files
  :class:`nctheory.monitor.RunFolder` (both shared with :class:`nctheory.Monitor`);
- :mod:`~nctheory.harness.factory`: your own ``--model`` / ``--dataset`` (``package.module:callable``).

Imports losses (the loss catalogue, nctheory.losses.catalogue), metrics, geometry, batching, bounds,
measure, monitor, runplots (and, guarded, solvers); nothing imports the harness. Inside it: train imports
measure, plans, data, models, factory, distributed; none of those imports train. Command line: ``nctheory train``, ``nctheory plot``, ``nctheory compare``.
"""
