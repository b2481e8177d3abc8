"""High-level reconstruction of real volumes, Qt-free; used by ``lsdebm reconstruct`` and the plugin.

The two-stage pipeline of the paper (Sec. 4): an optional ReconNet stage turns the
low-quality mask into a first reconstruction, then a post-processing model (LSD-EBM by
Algorithm 2, or the VAE / LEBM baselines) refines it. For a file in any grid:

1. every chosen label is cropped around its centroid and resampled to the model frame
   (:func:`lsdebm.data.frame.crop_to_model`);
2. the crops are refined in batches through :func:`lsdebm.sampling.run_events`, with
   ``repeats`` independent chains per crop whose probabilities are averaged;
3. the mean probability thresholded at 0.5 is pasted back into the original grid
   (:func:`lsdebm.data.frame.paste_probabilities`), replacing each label in a copy of the input.
"""
from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch

from lsdebm.data.acquisition import Acquisition, observed_acquisition
from lsdebm.data.boxes import BoxedVolume, grown_box, resample
from lsdebm.data.frame import CropInfo, crop_to_model, replace_label
from lsdebm.data.grids import given_grid
from lsdebm.data.label_census import present_labels
from lsdebm.data.labelmaps import Selection, describe, select_structures
from lsdebm.data.slab_projection import measured_output
from lsdebm.data.tilted_slabs import TiltedSlabs, or_tilted
from lsdebm.data.validate import foreground
from lsdebm.errors import InputError, InputWarning
from lsdebm.methods import RunSettings, make_generator, resolve, run, run_events, sampling_schedule
from lsdebm.provenance import make_provenance
from lsdebm.runtime.loading import Models
from lsdebm.sampling import Trajectory, TrajectoryRecorder
from lsdebm.sampling.guidance import build_observation
from lsdebm.tasks.progress import Job, Progress, drain
from lsdebm.tasks.regrid import on_parallel_grid, parallel
from lsdebm.tasks.tilted import on_slab_grid


def set_threads(threads: int | None) -> None:
    """Set torch's CPU thread count (None keeps torch's default)."""
    if threads is None:
        return
    if threads < 1:
        raise InputError(f"--threads {threads} must be >= 1")
    torch.set_num_threads(threads)


def effective_settings(model: torch.nn.Module, s: RunSettings) -> dict[str, Any]:
    """The sampling settings a run really uses once checkpoint defaults are filled in (provenance)."""
    return resolve(model, s).record()


def make_recorder(model: torch.nn.Module, s: RunSettings, every: int = 1,
                  metadata: dict[str, Any] | None = None) -> TrajectoryRecorder:
    """A :class:`TrajectoryRecorder` sized for ``model``'s Langevin chains under settings ``s``."""
    K = resolve(model, s).chain_length or 1
    schedule = sampling_schedule(model)
    return TrajectoryRecorder(int(K), schedule.a, schedule.a_cum, every, metadata)


@dataclass
class Refinement:
    """Model-grid results for N crops: ReconNet masks (if any), mean probabilities, timing."""

    stage1: np.ndarray | None
    probs: np.ndarray
    seconds: float
    trajectory: Trajectory | None = None

    @property
    def masks(self) -> np.ndarray:
        return (self.probs >= 0.5).astype(np.uint8)


def refine(models: Models, crops: np.ndarray, settings: RunSettings = RunSettings(), batch_size: int = 8,
           record_every: int | None = None, metadata: dict[str, Any] | None = None,
           on_event: Callable[[Any], None] | None = None, observations: list | None = None) -> Refinement:
    """:func:`refine_job` drained; ``on_event`` sees every sampler event (raise to cancel)."""
    job = refine_job(models, crops, settings, batch_size, record_every, metadata, observations)
    return drain(job, None if on_event is None else (lambda p: on_event(p.payload)))


