"""The per-epoch CSV beside the checkpoint (rewritten atomically after every epoch)."""
from __future__ import annotations

import csv
from pathlib import Path

from lsdebm.fileio import atomic_write


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts; columns = union of keys in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write, overwrite=True)
