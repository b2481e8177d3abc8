"""Memory limits checked *before* a large allocation, so a huge grid is refused, not attempted.

A NIfTI header or a checkpoint config can ask for any array size. Readers compute what the
array would need and call :func:`check_memory`, which raises an :class:`InputError` naming
the need and the limit instead of letting the process swap or be killed.

The limit is ``LSDEBM_MAX_MEMORY_GB`` (environment, in GiB) when set, else half of the
machine's physical memory, capped at 16 GiB.
"""
from __future__ import annotations

import math
import os

from lsdebm.errors import InputError

ENV_VAR = "LSDEBM_MAX_MEMORY_GB"
DEFAULT_CAP = 16 * 2 ** 30


def format_bytes(n: float) -> str:
    """Human-readable size: ``1.5 GiB``, ``12.0 MiB``, ``512 B``."""
    for unit, size in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit() -> int:
    """Largest single allocation (bytes) a reader may make (see the module docstring)."""
    value = os.environ.get(ENV_VAR)
    if value:
        try:
            gib = float(value)
        except ValueError:
            raise InputError(f"{ENV_VAR}={value!r} is not a number of GiB (e.g. 8 or 0.5)") from None
        if not gib > 0:
            raise InputError(f"{ENV_VAR}={value!r} must be > 0 GiB")
        return int(gib * 2 ** 30)
    phys = _physical_memory()
    return min(DEFAULT_CAP, phys // 2) if phys else DEFAULT_CAP


def array_bytes(shape, itemsize: int) -> int:
    """Bytes of an array of ``shape`` (exact integer arithmetic, no overflow)."""
    return math.prod(int(s) for s in shape) * int(itemsize)


def check_memory(nbytes: int, what: str) -> None:
    """Refuse an allocation of ``nbytes`` above :func:`memory_limit`.

    Args:
        nbytes: Bytes the operation would allocate.
        what: What would be allocated, naming the file or setting (goes into the message).

    Raises:
        InputError: ``"<what> needs 201.2 GiB of memory, more than the 8.0 GiB limit ..."``.
    """
    limit = memory_limit()
    if nbytes > limit:
        raise InputError(f"{what} needs {format_bytes(nbytes)} of memory, more than the {format_bytes(limit)} "
                         f"limit (set {ENV_VAR} to raise it if the machine has the memory)")