def refine_job(models: Models, crops: np.ndarray, settings: RunSettings = RunSettings(), batch_size: int = 8,
               record_every: int | None = None, metadata: dict[str, Any] | None = None,
               observations: list | None = None) -> Job[Refinement]:
    """Run the (ReconNet +) method pipeline on crops of shape (N, *grid).

    ``repeats`` chains per crop are batched and their probabilities averaged. One generator
    seeded with ``settings.seed`` serves all batches, so results depend on (seed, batch_size).
    With ``record_every`` all crops run as one batch and the trajectory of every chain is kept
    (the ``repeat`` axis is crop-major). ``observations`` (one
    :class:`lsdebm.sampling.guidance.SlabObservation` or None per crop) guide LSD-EBM.

    A long job (:mod:`lsdebm.tasks.progress`): one ``Progress(crops done, crops, phase,
    payload=the sampler event)`` per sampler event; returns the :class:`Refinement`.
    """
    crops = np.asarray(crops)
    n, grid = crops.shape[0], crops.shape[1:]
    if batch_size < 1:
        raise InputError(f"batch size {batch_size} must be >= 1")
    if record_every is not None and record_every < 1:
        raise InputError(f"record_every {record_every} must be >= 1 (or None: no trajectory)")
    step = n if record_every else batch_size
    probs = np.empty(crops.shape, np.float32)
    stage1 = np.empty(crops.shape, np.uint8) if models.reconnet is not None else None
    g = make_generator(settings.seed, models.device)
    recorder = None
    start = time.perf_counter()
    for lo in range(0, n, step):
        x = torch.as_tensor(crops[lo:lo + step], dtype=torch.float32, device=models.device)[:, None]
        if models.reconnet is not None:
            first = run(models.reconnet.model, x)
            stage1[lo:lo + step] = (first.probs[:, 0] >= 0.5).cpu().numpy()
            x = (first.probs >= 0.5).float()
        if models.method is None:
            probs[lo:lo + step] = first.probs[:, 0].cpu().numpy()
            continue
        if record_every:
            recorder = make_recorder(models.method.model, settings, record_every, {
                **(metadata or {}), "checkpoint_sha256": models.method.sha256, "method": models.method.kind,
                "crops": n, "repeats": settings.repeats, "settings": effective_settings(models.method.model, settings)})
        result = None
        obs = observations[lo:lo + step] if observations is not None else None
        for result in run_events(models.method.model, x, settings, g, obs):
            if recorder is not None:
                recorder(result)
            yield Progress(lo, n, getattr(result, "phase", "result"), result)
        p = result.probs.reshape(x.shape[0], settings.repeats, *grid).mean(1)
        probs[lo:lo + step] = p.cpu().numpy()
    seconds = time.perf_counter() - start
    return Refinement(stage1, probs, seconds, recorder.trajectory() if recorder is not None else None)


def structure_labels(data: np.ndarray, labels: Sequence[int] | None = None) -> list[int]:
    """Labels to refine: the chosen ones (each must be present) or every nonzero value.

    Raises:
        InputError: If the volume is empty, holds non-integer values, or a label is absent.
    """
    present = present_labels(data)
    if not labels:
        return present
    missing = [int(v) for v in labels if int(v) not in present]
    if missing:
        raise InputError(f"label {missing[0]} not found in the volume; labels present: {present[:20]}")
    return [int(v) for v in labels]


@dataclass
class ReconstructionResult:
    """A refined volume in the input grid, plus everything needed to inspect or reproduce it.

    Attributes:
        mask: The input with every refined label replaced by its reconstruction (on the output grid).
        probabilities: Mean probability pasted back (max over labels), or None.
        labels: The refined label ids.
        crops: Model-grid inputs (N, *grid) and their :class:`CropInfo` in ``crop_infos``.
        refinement: Model-grid outputs (ReconNet masks, probabilities, trajectory, timing).
        provenance: The provenance record (see :mod:`lsdebm.provenance`).
        affine: The affine of the grid ``mask`` lives on (the input's unless ``out_grid`` was given).
    """

    mask: np.ndarray
    probabilities: np.ndarray | None
    labels: list[int]
    crops: np.ndarray
    crop_infos: list[CropInfo]
    refinement: Refinement
    provenance: dict[str, Any] = field(default_factory=dict)
    affine: np.ndarray | None = None

    @property
    def trajectory(self) -> Trajectory | None:
        return self.refinement.trajectory


