"""Record one explorer run (Qt-free): model-grid input, the event stream, progress and cancel.

The explorer widget and ``lsdebm demo`` both call :func:`record_run`, a generator over
:func:`lsdebm.sampling.run_events` (Algorithm 2 for LSD-EBM: encode, forward diffusion of
eq. 1, reverse Langevin chain of eqs. 2-4) that feeds a :class:`TrajectoryRecorder`, yields a
:class:`lsdebm.tasks.progress.Progress` per event (the long-job protocol; its ``payload`` is a
:class:`RunStep`) and returns a :class:`RunOutput`. Cancellation is checked between events, so
it takes effect within one Langevin iteration.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsdebm import __version__
from lsdebm.data.acquisition import observed_acquisition
from lsdebm.data.frame import CropInfo, crop_to_model, on_model_grid
from lsdebm.data.validate import foreground, require_one_structure
from lsdebm.errors import CheckpointError, InputError
from lsdebm.methods import RunSettings, method_class, method_for, run, run_events
from lsdebm.nn.registry import LABELS, REFINEMENT_KINDS, is_first_stage, is_refinement
from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints, sha256_of
from lsdebm.sampling import LangevinEvent, Trajectory
from lsdebm.sampling.guidance import build_observation
from lsdebm.tasks.progress import Cancelled, Progress, drain
from lsdebm.tasks.reconstruct import effective_settings, make_recorder

METHODS = {kind: LABELS[kind] for kind in REFINEMENT_KINDS}  # the methods the explorer runs, by label


#: The explorer's name for :class:`lsdebm.tasks.progress.Cancelled` (the same class).
RunCancelled = Cancelled


@dataclass(frozen=True)
class RunStep:
    """The ``payload`` of a run's :class:`Progress`: where the sampler is and the newest latent."""

    t: int = 0
    k: int = 0
    energy: float | None = None
    z: np.ndarray | None = None  # newest latent (batch, latent) in z_t space, on the CPU


@dataclass
class RunOutput:
    """A finished run: trajectory, per-repeat probabilities (R, *grid), the input used, seconds."""

    trajectory: Trajectory
    probs: np.ndarray
    input: np.ndarray
    seconds: float

    @property
    def mask(self) -> np.ndarray:
        """Final reconstruction: mean probability over repeats thresholded at 0.5 (uint8)."""
        return (self.probs.mean(0) >= 0.5).astype(np.uint8)


def make_settings(kind: str, depth: int | None = None, K: int | None = None, step_size: float | None = None,
                  seed: int = 0, repeats: int = 1) -> RunSettings:
    """Explorer settings -> RunSettings. For LEBM ``K`` is the number of posterior Langevin steps."""
    return method_class(kind).settings_from_controls(depth, K, step_size, seed, repeats)


def count_events(model, settings: RunSettings, guided: bool = False) -> int:
    """Number of events ``run_events`` yields (for the progress bar); ``guided``: with observations."""
    method = method_for(model)
    return method.n_events(method.resolve(settings), guided)


def prepare_input(data, affine, grid: int, spacing: float, label: int | None = None,
                  model_cfg=None, what: str = "the input") -> tuple[np.ndarray, CropInfo | None]:
    """A {0, 1} uint8 volume on the model grid, and how it was cropped (None: used as is).

    A volume already on the model grid (:func:`lsdebm.data.frame.on_model_grid`) is only
    binarised (``label`` or nonzero; float images at 0.5); anything else is cropped around the
    centroid and resampled (:func:`lsdebm.data.frame.crop_to_model`). A map of several labels needs
    ``label`` (one trajectory explores one structure; ``what`` names the input in the refusal).
    """
    data = np.asarray(data)
    if data.ndim != 3:
        raise InputError(f"input has shape {data.shape}; the explorer needs a 3D mask or label map")
    require_one_structure(data, label, what, "explore")
    if data.dtype.kind == "f":
        if not np.all(np.isfinite(data)):  # before thresholding, which would hide NaN as background
            foreground(data, label)  # raises the shared one-line NaN/inf error
        data = (data >= 0.5).astype(np.uint8)
    if not on_model_grid(data.shape, affine, grid, spacing):
        return crop_to_model(data, affine, label, grid, spacing, model_cfg)  # the checkpoint's frame
    binary = data != 0 if label is None else data == label
    if not binary.any():
        raise InputError(f"the input has no voxels {'!= 0' if label is None else f'with label {label}'}")
    return binary.astype(np.uint8), None


def check_volume_model(ckpt: LoadedCheckpoint) -> None:
    """The explorer reconstructs 3D volumes: a 2D teaching checkpoint (``lsdebm teach train``) was loaded into it
    without a word (``lsdebm view --checkpoint``, the checkpoint panel's Browse…), and only a Run could fail."""
    dims = ckpt.config.model.spatial_dims
    if dims != 3:
        raise CheckpointError(f"{ckpt.path}: a {dims}D {ckpt.kind} model (a teaching checkpoint); the explorer needs "
                              "a 3D one (lsdebm-default, lebm-default, vae-default, reconnet-default or a 3D "
                              ".safetensors); open 2D ones with `lsdebm teach generate` or the Teaching docks")


def checkpoint_name(ckpt: LoadedCheckpoint) -> str | None:
    """Bundled name of a loaded checkpoint, or None if it was loaded from elsewhere."""
    for name, path in bundled_checkpoints().items():
        if ckpt.path is not None and Path(path).resolve() == Path(ckpt.path).resolve():
            return name
    return None


