"""The whole scikit-learn digits set (all 1,797 8x8 images, 10 classes) as one training set.

``"dataset": "experiments.datasets.whole_digits:whole_digits"`` trains on every image. The images are those of
:func:`nctheory.harness.data.load_digits_arrays` (pixels 0..16 scaled to [0, 1]) with no held-out split;
there is no other data, so the *test* set returned is the training set itself: a run's ``ncc_test`` is
then nearest-class-centre accuracy on the training images, not a held-out accuracy. Class counts are those
of the data set (174 to 183 per class), i.e. the natural, mildly imbalanced counts.
"""

from __future__ import annotations

from nctheory.harness.data import load_digits_arrays


def whole_digits(seed: int = 0):
    """{"train": [(image (1, 8, 8) float32, label)] * 1797, "test": the same list}."""
    x, y, _, _, _ = load_digits_arrays(test_fraction=0.0, seed=seed)
    items = list(zip(x, y.tolist()))
    return {"train": items, "test": items}
