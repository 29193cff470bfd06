"""Symbolic (sympy) derivations of the papers' closed forms, compared with what each paper states.

- :mod:`nctheory.symbolic.scl_bounds`: Kini et al. 2023 Thm 1/2 lower bounds with temperature,
  Lemma D.1, Lemma D.2's closed forms, Remark 2.
- :mod:`nctheory.symbolic.prototypes`: Gill et al. 2023 Prop. 1 (the n_w -> oo expansion of SCL with
  prototypes) and Prop. 2 (ETF prototypes give h* = w_y).
- :mod:`nctheory.symbolic.equivalences`: Gill Remark 1 and Koromilas et al. 2026 Thm 4.2.

Every derivation returns a :class:`~nctheory.symbolic.core.Derivation`;
:func:`nctheory.symbolic.registry.all_derivations` lists them and ``nctheory derive`` prints them.
This package never imports nctheory.harness.
"""

from nctheory.symbolic.core import Derivation, Step, derivation  # noqa: F401
