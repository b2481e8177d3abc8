"""The review table as text: CSV files and tab-separated text for the clipboard."""
from __future__ import annotations

import csv
import io
from pathlib import Path

from lsdebm.evaluation.metrics import METRIC_NAMES
from lsdebm.fileio import atomic_write
from lsdebm.review.roi import MetricsRow

HEADERS = {"dsc": "DSC", "vs": "VS", "sen": "SEN", "spec": "SPEC", "nmi": "NMI", "ck": "CK",
           "hd95": "HD95 (mm)", "assd": "ASSD (mm)"}
COLUMNS = ("region", "voxels") + tuple(HEADERS[k] for k in METRIC_NAMES)


def table_rows(rows: list[MetricsRow], digits: int = 4) -> list[list[str]]:
    """Header plus one list of strings per row, numbers rounded to ``digits`` decimals."""
    out = [list(COLUMNS)]
    for row in rows:
        out.append([row.region, str(row.voxels)] + [f"{row.metrics[k]:.{digits}f}" for k in METRIC_NAMES])
    return out


def to_text(rows: list[MetricsRow], delimiter: str = ",", digits: int = 4) -> str:
    """The table as delimited text (``","`` for CSV, ``"\\t"`` to paste into a spreadsheet)."""
    buf = io.StringIO()
    csv.writer(buf, delimiter=delimiter, lineterminator="\n").writerows(table_rows(rows, digits))
    return buf.getvalue()


def write_csv(path, rows: list[MetricsRow], overwrite: bool = False, digits: int = 6) -> Path:
    """Write the table as CSV atomically (refuses to replace a file unless ``overwrite``)."""
    text = to_text(rows, ",", digits)
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"), overwrite=overwrite)
