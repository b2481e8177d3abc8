"""Evaluation reports (report.md, report.json, cases.csv) and the bundled test-metrics store.

``src/lsdebm/checkpoints/test_metrics.json`` maps a checkpoint name to the sha256 of the file
that was evaluated and its test-set numbers; readers only trust an entry whose sha256 matches
the file they hold, so retraining a checkpoint silently invalidates its old numbers.
"""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from lsdebm.data.phantoms import PART_LABELS
from lsdebm.evaluation.metrics import METRIC_NAMES
from lsdebm.evaluation.phantoms import COMPAT_COLUMNS, PART_COLUMNS, EvalResult, training_seconds
from lsdebm.fileio import atomic_write
from lsdebm.runtime import checkpoint as _checkpoint

TEST_METRICS_FILE = "test_metrics.json"
REPORT_FILES = ("report.md", "report.json", "cases.csv")
TITLES = {"dsc": "DSC", "vs": "VS", "sen": "SEN", "spec": "SPEC", "nmi": "NMI", "ck": "CK",
          "hd95": "HD95 (mm)", "assd": "ASSD (mm)", "sen_ref": "SEN* (precision)", "spec_ref": "SPEC* (NPV)",
          "nmi_ref": "NMI* (geometric)", "dice_posterior": "Posterior",
          **{f"dice_{n}": n.capitalize() for n in PART_LABELS.values()}}
ROW_MODELS = {"reconnet": "reconnet", "reconnet+vae": "vae", "reconnet+lebm": "lebm",
              "reconnet+lsdebm": "lsdebm", "lsdebm": "lsdebm"}


def fmt(stat: dict[str, float], digits: int = 4) -> str:
    """``mean ± std`` (std omitted when undefined)."""
    mean, std = stat["mean"], stat["std"]
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if math.isfinite(std) else "")


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    return f"{seconds / 60:.1f} min" if seconds < 3600 else f"{seconds / 3600:.2f} h"


def timing_rows(result: EvalResult, models: dict[str, Any]) -> list[dict[str, Any]]:
    """Table 3: per row, its model's training time and per-sample time (median, batched and batch 1)."""
    out = []
    for row in result.rows:
        if row.key == "raw":
            continue
        kind = ROW_MODELS[row.key]
        ckpt = models.get(kind)
        own = result.seconds.get(row.key, [])
        stage1 = result.seconds.get("reconnet", []) if row.reconnet and row.method else []
        single = result.single_seconds.get(row.key, [])
        single1 = result.single_seconds.get("reconnet", []) if row.reconnet and row.method else []
        out.append({
            "row": row.key, "title": row.title, "model": kind,
            "parameters": sum(p.numel() for p in ckpt.model.parameters()) if ckpt else None,
            "training_seconds": training_seconds(ckpt.info) if ckpt else None,
            "model_seconds_batched": float(np.median(own)) if own else None,
            "pipeline_seconds_batched": float(np.median(np.add(own, stage1))) if own and stage1 else None,
            "model_seconds_single": float(np.median(single)) if single else None,
            "pipeline_seconds_single": float(np.median(np.add(single, single1))) if single and single1 else None,
        })
    return out