def run_metadata(ckpt: LoadedCheckpoint, settings: RunSettings, stage1: LoadedCheckpoint | None = None,
                 every: int = 1, **extra: Any) -> dict[str, Any]:
    """What a trajectory file records about its run (enough to find the checkpoint again)."""
    m = ckpt.config.model
    return {"method": ckpt.kind, "preset": ckpt.config.preset, "checkpoint_name": checkpoint_name(ckpt),
            "checkpoint_path": str(ckpt.path) if ckpt.path else None, "checkpoint_sha256": ckpt.sha256,
            "stage1_sha256": stage1.sha256 if stage1 else None, "settings": effective_settings(ckpt.model, settings),
            "grid": m.grid, "spacing": m.spacing, "record_every": every, "library_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"), **extra}


def find_checkpoint(meta: dict[str, Any], near: str | Path | None = None) -> Path | None:
    """The checkpoint a trajectory was recorded with: its path, bundled name, a file next to it,
    or any bundled checkpoint with the same sha256; None if none is found (without a recorded sha256 only the
    named path or bundled name: another bundled model's decoder does not fit the latents)."""
    sha = meta.get("checkpoint_sha256")
    bundled = bundled_checkpoints()
    candidates = [meta.get("checkpoint_path"), bundled.get(meta.get("checkpoint_name") or "")]
    if near is not None and meta.get("checkpoint_path"):
        candidates.append(Path(near).parent / Path(meta["checkpoint_path"]).name)
    if sha is not None:
        candidates += list(bundled.values())
    seen = set()
    for cand in candidates:
        if not cand or not Path(cand).is_file() or Path(cand).resolve() in seen:
            continue
        seen.add(Path(cand).resolve())
        if sha is None or sha256_of(Path(cand)) == sha:
            return Path(cand)
    return None


def observe(ckpt: LoadedCheckpoint, data, affine, crop: CropInfo | None, label: int | None = None,
            settings: RunSettings = RunSettings()) -> list | None:
    """The slab observation that guides a run on ``data`` (None: acquisition unknown or guidance off)."""
    c = method_for(ckpt.model).resolve(settings).consistency  # None: the method takes no guidance
    if c is None or c.weight <= 0 or c.steps <= 0:
        return None
    acq = observed_acquisition(np.asarray(data), affine)
    m = ckpt.config.model
    crop_affine = crop.crop_affine if crop is not None else affine
    return [build_observation(foreground(np.asarray(data), label), affine, acq, crop_affine, m.grid, m.spacing,
                              c.margin)]


def record_run(ckpt: LoadedCheckpoint, x: np.ndarray, settings: RunSettings = RunSettings(),
               stage1: LoadedCheckpoint | None = None, every: int = 1, metadata: dict | None = None,
               cancel: threading.Event | None = None,
               observations: list | None = None) -> Generator[Progress, None, RunOutput]:
    """Run ``ckpt``'s method on the model-grid volume ``x``, yielding progress, returning the output.

    ``observations`` (see :func:`observe`) make LSD-EBM measurement-aware; the guided iterations
    are recorded in the trajectory (``guided``, ``guided_energy``) and plotted after the chain.

    Each :class:`Progress` counts events (``stage`` = the sampler phase, ``payload`` a
    :class:`RunStep`). Cancel by closing the generator, or set ``cancel`` (checked before every event).

    Raises:
        Cancelled: when ``cancel`` is set.
        CheckpointError: for a 2D, ReconNet-only or wrong stage-1 checkpoint.
    """
    import torch

    model = ckpt.model
    if not is_refinement(model.kind):
        raise CheckpointError(f"{ckpt.path}: a {model.kind} checkpoint cannot be explored; load an LSD-EBM, "
                              "VAE or LEBM checkpoint (ReconNet is the optional first stage)")
    if ckpt.config.model.spatial_dims != 3:
        raise CheckpointError(f"{ckpt.path}: 2D checkpoints are for the teaching view; the explorer needs 3D")
    if stage1 is not None and not is_first_stage(stage1.kind):
        raise CheckpointError(f"{stage1.path}: the first stage must be a ReconNet checkpoint, not {stage1.kind}")
    start = time.perf_counter()
    total = count_events(model, settings, observations is not None) + (stage1 is not None)
    done = 0
    x = torch.as_tensor(np.asarray(x, dtype=np.float32))
    if stage1 is not None:
        device = next(stage1.model.parameters()).device
        x = (run(stage1.model, x.to(device)).probs >= 0.5).float()[0, 0].cpu()
        done += 1
        yield Progress(done, total, "reconnet", RunStep())
    recorder = make_recorder(model, settings, every, metadata)
    for ev in run_events(model, x, settings, observations=observations):
        if cancel is not None and cancel.is_set():
            raise Cancelled("run cancelled")
        recorder(ev)
        done += 1
        yield _progress(ev, done, total, recorder.a)
    probs = recorder.result.probs[:, 0].float().cpu().numpy()
    return RunOutput(recorder.trajectory(), probs, x.numpy().astype(np.uint8), time.perf_counter() - start)


def _progress(ev, done: int, total: int, a: np.ndarray) -> Progress:
    """Progress for one event; its latent on the CPU in z_t space (reverse y divided by a_{t+1})."""
    phase, t, k = getattr(ev, "phase", "result"), getattr(ev, "t", 0), getattr(ev, "k", 0)
    energy = getattr(ev, "energy", None)
    z = getattr(ev, "z", None)
    if z is not None:
        z = z.detach().float().cpu().numpy()
        if phase == "reverse" and isinstance(ev, LangevinEvent):
            z = z / float(a[t + 1])
    return Progress(done, total, phase, RunStep(t, k, None if energy is None else float(energy.float().mean()), z))


__all__ = ["Progress", "RunCancelled", "RunOutput", "RunStep", "count_events", "drain", "find_checkpoint",
           "make_settings", "prepare_input", "record_run", "run_metadata"]
