"""The real-anatomy report: ``real_report.md``, ``real_summary.json`` and ``real_cases.csv``.

Written by ``lsdebm evaluate --real`` from :func:`lsdebm.evaluation.real.summarize_real`; every
file is written atomically (:func:`lsdebm.fileio.atomic_write`) after the evaluation finished.
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lsdebm.evaluation.phantoms import EvalResult
from lsdebm.evaluation.report import TITLES, _clean, fmt, write_cases_csv
from lsdebm.evaluation.report import _table as markdown_table
from lsdebm.fileio import atomic_write

REAL_REPORT_FILES = ("real_report.md", "real_summary.json", "real_cases.csv")
MAIN_COLUMNS = ("dsc", "vs", "hd95", "assd")
GROUP_TITLES = {"subject": "subject", "plane": "plane", "thickness": "slice thickness (mm)", "form": "form"}


def _num(value: float | None, digits: int = 4, sign: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def main_table(result: EvalResult, summary: dict) -> str:
    """Rows x DSC/VS/HD95/ASSD (mean ± std) and median seconds per case."""
    overall = summary["overall"]
    body = []
    for r in result.rows:
        cells = [fmt(overall[r.key][c], 2 if c in ("hd95", "assd") else 4) for c in MAIN_COLUMNS]
        secs = result.seconds.get(r.key) or []
        body.append([r.title, *cells, _num(float(np.median(secs)), 3) if secs else "n/a"])
    return markdown_table(["Method", *(TITLES[c] for c in MAIN_COLUMNS), "s/case (median)"], body)


def group_table(result: EvalResult, summary: dict, group: str, column: str = "dsc") -> str:
    """Mean ± std of ``column`` per row (lines) and per value of ``group`` (columns)."""
    by = summary[f"by_{group}"]
    keys = list(by)
    return markdown_table(["Method", *(f"{k} (n={next(iter(by[k].values()))[column]['n']})" for k in keys)],
                          [[r.title, *(fmt(by[k][r.key][column]) for k in keys)] for r in result.rows])


def paired_table(result: EvalResult, summary: dict) -> str:
    """Each row against raw: paired DSC difference ± standard error, cases better/worse, HD95 difference."""
    paired = summary["paired_vs_raw"]
    body = [[r.title, f"{_num(p['dsc_diff'], sign=True)} ± {_num(p['dsc_diff_se'])}",
             f"{p['better']} / {p['worse']} of {p['n']}", _num(p["hd95_diff"], 2, sign=True)]
            for r in result.rows if (p := paired.get(r.key))]
    return markdown_table(["Method", "ΔDSC vs raw (mean ± s.e.)", "better / worse than raw", "ΔHD95 (mm)"], body)


def _bars(bars: list[dict]) -> str:
    return "\n".join(f"- {'HOLDS' if b['holds'] else ('n/a' if b['holds'] is None else 'FAILS')}: {b['bar']} "
                     f"({', '.join(_num(v) for v in b['values'])})" for b in bars)


def render_real_markdown(result: EvalResult, summary: dict, meta: dict[str, Any]) -> str:
    """The human-readable real-anatomy report (see docs/evaluation.md, "Real anatomy")."""
    n = len({c["case"] for c in result.cases})
    forms = {c.get("form") for c in result.cases}
    truth = f"the {meta.get('protocol', {}).get('truth_spacing', 1.0):g} mm truth grid"
    grid = truth if "original" not in forms else \
        ("each mask's own grid" if forms == {"original"} else f"{truth} (the original form: each mask's own grid)")
    parts = [f"# LSD-EBM evaluation on real anatomy\n\n{n} cases; {meta.get('test_set', '')}. "
             f"Scored on {grid}; mean ± sample std (ddof=1).\n",
             "## Table 1: segmentation quality against the real high-quality mask\n", main_table(result, summary),
             "\n## Paired against the raw input\n", paired_table(result, summary)]
    for group, title in GROUP_TITLES.items():
        if summary.get(f"by_{group}"):
            parts += [f"\n## DSC per {title}\n", group_table(result, summary, group)]
    parts += ["\n## Quality bars\n", _bars(summary["bars"]),
              f"\n## Reproduce\n\n```\n{meta.get('command', '')}\n```\n"]
    return "\n".join(parts)


def write_real_reports(out_dir: str | Path, result: EvalResult, summary: dict, meta: dict[str, Any],
                       overwrite: bool = False) -> list[Path]:
    """Write real_report.md, real_summary.json and real_cases.csv atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    data = _clean({"meta": meta, "summary": summary})
    md = render_real_markdown(result, summary, meta)
    text = json.dumps(data, indent=2) + "\n"
    return [atomic_write(out_dir / "real_report.md", lambda t: t.write_text(md), overwrite),
            atomic_write(out_dir / "real_summary.json", lambda t: t.write_text(text), overwrite),
            write_cases_csv(out_dir / "real_cases.csv", result.cases, overwrite)]