def resample_labels(data: np.ndarray, affine: np.ndarray, out_shape, out_affine) -> np.ndarray:
    """A label map resampled (nearest neighbour) onto another grid; background outside."""
    if tuple(out_shape) == tuple(np.shape(data)) and np.allclose(out_affine, affine):
        return np.asarray(data)
    return resample(np.asarray(data), tuple(out_shape), out_affine, affine, order=0)


def structure_observations(models: Models, observed: list, affine, infos: list[CropInfo], acq,
                           margin: float) -> list | None:
    """One slab observation per cropped structure from its observed mask (a :class:`BoxedVolume`; None:
    nothing to observe)."""
    if acq is None:
        return None
    return [build_observation(seen, affine, acq, info.crop_affine, models.grid, models.spacing, margin)
            for seen, info in zip(observed, infos)]


def reconstruct_volume(models: Models, data: np.ndarray, affine: np.ndarray,
                       labels: Sequence[int] | Selection | None = None,
                       settings: RunSettings = RunSettings(), with_probabilities: bool = False, batch_size: int = 8,
                       record_every: int | None = None, on_event: Callable[[Any], None] | None = None,
                       input_name: str | None = None, out_grid: tuple | None = None,
                       acquisition: Acquisition | str | None = "auto") -> ReconstructionResult:
    """:func:`reconstruct_job` drained; ``on_event`` sees every sampler event (raise to cancel)."""
    job = reconstruct_job(models, data, affine, labels, settings, with_probabilities, batch_size, record_every,
                          input_name, out_grid, acquisition)
    return drain(job, None if on_event is None else (lambda p: on_event(p.payload)))


def _observed(data: np.ndarray, label: int, box: tuple[slice, ...] | None) -> BoxedVolume:
    """A structure's observed foreground on the input grid (uint8), kept on its box grown by one voxel."""
    if box is None:
        return BoxedVolume.around(foreground(data, label).astype(np.uint8), 1)
    box = grown_box(box, 1, data.shape)
    return BoxedVolume(tuple(data.shape), box, foreground(data[box], label).astype(np.uint8))


def _paste_back(ref: Refinement, infos: list[CropInfo], observed: list, data: np.ndarray, affine, acq, ccfg,
                out_shape: tuple, out_affine: np.ndarray, with_probabilities: bool, interpolator=None):
    """Each refined crop pasted onto the output grid (projected onto its observed slabs): ``(out, probs, notes)``.

    Each structure is written on the box its result covers (which holds every voxel of its label on
    the output grid), so a vertebra of a whole-body map costs what its box costs.
    """
    out = np.array(resample_labels(data, affine, out_shape, out_affine), copy=True)  # one copy, filled in place
    probs = np.zeros(out_shape, np.float32) if with_probabilities else None
    notes = []
    for p, info, seen in zip(ref.probs, infos, observed):
        pasted, note = measured_output(p, info, seen, affine, acq, ccfg, out_shape, out_affine, interpolator)
        notes.append(note)
        replace_label(out[pasted.box], pasted.values >= 0.5, info.label, in_place=True)
        if probs is not None:
            np.maximum(probs[pasted.box], pasted.values, out=probs[pasted.box])
    return out, probs, notes


