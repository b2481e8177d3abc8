"""The rows of the evaluation tables (the paper's Table 1): which stages each row runs.

Kept apart from :mod:`lsdebm.evaluation.phantoms` (which needs torch and the models) so that the
command line can list the rows without importing them.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lsdebm.errors import InputError


@dataclass(frozen=True)
class Row:
    """One table row: an optional ReconNet stage followed by an optional method."""

    key: str
    title: str
    method: str | None
    reconnet: bool


ROWS = (
    Row("raw", "Raw LQ input", None, False),
    Row("reconnet", "ReconNet", None, True),
    Row("reconnet+vae", "ReconNet+VAE", "vae", True),
    Row("reconnet+lebm", "ReconNet+LEBM", "lebm", True),
    Row("reconnet+lsdebm", "ReconNet+LSD-EBM", "lsdebm", True),
    Row("lsdebm", "LSD-EBM (raw input)", "lsdebm", False),
)
ROW_KEYS = tuple(r.key for r in ROWS)


def select_rows(keys: Sequence[str] | None) -> list[Row]:
    """Rows in table order; ``keys`` None means all."""
    if not keys:
        return list(ROWS)
    unknown = [k for k in keys if k not in ROW_KEYS]
    if unknown:
        raise InputError(f"unknown method row {unknown[0]!r}; expected some of {', '.join(ROW_KEYS)}")
    return [r for r in ROWS if r.key in keys]
