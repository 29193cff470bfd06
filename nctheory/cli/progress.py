"""Progress notes for long commands: one line per step on stderr, only when stderr is a terminal (so --json
output, pipes and logs stay as they are), each with the seconds since the command started."""
from __future__ import annotations

import sys
import time
from typing import Callable


def stderr_progress(enabled: bool | None = None) -> Callable[[str], None] | None:
    """A callback ``note(text)`` that prints ``[  12.3 s] text`` to stderr, or None when ``enabled`` is False
    (default: whether stderr is a terminal)."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None
    t0 = time.perf_counter()

    def note(text: str) -> None:
        print(f"[{time.perf_counter() - t0:7.1f} s] {text}", file=sys.stderr, flush=True)

    return note