def _provenance(models: Models, settings: RunSettings, ccfg, input_name: str | None, selection, infos, out_shape,
                out_affine: np.ndarray, acq, guided: bool, notes: list, seconds: float) -> dict[str, Any]:
    """The provenance record of one reconstruction: checkpoints, settings used, labels, grid, guidance, pose."""
    chosen = selection.labels
    method = models.method.model if models.method is not None else None
    settings_used = effective_settings(method, settings) if method is not None else asdict(settings)
    settings_used["consistency"] = asdict(ccfg)
    return make_provenance(models.records(), settings.seed, settings_used, inputs=[input_name] if input_name else [],
                           extra={"method": models.method.kind if models.method else "reconnet",
                                  "reconnet": models.reconnet is not None, "labels": chosen,
                                  "levels": {str(k): v for k, v in selection.levels.items() if k in chosen},
                                  "label_table": selection.table,
                                  "skipped": [{"label": k, "reason": r} for k, r in selection.skipped],
                                  "output_grid": {"shape": list(out_shape),
                                                  "spacing_mm": [round(float(v), 6) for v in
                                                                 np.linalg.norm(out_affine[:3, :3], axis=0)]},
                                  "acquisition": asdict(acq) if acq is not None else None,
                                  "guided": guided, "projection": sorted(set(notes)),
                                  "pose": [{"label": i.label, "frame": i.frame, "tilt_deg": i.tilt_deg}
                                           for i in infos],
                                  "device": str(models.device), "seconds": round(seconds, 3)})


def _slab_use(models: Models, ccfg) -> tuple[bool, bool]:
    """``(guided, looks)``: whether the sampler takes the data term, and whether anything (data term,
    projection or interpolation) looks at the observed slabs under the output settings ``ccfg``."""
    guided = models.method is not None and ccfg.weight > 0 and ccfg.steps > 0
    return guided, guided or ccfg.projection > 0 or ccfg.interpolation > 0


def looks_at_slabs(models: Models, settings: RunSettings) -> bool:
    """Whether a run with ``settings`` looks at the observed slabs; ``--unguided`` does not, and then tilted
    slabs are not looked for either."""
    return _slab_use(models, models.output_step(settings)[0])[1]


def _resolved_acquisition(data, affine, acquisition, wanted: bool):
    """The acquisition as given, or for ``"auto"`` the one found (tilted slabs where no aligned ones are; None
    when the output step does not look at the slabs: then no slab grid is used, tilted slabs given or not)."""
    if not isinstance(acquisition, str):
        return None if isinstance(acquisition, TiltedSlabs) and not wanted else acquisition
    if not wanted:
        return None
    return or_tilted(observed_acquisition(data, affine), data, affine)


def _refined_elsewhere(data, affine, acq, out_grid, selection: Selection, run: dict):
    """Slabs oblique to the input grid: refined on their own slab grid (:mod:`lsdebm.tasks.tilted`); an output
    grid oblique to the slabs: on the input's isotropic grid (:mod:`lsdebm.tasks.regrid`). A job."""
    if isinstance(acq, TiltedSlabs):
        return (yield from on_slab_grid(reconstruct_job, data, affine, acq, out_grid, labels=list(selection.labels),
                                        **run))
    return (yield from on_parallel_grid(reconstruct_job, data, affine, acq, out_grid,
                                        labels=replace(selection, skipped=[]), **run))  # the caller reported those


