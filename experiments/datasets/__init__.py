"""Dataset factories for experiment configs (``"dataset": "experiments.datasets:NAME"``; run from the repository
root, which must be on the Python path, e.g. ``PYTHONPATH=$PWD``)."""
