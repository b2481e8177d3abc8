"""What ``lsdebm evaluate`` and ``lsdebm evaluate --real`` share: the rows option and the machine load.

Both :mod:`lsdebm.cli.evaluate` and :mod:`lsdebm.cli.evaluate_real` import this module, so neither
imports the other's helpers (no import cycle).
"""
from __future__ import annotations

import os


def parse_methods(text: str | None):
    """The rows named by ``--methods`` (comma-separated; None or empty: all rows)."""
    from lsdebm.evaluation.rows import select_rows

    return select_rows([m.strip() for m in text.split(",") if m.strip()] if text else None)


def load_averages() -> list[float] | None:
    """1/5/15-minute load averages (timings on a shared machine depend on them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
