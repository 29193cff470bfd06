"""Certified UFM solvers.

- :mod:`nctheory.solvers.gram`: exact convex program over the Gram matrix of any LSEForm (cvxpy,
  Clarabel then SCS), with the duality-gap certificate and geometry verdict.
- :mod:`nctheory.solvers.reduced`: the symmetry-reduced full-batch SCL program on the k x k class-mean
  Gram matrix (counts up to 1e6 in seconds).
- :mod:`nctheory.solvers.riemannian`: first-order solver over unit (non-negative) features in torch,
  for mini-batch losses, d < n and as a cross-check: an upper bound, never a certified optimum.
- :mod:`nctheory.solvers.signs`: the exact minimum in d = 1 by enumerating sign patterns (S^0 = {-1, +1}).
- :mod:`nctheory.solvers.dimension`: whether the Gram program's optimum is attained in dimension D (and,
  for UFM+, by an explicit non-negative point); otherwise its dual bound is only a lower bound.
"""

from nctheory.solvers.gram import SolveResult, solve_gram  # noqa: F401
from nctheory.solvers.reduced import solve_reduced  # noqa: F401,E402