def _secs(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def render_markdown(result: EvalResult, summary: dict, bars: list[dict], timing: list[dict],
                    meta: dict[str, Any]) -> str:
    """The human-readable report: Table 1, part Dice, Table 3, quality bars, reproduction command."""
    cols = list(METRIC_NAMES) + [c for c in COMPAT_COLUMNS if c in next(iter(summary.values()), {})]
    n = max((s["dsc"]["n"] for s in summary.values()), default=0)
    parts = [f"# LSD-EBM evaluation\n\n{n} test cases; {meta.get('test_set', '')}. Mean ± sample std (ddof=1).\n",
             "## Table 1: segmentation quality against the high-quality mask\n",
             _table(["Method"] + [TITLES[c] for c in cols],
                    [[r.title] + [fmt(summary[r.key][c], 2 if c in ("hd95", "assd") else 4) for c in cols]
                     for r in result.rows]),
             "\n## Dice per anatomical part (Voronoi part regions, see docs/evaluation.md)\n",
             _table(["Method"] + [TITLES[c] for c in PART_COLUMNS],
                    [[r.title] + [fmt(summary[r.key][c]) for c in PART_COLUMNS] for r in result.rows]),
             f"\n## Table 3: training and reconstruction time ({meta.get('device', '?')})\n",
             _table(["Method", "Parameters", "Training time", "Model s/case (batched)",
                     "Pipeline s/case (batched)", "Model s/case (batch 1)", "Pipeline s/case (batch 1)"],
                    [[t["title"], f"{t['parameters']:,}" if t["parameters"] else "n/a",
                      _duration(t["training_seconds"]), _secs(t["model_seconds_batched"]),
                      _secs(t["pipeline_seconds_batched"]), _secs(t["model_seconds_single"]),
                      _secs(t["pipeline_seconds_single"])] for t in timing]),
             "\nTraining time is the row's own model (from its checkpoint); pipeline times add the ReconNet "
             f"stage. Times are medians over cases (wall clock; machine load average at start/end "
             f"{meta.get('load_average_start')} / {meta.get('load_average_end')}).\n",
             "## Quality bars\n",
             "\n".join(f"- {'HOLDS' if b['holds'] else ('n/a' if b['holds'] is None else 'FAILS')}: {b['bar']} "
                       f"({', '.join('n/a' if v is None else f'{v:.4f}' for v in b['values'])})" for b in bars),
             f"\n## Reproduce\n\n```\n{meta.get('command', '')}\n```\n"]
    return "\n".join(parts)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_reports(out_dir: str | Path, result: EvalResult, summary: dict, bars: list[dict], timing: list[dict],
                  meta: dict[str, Any], overwrite: bool = False) -> list[Path]:
    """Write report.md, report.json and cases.csv atomically into ``out_dir``."""
    out_dir = Path(out_dir)
    data = _clean({"meta": meta, "summary": summary, "quality_bars": bars, "timing": timing})
    md = render_markdown(result, summary, bars, timing, meta)
    return [atomic_write(out_dir / "report.md", lambda t: t.write_text(md), overwrite),
            atomic_write(out_dir / "report.json", lambda t: t.write_text(json.dumps(data, indent=2) + "\n"), overwrite),
            write_cases_csv(out_dir / "cases.csv", result.cases, overwrite)]


def write_cases_csv(path: Path, cases: list[dict], overwrite: bool = False) -> Path:
    """One row per (case, method) with every metric, written atomically."""
    columns = list(cases[0]) if cases else []

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(cases)

    return atomic_write(path, write_csv, overwrite)


def load_recorded_metrics(path: str | Path | None = None) -> dict[str, Any]:
    """The test-metrics store ({} when absent or unreadable)."""
    path = Path(path) if path else _checkpoint.BUNDLED_DIR / TEST_METRICS_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def recorded_metrics(name: str, sha256: str, path: str | Path | None = None) -> dict[str, Any] | None:
    """Test metrics of checkpoint ``name`` if they were recorded for exactly this file (sha256)."""
    entry = load_recorded_metrics(path).get(name)
    return entry if isinstance(entry, dict) and entry.get("sha256") == sha256 else None


def record_metrics(models: dict[str, Any], summary: dict, meta: dict[str, Any],
                   path: str | Path | None = None) -> Path:
    """Merge this evaluation's numbers for each checkpoint (by file name and sha256) into the store.

    Without ``path`` the bundled store is updated, for bundled checkpoints only.
    """
    bundled_only = path is None
    path = Path(path) if path else _checkpoint.BUNDLED_DIR / TEST_METRICS_FILE
    store = load_recorded_metrics(path)
    keep = list(METRIC_NAMES) + ["dice_posterior"]
    for kind, ckpt in models.items():
        if bundled_only and Path(ckpt.path).resolve().parent != _checkpoint.BUNDLED_DIR.resolve():
            continue  # the bundled store only describes bundled files
        rows = {r: {c: {"mean": summary[r][c]["mean"], "std": summary[r][c]["std"]} for c in keep}
                for r, k in ROW_MODELS.items() if k == kind and r in summary}
        store[Path(ckpt.path).stem] = _clean({
            "sha256": ckpt.sha256, "kind": kind, "rows": rows, "n": summary.get("raw", next(iter(summary.values())))
            ["dsc"]["n"], "test_set": meta.get("test_set"), "command": meta.get("command"),
            "created_utc": meta.get("created_utc")})
    text = json.dumps(store, indent=2, sort_keys=True) + "\n"
    return atomic_write(path, lambda t: t.write_text(text), overwrite=True)