def reconstruct_job(models: Models, data: np.ndarray, affine: np.ndarray,
                    labels: Sequence[int] | Selection | None = None,
                    settings: RunSettings = RunSettings(), with_probabilities: bool = False, batch_size: int = 8,
                    record_every: int | None = None, input_name: str | None = None, out_grid: tuple | None = None,
                    acquisition: Acquisition | str | None = "auto") -> Job[ReconstructionResult]:
    """Crop, refine and paste back every chosen label of a mask or label map (see module doc).

    A long job (:mod:`lsdebm.tasks.progress`): yields the progress of :func:`refine_job` (crops
    done of the chosen structures, payload the sampler event) and returns the
    :class:`ReconstructionResult`.

    ``out_grid`` = ``(shape, affine)`` writes the result on another grid (an isotropic grid over
    the input's field of view, another image's grid); labels that are not refined are carried
    over by nearest neighbour. The refined probabilities are pasted with linear interpolation and
    thresholded on the output grid itself, never as a coarse model-grid mask.

    ``labels``: the label ids to refine (None: every vertebra, :func:`select_structures`), or a
    :class:`Selection` already made from ``data`` (its labels, reasons and boxes are used as they
    are: the command line selects once, reports, then refines).

    ``acquisition``: the input's thick-slice geometry (:class:`lsdebm.data.acquisition.Acquisition`),
    ``"auto"`` to find it from the spacing or the staircase, or None for none. When known, the
    checkpoint's ``consistency`` settings (with ``settings``' overrides) guide LSD-EBM with the
    data term and project the output probabilities onto the observed slabs; tilted slabs are refined on their
    own slab grid (:mod:`lsdebm.tasks.tilted`).
    """
    data = np.asarray(data)
    selection = labels if isinstance(labels, Selection) else select_structures(data, affine, labels)
    for line in describe(selection) if selection.skipped else ():
        if line.startswith("skipping"):
            warnings.warn(line, InputWarning, stacklevel=2)
    chosen = selection.labels
    out_shape, out_affine = given_grid(data.shape, affine, out_grid)
    start = time.perf_counter()
    ccfg, interpolator = models.output_step(settings)
    guided, looks = _slab_use(models, ccfg)
    acq = _resolved_acquisition(data, affine, acquisition, looks)
    run = {"models": models, "settings": settings, "with_probabilities": with_probabilities,
           "batch_size": batch_size, "record_every": record_every, "input_name": input_name}
    if isinstance(acq, TiltedSlabs) or (acq is not None and not parallel(affine, out_affine)):
        return (yield from _refined_elsewhere(data, affine, acq, out_grid, selection, run))
    cfg = models.any().config.model
    boxes = selection.boxes
    pairs = [crop_to_model(data, affine, label, models.grid, models.spacing, cfg, models.input_values,
                           box=boxes.get(label)) for label in chosen]
    crops = np.stack([c for c, _ in pairs])
    infos = [info for _, info in pairs]
    meta = {"input": input_name, "labels": chosen}
    observed = [_observed(data, info.label, boxes.get(info.label)) for info in infos] if acq is not None \
        else [None] * len(infos)
    obs = structure_observations(models, observed, affine, infos, acq, ccfg.margin) if guided else None
    ref = yield from refine_job(models, crops, settings, batch_size, record_every, meta, obs)
    out, probs, notes = _paste_back(ref, infos, observed, data, affine, acq, ccfg, out_shape, out_affine,
                                    with_probabilities, interpolator)
    seconds = time.perf_counter() - start
    prov = _provenance(models, settings, ccfg, input_name, selection, infos, out_shape, out_affine, acq,
                       bool(guided and obs is not None), notes, seconds)
    ref.seconds = seconds
    return ReconstructionResult(out, probs, chosen, crops, infos, ref, prov, out_affine)


def dist_rank(env: dict | None = None) -> tuple[int, int]:
    """(rank, world_size) from torchrun's ``RANK``/``WORLD_SIZE`` (``(0, 1)`` when unset)."""
    env = os.environ if env is None else env
    try:
        rank, world = int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1))
    except ValueError:
        raise InputError(f"RANK={env.get('RANK')!r} / WORLD_SIZE={env.get('WORLD_SIZE')!r} are not integers") from None
    if world < 1 or not 0 <= rank < world:
        raise InputError(f"RANK={rank} must be in 0..WORLD_SIZE-1 with WORLD_SIZE={world} >= 1")
    return rank, world


def shard(items: Sequence, rank: int, world_size: int) -> list:
    """Round-robin share of ``items`` for ``rank``: every item goes to exactly one rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise InputError(f"rank {rank} must be in 0..{world_size - 1}")
    return list(items[rank::world_size])
