"""Evaluation of the paper's Table 1 / Table 3 on a held-out phantom test set.

Rows (:data:`lsdebm.evaluation.rows.ROWS`): the raw low-quality input, ReconNet, ReconNet followed by each
post-processing model (VAE, LEBM, LSD-EBM), and LSD-EBM applied directly to the raw input.
Columns: the metrics of :func:`lsdebm.evaluation.metrics.compute_metrics` plus a Dice per anatomical
part and for all posterior elements together.

Part Dice. The reference part labels partition the high-quality mask. Every voxel of the
volume is assigned to the part of its nearest reference voxel (a Voronoi partition computed
with a Euclidean distance transform in mm), giving regions R_p that tile the volume. The Dice
of part p compares the prediction restricted to R_p with the reference part G_p:
``2 |P ∩ R_p ∩ G_p| / (|P ∩ R_p| + |G_p|)``. Because the regions tile the volume, every
predicted voxel counts for exactly one part (a spurious blob counts against the part it is
nearest to) and the parts' TP/FP/FN add up to the whole-volume counts. "posterior" is the
same Dice over the union of pedicles, laminae, spinous, transverse and articular regions.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lsdebm.data.frame import crop_to_model, on_model_grid, paste_back
from lsdebm.data.phantoms import PART_LABELS
from lsdebm.errors import CheckpointError
from lsdebm.evaluation.metrics import METRIC_NAMES, compute_metrics
from lsdebm.evaluation.parts import part_regions
from lsdebm.evaluation.rows import ROW_KEYS, Row
from lsdebm.methods import RunSettings, make_generator, run_events
from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints, read_metadata
from lsdebm.runtime.device import model_device
from lsdebm.runtime.loading import load_checkpoints
from lsdebm.tasks.progress import Job, Progress, drain

POSTERIOR_PARTS = ("pedicles", "laminae", "spinous", "transverse", "articular")
PART_COLUMNS = tuple(f"dice_{name}" for name in PART_LABELS.values()) + ("dice_posterior",)
COMPAT_COLUMNS = ("sen_ref", "spec_ref", "nmi_ref")


def needed_kinds(rows: Sequence[Row]) -> list[str]:
    kinds = {"reconnet"} if any(r.reconnet for r in rows) else set()
    kinds |= {r.method for r in rows if r.method}
    return [k for k in ("reconnet", "vae", "lebm", "lsdebm") if k in kinds]


def find_checkpoint(kind: str, directory: str | Path | None) -> Path:
    """``<kind>-default.safetensors`` (bundled, or in ``directory``), else the only file of that kind there."""
    if directory is None:
        bundled = bundled_checkpoints()
        if f"{kind}-default" not in bundled:
            raise CheckpointError(f"bundled checkpoint {kind}-default is not installed; pass --checkpoint-dir DIR")
        return bundled[f"{kind}-default"]
    directory = Path(directory)
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: checkpoint directory not found")
    default = directory / f"{kind}-default.safetensors"
    if default.is_file():
        return default
    found = [p for p in sorted(directory.glob("*.safetensors")) if read_metadata(p)["kind"] == kind]
    if len(found) != 1:
        raise CheckpointError(f"{directory}: expected {kind}-default.safetensors or exactly one {kind} checkpoint, "
                              f"found {len(found)}")
    return found[0]


def row_checkpoints(rows: Sequence[Row], directory=None, device="cpu") -> dict[str, LoadedCheckpoint]:
    """Load every checkpoint the rows need with the one loader; all must share one model frame."""
    sources = {k: find_checkpoint(k, directory) if directory is not None else None for k in needed_kinds(rows)}
    return load_checkpoints(sources, device, missing_hint="pass --checkpoint-dir DIR",
                            mismatch_hint="evaluate needs one model frame")


def part_dice(pred: np.ndarray, parts: np.ndarray, regions: np.ndarray) -> dict[str, float]:
    """Dice per part and for the posterior elements (NaN when a part is absent in the reference)."""
    pred = pred > 0
    out = {}
    groups = {name: [lab] for lab, name in PART_LABELS.items()}
    groups["posterior"] = [lab for lab, name in PART_LABELS.items() if name in POSTERIOR_PARTS]
    for name, labels in groups.items():
        gt = np.isin(parts, labels)
        p = pred & np.isin(regions, labels)
        denom = int(p.sum()) + int(gt.sum())
        out[f"dice_{name}"] = 2.0 * int((p & gt).sum()) / denom if gt.any() else float("nan")
    return out


def case_metrics(pred, hq, parts, regions, spacing, reference_compat: bool = False) -> dict[str, float]:
    """All columns for one case and one row."""
    result = compute_metrics(pred, hq, spacing)
    if reference_compat:
        ref = compute_metrics(pred, hq, spacing, reference_compat=True)
        result.update(sen_ref=ref["sen"], spec_ref=ref["spec"], nmi_ref=ref["nmi"])
    result.update(part_dice(pred, parts, regions))
    return result


@dataclass
class EvalResult:
    """Per-case rows (dicts; ``seconds`` is the whole pipeline's time per case) and per-row timing.

    ``seconds[row]`` and ``single_seconds[row]`` hold the time of the row's own model per case
    (batched, and with batch size 1); add ``seconds["reconnet"]`` for a ReconNet+X pipeline.
    """

    cases: list[dict[str, Any]]
    rows: list[Row]
    seconds: dict[str, list[float]]
    single_seconds: dict[str, list[float]] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


def _device(models: dict[str, LoadedCheckpoint]) -> torch.device:
    return model_device(next(iter(models.values())).model) if models else torch.device("cpu")


def _run_model(model, x: torch.Tensor, settings: RunSettings, generator) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    result = None
    for result in run_events(model, x, settings, generator):
        pass
    return (result.probs[:, 0] >= 0.5).cpu().numpy().astype(np.uint8), time.perf_counter() - start


def predict_batch(models: dict[str, LoadedCheckpoint], rows: Sequence[Row], x: np.ndarray, settings: RunSettings,
                  generators: dict) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Predictions (B, *grid) and seconds of each row's own model (ReconNet time not included)."""
    device = _device(models)
    xt = torch.as_tensor(x, dtype=torch.float32, device=device)[:, None]
    preds, secs = {"raw": x.astype(np.uint8)}, {"raw": 0.0}
    if "reconnet" in models:
        preds["reconnet"], secs["reconnet"] = _run_model(models["reconnet"].model, xt, RunSettings(), None)
    for row in rows:
        if row.method is None:
            continue
        inp = torch.as_tensor(preds["reconnet"], dtype=torch.float32, device=device)[:, None] if row.reconnet else xt
        preds[row.key], secs[row.key] = _run_model(models[row.method].model, inp, settings, generators[row.key])
    return preds, secs


def evaluate(pairs: Sequence, models: dict[str, LoadedCheckpoint], rows: Sequence[Row],
             settings: RunSettings = RunSettings(), batch_size: int = 10, reference_compat: bool = False,
             timing_cases: int = 3, progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """:func:`evaluation_job` drained; ``progress(cases done, cases)`` is called after every batch."""
    job = evaluation_job(pairs, models, rows, settings, batch_size, reference_compat, timing_cases)
    return drain(job, None if progress is None else (lambda p: progress(p.done, p.total)))


def evaluation_job(pairs: Sequence, models: dict[str, LoadedCheckpoint], rows: Sequence[Row],
                   settings: RunSettings = RunSettings(), batch_size: int = 10, reference_compat: bool = False,
                   timing_cases: int = 3) -> Job[EvalResult]:
    """Run every row on every case in batches and score it against the high-quality mask.

    A long job (:mod:`lsdebm.tasks.progress`): yields ``Progress(cases done, cases, "cases")`` after
    every batch and returns the :class:`EvalResult`. Cases not on the model grid
    (:func:`lsdebm.data.frame.on_model_grid`) are cropped around the LQ centroid with ``crop_to_model``
    and the prediction is pasted back into the case's grid before scoring. Seeds: one generator per
    row seeded with ``settings.seed``, consumed batch after batch.
    """
    first = next(iter(models.values())) if models else None
    grid = first.config.model.grid if first else pairs[0].hq.shape[0]
    spacing = first.config.model.spacing if first else 1.0
    model_cfg = first.config.model if first else None
    generators = {r.key: make_generator(settings.seed, _device(models)) for r in rows if r.method}
    cases: list[dict[str, Any]] = []
    seconds: dict[str, list[float]] = {}
    for lo in range(0, len(pairs), batch_size):
        batch = pairs[lo:lo + batch_size]
        inputs, infos = [], []
        for pair in batch:
            if on_model_grid(pair.hq.shape, pair.affine, grid, spacing):
                inputs.append(pair.lq), infos.append(None)
            else:
                crop, info = crop_to_model(pair.lq, pair.affine, None, grid, spacing, model_cfg)
                inputs.append(crop), infos.append(info)
        preds, secs = predict_batch(models, rows, np.stack(inputs), settings, generators)
        for key, sec in secs.items():
            seconds.setdefault(key, []).extend([sec / len(batch)] * len(batch))
        for i, pair in enumerate(batch):
            vox = tuple(float(s) for s in np.linalg.norm(pair.affine[:3, :3], axis=0))
            regions = part_regions(pair.parts, vox, allow_empty=True)
            for row in rows:
                pred = preds[row.key][i] if row.key != "raw" else pair.lq
                if infos[i] is not None and row.key != "raw":
                    pred = paste_back(pred, infos[i])
                own = secs[row.key] / len(batch)
                total = own + (secs["reconnet"] / len(batch) if row.reconnet and row.method else 0.0)
                cases.append({"case": pair.name, "level": pair.level, "method": row.key,
                              "thickness": pair.sim_params.get("thickness"), "seconds": total,
                              **case_metrics(pred, pair.hq, pair.parts, regions, vox, reference_compat)})
        yield Progress(min(lo + batch_size, len(pairs)), len(pairs), "cases")
    single = measure_single(models, rows, pairs[:timing_cases], settings, grid, spacing) if timing_cases else {}
    return EvalResult(cases, list(rows), seconds, single)


def measure_single(models, rows, pairs, settings: RunSettings, grid: int, spacing: float) -> dict[str, list[float]]:
    """Per-sample latency with batch size 1 (after one warm-up call), like the paper's Table 3."""
    out: dict[str, list[float]] = {}
    model_cfg = next(iter(models.values())).config.model if models else None
    inputs = [p.lq if on_model_grid(p.hq.shape, p.affine, grid, spacing) else
              crop_to_model(p.lq, p.affine, None, grid, spacing, model_cfg)[0] for p in pairs]
    if not inputs:
        return out
    gens = {r.key: make_generator(settings.seed, _device(models)) for r in rows if r.method}
    predict_batch(models, rows, inputs[0][None], settings, gens)  # warm-up
    for x in inputs:
        _, secs = predict_batch(models, rows, x[None], settings, gens)
        for key, sec in secs.items():
            out.setdefault(key, []).append(sec)
    return out


def summarize(result: EvalResult) -> dict[str, dict[str, dict[str, float]]]:
    """{row: {column: {"mean", "std" (ddof=1), "n"}}} over cases; NaN part Dice values are skipped."""
    columns = list(METRIC_NAMES) + [c for c in COMPAT_COLUMNS if result.cases and c in result.cases[0]] \
        + list(PART_COLUMNS)
    summary = {}
    for row in result.rows:
        sel = [c for c in result.cases if c["method"] == row.key]
        summary[row.key] = {col: column_stats([c[col] for c in sel]) for col in columns}
    return summary


def column_stats(values) -> dict[str, float]:
    """``{"mean", "std" (ddof=1), "n"}`` of the finite values (NaN where undefined)."""
    vals = np.asarray(list(values), float)
    vals = vals[np.isfinite(vals)]
    return {"mean": float(vals.mean()) if vals.size else float("nan"),
            "std": float(vals.std(ddof=1)) if vals.size > 1 else float("nan"), "n": int(vals.size)}


def quality_bars(summary: dict) -> list[dict[str, Any]]:
    """The issue's quality bars, evaluated honestly (``holds`` None when a needed row is missing)."""
    def mean(row, col):
        return summary.get(row, {}).get(col, {}).get("mean")

    bars = []
    raw = mean("raw", "dsc")
    for key in ROW_KEYS[1:]:
        m = mean(key, "dsc")
        bars.append({"bar": f"{key} DSC > raw LQ DSC", "holds": None if m is None or raw is None else m > raw,
                     "values": [m, raw]})
    m = mean("reconnet+lsdebm", "dsc")
    bars.append({"bar": "reconnet+lsdebm mean DSC >= 0.90", "holds": None if m is None else m >= 0.90,
                 "values": [m, 0.90]})
    for other in ("reconnet+vae", "reconnet+lebm"):
        for col in ("dsc", "dice_posterior"):
            a, b = mean("reconnet+lsdebm", col), mean(other, col)
            bars.append({"bar": f"reconnet+lsdebm {col} >= {other} {col}",
                         "holds": None if a is None or b is None else a >= b, "values": [a, b]})
    return bars


def training_seconds(info: dict[str, Any]) -> float | None:
    """Training wall time recorded by ``lsdebm train`` in a checkpoint's info, if any; a run started
    ``--init-from`` another checkpoint adds the training behind that one."""
    before = info.get("init_from") if isinstance(info.get("init_from"), dict) else {}
    earlier = float(before["wall_time_s"]) if isinstance(before.get("wall_time_s"), (int, float)) else 0.0
    for key in ("wall_time_s", "train_seconds", "training_seconds", "train_time_s", "training_time_s"):
        for src in (info, info.get("train", {}) if isinstance(info.get("train"), dict) else {}):
            if isinstance(src.get(key), (int, float)):
                return float(src[key]) + earlier
    return None
