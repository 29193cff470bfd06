"""Every symbolic derivation, by name: the list `nctheory derive` shows.

Importing this module imports each derivation module (each registers its derivations with
:func:`nctheory.symbolic.core.derivation`). It sits above them: they import only
:mod:`nctheory.symbolic.core`, so no import cycle hides behind an import inside a function.
"""

from __future__ import annotations

from typing import Callable

from nctheory.symbolic import equivalences, prototypes, scl_bounds  # noqa: F401  (they register on import)
from nctheory.symbolic.core import Derivation, registered


def all_derivations() -> dict[str, tuple[str, Callable[[], Derivation]]]:
    """{name: (title, fn() -> Derivation)} for every derivation, sorted by name."""
    return registered()
