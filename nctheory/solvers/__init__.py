"""Certified UFM solvers.

- :mod:`nctheory.solvers.ufm`: the library API, :func:`solve_ufm` (:class:`UFMProblem` -> :class:`UFMReport`):
  method choice, relaxation then attainment in dimension D, the bracket, the first-order fallback, the
  exhaustive d = 1 case (what `nctheory solve` prints).
- :mod:`nctheory.solvers.gram`: exact convex program over the Gram matrix of any LSEForm (cvxpy,
  Clarabel then SCS), with the duality-gap certificate and geometry verdict.
- :mod:`nctheory.solvers.reduced`: the symmetry-reduced full-batch SCL program on the k x k class-mean
  Gram matrix (counts up to 1e6 in seconds).
- :mod:`nctheory.solvers.prototypes`: the geometry learned with fixed prototypes (Gill et al.), finite n_w
  by a class-block-reduced certified program, n_w -> oo by per-class programs.
- :mod:`nctheory.solvers.riemannian`: first-order solver over unit (non-negative) features in torch,
  for mini-batch losses, d < n and as a cross-check: an upper bound, never a certified optimum.
- :mod:`nctheory.solvers.signs`: the exact minimum in d = 1 by enumerating sign patterns (S^0 = {-1, +1}).
- :mod:`nctheory.solvers.dimension`: whether the Gram program's optimum is attained in dimension D (and,
  for UFM+, by an explicit non-negative point); otherwise its dual bound is only a lower bound.
- :mod:`nctheory.solvers.certificate`, :mod:`~nctheory.solvers.conic`, :mod:`~nctheory.solvers.verdict`:
  weak-duality lower bounds, the conic solve driver, geometry names.
"""

import importlib

# The names re-exported here, loaded on first use (PEP 562): importing a light submodule (nctheory.solvers.ufm
# for its METHODS, as the CLI's parser does) then does not load cvxpy.
_EXPORTS = {"SolveResult": "gram", "solve_gram": "gram", "solve_reduced": "reduced",
            "UFMProblem": "ufm", "UFMReport": "ufm", "solve_ufm": "ufm"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"nctheory.solvers.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'nctheory.solvers' has no attribute {name!r}")
