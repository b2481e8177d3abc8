"""Run every method on the same input, for side-by-side review (the paper's Figs. 3, 4, 10-13).

The comparison holds, in display order: the raw low-quality input, ReconNet alone (stage 1),
then VAE, LEBM and LSD-EBM, each refining ReconNet's thresholded output (the paper's two-stage
pipeline, Sec. 4; without a ReconNet checkpoint they refine the raw input). An input that is
not on the models' grid is cropped around its centroid into the model frame and every result
is pasted back into the input grid as probabilities, so all results align with the input and the
reference. Every method's output goes through the same measurement-aware step as ``lsdebm
reconstruct`` (held to the input's thick slices, found from its spacing or staircase, or else to
the input's own voxels: :func:`lsdebm.data.acquisition.observed_acquisition`; each checkpoint's
``consistency`` settings: shape interpolation and projection onto the observed slabs; slabs oblique to the
input's grid on their own slab grid, :mod:`lsdebm.tasks.tilted`), so Compare shows what the command
line writes; ``consistency=False`` shows the raw model outputs instead. The guided Langevin
iterations of LSD-EBM are not run here (the unguided chain is compared).

:func:`compare_events` is a long job (:mod:`lsdebm.tasks.progress`): a generator of
:class:`~lsdebm.tasks.progress.Progress` values (``stage`` = the method running) that returns the
:class:`Comparison`; the plugin runs it in a worker thread (progress and cancel between values),
:func:`compare_methods` drains it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from lsdebm.data.acquisition import observed_acquisition
from lsdebm.data.boxes import bounding_box, box_affine, grown_box, mapped_box, union_box
from lsdebm.data.frame import affine_spacing, paste_probabilities, to_model_grid
from lsdebm.data.slab_projection import consistent_probabilities, measured_output
from lsdebm.data.tilted_slabs import TiltedSlabs
from lsdebm.data.validate import foreground, require_one_structure
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import check_mask, compute_metrics
from lsdebm.methods import RunSettings, make_generator, method_for, run, run_events
from lsdebm.nn.registry import LABELS as KIND_LABELS
from lsdebm.provenance import checkpoint_record, make_provenance
from lsdebm.runtime.checkpoint import LoadedCheckpoint
from lsdebm.runtime.device import model_device
from lsdebm.runtime.loading import load_checkpoints, output_step, slab_of
from lsdebm.tasks.progress import Job, Progress, drain
from lsdebm.tasks.reconstruct import effective_settings
from lsdebm.tasks.tilted import SlabView, slab_view

METHODS = ("vae", "lebm", "lsdebm")
LABELS = {"input": "raw input", **{k: KIND_LABELS[k] for k in ("reconnet",) + METHODS}, "reference": "ground truth"}


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
    """All results in display order, plus the input affine and spacing they live on, and the reference mask
    the metrics were computed against (None without one)."""

    results: list[MethodResult]
    affine: np.ndarray
    spacing: tuple
    reference: np.ndarray | None = None
    tilted: TiltedSlabs | None = None  # the input's slabs when they are oblique to its grid (refined on theirs)

    def by_key(self) -> dict[str, MethodResult]:
        return {r.key: r for r in self.results}


def compared_structure(data, label: int | None, what: str, reference=None):
    """``(x, reference)``: the one structure a comparison runs on, as uint8 masks.

    ``label`` picks it from a label map (a VerSe or TotalSegmentator spine): the input's voxels of
    that label, and the reference's too when the reference is a label map holding it (a binary
    reference is used as it is). Without a label an integer map must hold a single structure; a
    real-valued input is thresholded at 0.5.

    Raises:
        InputError: If the label is absent (the present ones are listed), or no label is given for a
            map of several labels (``what`` names the input in the message).
    """
    data = np.asarray(data)
    ref = None if reference is None else np.asarray(reference)
    if label is None:
        require_one_structure(data, label, what, "compare")
        x = data >= 0.5 if data.dtype.kind == "f" else data != 0
        return x.astype(np.uint8), (None if ref is None else (ref != 0).astype(np.uint8))
    x = foreground(data, int(label))  # one line naming the labels present when it is absent
    if ref is not None:
        ref = (ref == label) if ref.dtype.kind in "iu" and (ref == label).any() else (ref != 0)
        ref = ref.astype(np.uint8)
    return x.astype(np.uint8), ref


STRUCTURE_MARGIN_MM = 16.0  # past the thickest slab (10 mm) and a voxel: the output step sees whole slabs


def structure_box(x, reference, affine, models: dict[str, LoadedCheckpoint] | None = None,
                  margin_mm: float = STRUCTURE_MARGIN_MM):
    """``(x, reference, affine, box)`` cut to the box a comparison can touch: a vertebra of a whole-body map is
    compared on its own box, not on the body's grid (40 s and 3 GB in the plugin before).

    The box holds the structure and its reference grown by ``margin_mm`` (the output step's slabs end
    inside it) and, with ``models``, every voxel their model-frame crop reaches, so every result is the
    one of the whole grid, voxel for voxel (masks, DSC, VS, HD95, ASSD); SPEC, NMI and CK count the
    box's background voxels rather than the body's, and an empty result's surface distances (the grid's
    diagonal by convention) the box's. ``box`` is the index box on the input grid (None: nothing cut, as
    for a volume already on the models' grid, which runs as it is).

    Raises:
        InputError: If the reference's shape differs from the input's.
    """
    x, affine = np.asarray(x), np.asarray(affine, dtype=np.float64)
    if reference is not None and np.shape(reference) != x.shape:  # before a cut would hide the mismatch
        raise InputError(f"reference shape {np.shape(reference)} differs from the input shape {x.shape}")
    tight = union_box(bounding_box(x), None if reference is None else bounding_box(reference))
    if tight is None:
        return x, reference, affine, None
    box = grown_box(tight, [int(np.ceil(margin_mm / float(s))) for s in affine_spacing(affine)], x.shape)
    if models:
        grid, spacing = _model_frame(models)
        _, info = to_model_grid(x, affine, grid, spacing, next(iter(models.values())).config.model)
        if info is None:  # already on the model grid: used as it is, so it is not cut either
            return x, reference, affine, None
        box = union_box(box, mapped_box((slice(0, grid),) * 3, info.crop_affine, x.shape, affine))
    cut_ref = None if reference is None else np.asarray(reference)[box]
    return x[box], cut_ref, box_affine(affine, box), box


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
    return load_checkpoints({kind: sources.get(kind) for kind in ("reconnet",) + METHODS}, device,
                            optional=("reconnet",))


def _model_frame(models: dict[str, LoadedCheckpoint]) -> tuple[int, float]:
    any_model = next(iter(models.values()))
    return any_model.config.model.grid, any_model.config.model.spacing


def planned_events(model: torch.nn.Module, settings: RunSettings) -> tuple[RunSettings, int]:
    """(settings this method runs with in the comparison, number of events its run yields)."""
    method = method_for(model)
    s = method.comparison_settings(settings)
    return s, method.n_events(method.resolve(s))


def _check_inputs(x: np.ndarray, models: dict[str, LoadedCheckpoint], reference) -> None:
    """One-line errors for a bad input mask, a missing method checkpoint or a mismatched reference."""
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


def _reconnet_stage(checkpoint: LoadedCheckpoint, inp: torch.Tensor, output, settings: RunSettings, finish):
    """Stage 1: ReconNet on the model-grid input; ``(thresholded input for stage 2, records, its result)``."""
    start = time.perf_counter()
    probs = run(checkpoint.model, inp).probs
    inp = (probs >= 0.5).float()
    seconds = time.perf_counter() - start
    stage1_records = [checkpoint_record(checkpoint, "reconnet")]
    p = probs[0, 0].cpu().numpy()
    result = finish("reconnet", output("reconnet", p), p, seconds, stage1_records,
                    RunSettings(seed=settings.seed))
    return inp, stage1_records, result


def _refinement_events(models: dict[str, LoadedCheckpoint], inp: torch.Tensor, settings: RunSettings, device,
                       output, stage1_records: list, finish) -> Job[list[MethodResult]]:
    """Run VAE, LEBM and LSD-EBM in turn on the stage-1 output, yielding progress; returns their results."""
    plans = {k: planned_events(models[k].model, settings) for k in METHODS}
    totals = {k: n for k, (_, n) in plans.items()}
    grand, done = sum(totals.values()), 0
    results = []
    for key in METHODS:
        s = plans[key][0]
        yield Progress(done, grand, LABELS[key])
        every = max(1, totals[key] // 50)
        start, result = time.perf_counter(), None
        for i, result in enumerate(run_events(models[key].model, inp, s, make_generator(s.seed, device))):
            if i % every == 0:
                yield Progress(min(grand, done + i), grand, LABELS[key])
        seconds = time.perf_counter() - start
        done += totals[key]
        p = result.probs[0, 0].cpu().numpy()
        records = stage1_records + [checkpoint_record(models[key], "method")]
        results.append(finish(key, output(key, p), p, seconds, records, s))
    yield Progress(grand, grand, "done")
    return results


def output_on_input(x, affine, info, models: dict[str, LoadedCheckpoint], settings: RunSettings,
                    consistency: bool = True, slab: LoadedCheckpoint | None = None, view: SlabView | None = None):
    """``output(key, probs)``: a method's model-grid probabilities as a uint8 mask on the input grid.

    With ``consistency`` the probabilities pass through the method's measurement-aware output
    step first (as in ``lsdebm reconstruct``), with ``slab`` as the learned slab interpolation
    (None: the classical one); with a ``view`` (slabs oblique to the grid, :func:`slab_view`) that step
    runs on the slab grid and its result is resampled onto the input grid, as ``lsdebm reconstruct`` does.
    """
    acq = observed_acquisition(x, affine) if consistency else None
    observed = x != 0

    def output(key: str, probs: np.ndarray) -> np.ndarray:
        c, interpolator = output_step(models[key].model, slab, settings) if acq is not None else (None, None)
        if view is not None and info is not None and c is not None:
            return view.output(probs, info, c, interpolator)
        if info is not None and c is not None:
            return measured_output(probs, info, observed, affine, acq, c, interpolator=interpolator)[0].mask()
        if info is not None:
            on_input = paste_probabilities(probs, info)
        elif c is not None:  # already on the model grid: project there
            on_input, _ = consistent_probabilities(np.asarray(probs, np.float32), observed, affine, acq, x.shape,
                                                   affine, c.projection, c.margin, c.interpolation, interpolator)
        else:
            on_input = np.asarray(probs, np.float32)
        return (on_input >= 0.5).astype(np.uint8)

    return output


def compare_events(x, affine, models: dict[str, LoadedCheckpoint], settings: RunSettings = RunSettings(),
                   reference=None, reference_compat: bool = False, consistency: bool = True,
                   slab="default") -> Job[Comparison]:
    """Run ReconNet, VAE, LEBM and LSD-EBM on ``x``; yield progress, return the :class:`Comparison`.

    Args:
        x: Low-quality 3D mask (nonzero = foreground) in any grid.
        affine: Its 4x4 voxel-to-world affine (spacing from its columns).
        models: From :func:`load_compare_checkpoints` (``reconnet`` optional).
        settings: LSD-EBM sampling settings; its seed (and ``use_mean``) also drive LEBM and VAE.
            ``repeats`` is ignored (one chain per method).
        reference: Optional high-quality mask on the input grid; adds metrics per result.
        reference_compat: Passed to :func:`lsdebm.evaluation.metrics.compute_metrics`.
        consistency: Pass every output through its checkpoint's measurement-aware step when the
            acquisition is known (see the module doc); False shows the raw model outputs.
        slab: The output step's slab interpolation: ``default`` (the bundled SlabNet), ``none`` /
            None (the classical one), a loaded slab checkpoint or a ``.safetensors`` path.

    Raises:
        InputError: If ``x`` is not a non-empty 3D mask, or the reference's shape differs or it has
            NaN, infinite or negative values.
    """
    x = np.asarray(x)
    affine = np.asarray(affine, dtype=np.float64)
    _check_inputs(x, models, reference)
    spacing = affine_spacing(affine)
    grid, model_spacing = _model_frame(models)
    settings = replace(settings, repeats=1)
    view = slab_view(x, affine) if consistency else None  # slabs oblique to the grid: the model sees them on theirs
    seen = (x, affine) if view is None else (view.data, view.affine)
    crop, info = to_model_grid(*seen, grid, model_spacing, next(iter(models.values())).config.model)
    slab = slab_of(slab) if consistency else None
    output = output_on_input(x, affine, info, models, settings, consistency, slab, view)
    slab_records = [checkpoint_record(slab, "slab interpolation")] if slab is not None else []

    tilted = {} if view is None else {"acquisition": {"source": "tilted", "tilt_deg": round(view.slabs.tilt_deg, 2),
                                                      "thickness_mm": round(view.slabs.thickness_mm, 3)}}

    def finish(key: str, mask: np.ndarray, probs, seconds: float, records: list, s: RunSettings | None):
        metrics = compute_metrics(mask, reference, spacing, reference_compat) if reference is not None else None
        used = effective_settings(models[key].model, s) if s is not None else {}
        records = records + (slab_records if key != "input" else [])
        prov = make_provenance(records, s.seed if s is not None else None, used,
                               extra={"method": key, "seconds": round(seconds, 3), "input_shape": list(x.shape),
                                      "cropped_to_model_grid": info is not None, **tilted})
        return MethodResult(key, LABELS[key], mask, probs, metrics, seconds, prov)

    results = [finish("input", (x != 0).astype(np.uint8), None, 0.0, [], None)]
    device = model_device(models[METHODS[0]].model)
    inp = torch.as_tensor(crop, dtype=torch.float32, device=device)[None, None]
    stage1_records = []
    if "reconnet" in models:
        inp, stage1_records, stage1 = _reconnet_stage(models["reconnet"], inp, output, settings, finish)
        results.append(stage1)
    results += yield from _refinement_events(models, inp, settings, device, output, stage1_records, finish)
    return Comparison(results, affine, spacing, None if reference is None else (np.asarray(reference) != 0),
                      None if view is None else view.slabs)


def compare_methods(x, affine, models: dict[str, LoadedCheckpoint], settings: RunSettings = RunSettings(),
                    reference=None, reference_compat: bool = False, consistency: bool = True,
                    slab="default") -> Comparison:
    """Drain :func:`compare_events` and return the :class:`Comparison`."""
    return drain(compare_events(x, affine, models, settings, reference, reference_compat, consistency, slab))


def summary(comparison: Comparison) -> list[dict[str, Any]]:
    """One dict per result: label, foreground voxels, seconds and metrics (if any)."""
    return [{"method": r.label, "voxels": int(r.mask.sum()), "seconds": round(r.seconds, 3), **(r.metrics or {})}
            for r in comparison.results]
