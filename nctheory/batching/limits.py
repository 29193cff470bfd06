"""Memory limits for the batching commands: what is available, and the ``--max-memory`` option.

``check-batches`` and ``make-plan`` estimate what a plan needs before allocating it and refuse
(InputError, exit 2, one line with the estimate) beyond a limit: ``--max-memory`` when given, else
the memory the system reports available (``MemAvailable`` in /proc/meminfo; 4 GiB where that cannot
be read).
"""

from __future__ import annotations

import os
import re

from nctheory.errors import InputError

FALLBACK_BYTES = 4 * 2**30
_UNITS = {"": 1, "B": 1, "K": 2**10, "KB": 2**10, "KIB": 2**10, "M": 2**20, "MB": 2**20, "MIB": 2**20,
          "G": 2**30, "GB": 2**30, "GIB": 2**30, "T": 2**40, "TB": 2**40, "TIB": 2**40}


def available_memory() -> int:
    """Bytes of memory available to a new allocation, as the system reports it."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return FALLBACK_BYTES


def parse_memory(text) -> int:
    """'4G', '512M', '1.5GiB', '1000000' (bytes) -> bytes; InputError otherwise."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    if not m or m.group(2).upper() not in _UNITS:
        raise InputError(f"--max-memory must be a size such as 512M, 4G or a number of bytes, got {text!r}")
    value = float(m.group(1)) * _UNITS[m.group(2).upper()]
    if not value >= 1:
        raise InputError(f"--max-memory must be positive, got {text!r}")
    return int(value)


def memory_limit(text=None) -> int:
    """The limit a command works under: --max-memory if given, else the available memory."""
    return available_memory() if text is None else parse_memory(text)
