"""Run every method on the same input, for side-by-side review (the paper's Figs. 3, 4, 10-13).

The comparison holds, in display order: the raw low-quality input, ReconNet alone (stage 1),
then VAE, LEBM and LSD-EBM, each refining ReconNet's thresholded output (the paper's two-stage
pipeline, Sec. 4; without a ReconNet checkpoint they refine the raw input). An input that is
not on the models' grid is cropped around its centroid into the model frame and every result
is pasted back into the input grid (:func:`lsdebm.data.nifti.crop_label` / ``paste_back``), so
all results align with the input and the reference.

:func:`compare_events` is a generator of :class:`CompareProgress` events ending with a
:class:`Comparison`; the plugin runs it in a worker thread (progress and cancel between
events), :func:`compare_methods` drains it.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints, load_checkpoint
from lsdebm.data.nifti import affine_spacing
from lsdebm.data.validate import foreground
from lsdebm.errors import CheckpointError, InputError
from lsdebm.evaluation.metrics import check_mask, compute_metrics
from lsdebm.tasks.reconstruct import effective_settings
from lsdebm.provenance import checkpoint_record, make_provenance
from lsdebm.review.frame import mask_to_input, to_model_grid
from lsdebm.methods import RunSettings, make_generator, run, run_events

METHODS = ("vae", "lebm", "lsdebm")
LABELS = {"input": "raw input", "reconnet": "ReconNet", "vae": "VAE", "lebm": "LEBM", "lsdebm": "LSD-EBM",
          "reference": "ground truth"}


@dataclass(frozen=True)
class CompareProgress:
    """Progress of a comparison: the method running and the overall fraction done in [0, 1]."""

    method: str
    fraction: float


@dataclass
class MethodResult:
    """One cell of the comparison, on the input grid.

    Attributes:
        key: ``input``, ``reconnet``, ``vae``, ``lebm`` or ``lsdebm``.
        label: Display name (:data:`LABELS`).
        mask: uint8 {0, 1} mask on the input grid.
        probs: Model-grid probabilities (None for the raw input).
        metrics: Metrics against the reference (None without a reference).
        seconds: Wall time of this method (stage 1 excluded).
        provenance: Provenance record (checkpoints by sha256, seed, settings, versions).
    """

    key: str
    label: str
    mask: np.ndarray
    probs: np.ndarray | None = None
    metrics: dict | None = None
    seconds: float = 0.0
    provenance: dict = field(default_factory=dict)


@dataclass
class Comparison:
    """All results in display order, plus the input affine and spacing they live on."""

    results: list[MethodResult]
    affine: np.ndarray
    spacing: tuple

    def by_key(self) -> dict[str, MethodResult]:
        return {r.key: r for r in self.results}


def load_compare_checkpoints(sources: dict[str, str | None] | None = None,
                             device: str | torch.device = "cpu") -> dict[str, LoadedCheckpoint]:
    """Load the VAE, LEBM, LSD-EBM (required) and ReconNet (optional) checkpoints.

    Args:
        sources: kind -> bundled name or ``.safetensors`` path; a missing or None entry takes
            the bundled ``<kind>-default``. ReconNet is skipped when not bundled and not given.
        device: Torch device.

    Raises:
        CheckpointError: If a required checkpoint is missing, has the wrong kind, or the models
            do not share one grid and spacing.
    """
    sources = dict(sources or {})
    bundled = bundled_checkpoints()
    loaded = {}
    for kind in ("reconnet",) + METHODS:
        name = sources.get(kind) or f"{kind}-default"
        if sources.get(kind) is None and name not in bundled:
            if kind == "reconnet":
                continue
            raise CheckpointError(f"no {LABELS[kind]} checkpoint: bundled {name} is not installed; choose a file")
        loaded[kind] = load_checkpoint(name, device, expect_kind=kind)
    frames = {k: (c.config.model.grid, c.config.model.spacing, c.config.model.spatial_dims) for k, c in loaded.items()}
    if len(set(frames.values())) > 1:
        listing = ", ".join(f"{LABELS[k]} {g}^{d} at {s} mm" for k, (g, s, d) in frames.items())
        raise CheckpointError(f"the checkpoints do not share one model grid ({listing}); choose matching files")
    return loaded


def _model_frame(models: dict[str, LoadedCheckpoint]) -> tuple[int, float]:
    any_model = next(iter(models.values()))
    return any_model.config.model.grid, any_model.config.model.spacing


def _expected_events(model: torch.nn.Module, s: RunSettings) -> int:
    """Rough number of events a run yields (for progress only)."""
    eff = effective_settings(model, s)
    if model.kind == "lsdebm":
        return max(1, int(eff["steps"]) * int(eff["K"]) + int(eff["steps"]) + 2)
    if model.kind == "lebm":
        return max(1, int(eff["steps"]) + 2)
    return 2


def _settings_for(kind: str, settings: RunSettings) -> RunSettings:
    """LSD-EBM uses ``settings``; the baselines use its seed and encoder mode only."""
    return settings if kind == "lsdebm" else RunSettings(seed=settings.seed, use_mean=settings.use_mean)


def compare_events(x, affine, models: dict[str, LoadedCheckpoint], settings: RunSettings = RunSettings(),
                   reference=None, reference_compat: bool = False) -> Iterator[CompareProgress | Comparison]:
    """Run ReconNet, VAE, LEBM and LSD-EBM on ``x``; yield progress, then the :class:`Comparison`.

    Args:
        x: Low-quality 3D mask (nonzero = foreground) in any grid.
        affine: Its 4x4 voxel-to-world affine (spacing from its columns).
        models: From :func:`load_compare_checkpoints` (``reconnet`` optional).
        settings: LSD-EBM sampling settings; its seed (and ``use_mean``) also drive LEBM and VAE.
            ``repeats`` is ignored (one chain per method).
        reference: Optional high-quality mask on the input grid; adds metrics per result.
        reference_compat: Passed to :func:`lsdebm.evaluation.metrics.compute_metrics`.

    Raises:
        InputError: If ``x`` is not a non-empty 3D mask, or the reference's shape differs or it has
            NaN, infinite or negative values.
    """
    x = np.asarray(x)
    affine = np.asarray(affine, dtype=np.float64)
    if x.ndim == 3 and x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        foreground(x, None)  # raises the shared one-line NaN/inf error (NaN != 0 would count as foreground)
    if x.ndim != 3 or not (x != 0).any():
        raise InputError(f"the input must be a non-empty 3D mask; got shape {x.shape}"
                         f"{' with no foreground' if x.ndim == 3 else ''}")
    missing = [LABELS[k] for k in METHODS if k not in models]
    if missing:
        raise InputError(f"missing checkpoints for {', '.join(missing)}")
    if reference is not None and np.shape(reference) != x.shape:
        raise InputError(f"reference shape {np.shape(reference)} differs from the input shape {x.shape}")
    if reference is not None:
        check_mask(reference, "reference")  # refuse NaN/negative values before running every method
    spacing = affine_spacing(affine)
    grid, model_spacing = _model_frame(models)
    settings = replace(settings, repeats=1)
    crop, info = to_model_grid(x, affine, grid, model_spacing, next(iter(models.values())).config.model)

    def finish(key: str, mask: np.ndarray, probs, seconds: float, records: list, s: RunSettings | None):
        metrics = compute_metrics(mask, reference, spacing, reference_compat) if reference is not None else None
        used = effective_settings(models[key].model, s) if s is not None else {}
        prov = make_provenance(records, s.seed if s is not None else None, used,
                               extra={"method": key, "seconds": round(seconds, 3), "input_shape": list(x.shape),
                                      "cropped_to_model_grid": info is not None})
        return MethodResult(key, LABELS[key], mask, probs, metrics, seconds, prov)

    results = [finish("input", (x != 0).astype(np.uint8), None, 0.0, [], None)]
    device = next(models[METHODS[0]].model.parameters()).device
    inp = torch.as_tensor(crop, dtype=torch.float32, device=device)[None, None]
    stage1_records = []
    if "reconnet" in models:
        start = time.perf_counter()
        probs = run(models["reconnet"].model, inp).probs
        inp = (probs >= 0.5).float()
        seconds = time.perf_counter() - start
        stage1_records = [checkpoint_record(models["reconnet"], "reconnet")]
        p = probs[0, 0].cpu().numpy()
        results.append(finish("reconnet", mask_to_input(p >= 0.5, info), p, seconds, stage1_records,
                              RunSettings(seed=settings.seed)))
    totals = {k: _expected_events(models[k].model, _settings_for(k, settings)) for k in METHODS}
    grand, done = float(sum(totals.values())), 0
    for key in METHODS:
        s = _settings_for(key, settings)
        yield CompareProgress(LABELS[key], done / grand)
        every = max(1, totals[key] // 50)
        start, result = time.perf_counter(), None
        for i, result in enumerate(run_events(models[key].model, inp, s, make_generator(s.seed, device))):
            if i % every == 0:
                yield CompareProgress(LABELS[key], min(1.0, (done + i) / grand))
        seconds = time.perf_counter() - start
        done += totals[key]
        p = result.probs[0, 0].cpu().numpy()
        records = stage1_records + [checkpoint_record(models[key], "method")]
        results.append(finish(key, mask_to_input(p >= 0.5, info), p, seconds, records, s))
    yield CompareProgress("done", 1.0)
    yield Comparison(results, affine, spacing)


def compare_methods(x, affine, models: dict[str, LoadedCheckpoint], settings: RunSettings = RunSettings(),
                    reference=None, reference_compat: bool = False) -> Comparison:
    """Drain :func:`compare_events` and return the :class:`Comparison`."""
    out = None
    for out in compare_events(x, affine, models, settings, reference, reference_compat):
        pass
    return out


def summary(comparison: Comparison) -> list[dict[str, Any]]:
    """One dict per result: label, foreground voxels, seconds and metrics (if any)."""
    return [{"method": r.label, "voxels": int(r.mask.sum()), "seconds": round(r.seconds, 3), **(r.metrics or {})}
            for r in comparison.results]
