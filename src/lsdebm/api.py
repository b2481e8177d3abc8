"""The package face: a few functions for notebooks and scripts (``import lsdebm``).

Everything here is a thin, documented entry over the modules that do the work, so a researcher
does not have to find them by reading the source (docs/api.md shows them in use)::

    import lsdebm

    models = lsdebm.load_models("lsdebm")                       # LSD-EBM + its ReconNet stage
    result = lsdebm.reconstruct("L3_thick.nii.gz", models=models)
    lsdebm.write_volume("L3_refined.nii.gz", result.mask, result.affine)

    ckpt = lsdebm.load_checkpoint("lsdebm-default")
    rec = lsdebm.record("L3_thick.nii.gz", ckpt)               # every latent of the chain
    rec.trajectory.save("run.npz")
    traj = lsdebm.Trajectory.load("run.npz")
    probs = lsdebm.decode_frame(ckpt, traj, frame=-1)           # the final reverse frame, decoded
    on_file_grid = rec.to_input_grid(probs)                     # back on the input's voxels

    lsdebm.compute_metrics(result.mask, truth, spacing)         # DSC, VS, HD95, ASSD, ...
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lsdebm.data.frame import CropInfo, paste_probabilities
from lsdebm.data.grids import check_grid_holds, check_grid_size, output_grid
from lsdebm.data.labelmaps import Selection
from lsdebm.data.nifti import read_volume
from lsdebm.data.validate import check_affine, one_line
from lsdebm.errors import CheckpointError, InputError
from lsdebm.explore.record import RunOutput, prepare_input, record_run, run_metadata
from lsdebm.methods import RunSettings, decode
from lsdebm.nn.registry import is_refinement
from lsdebm.runtime.checkpoint import LoadedCheckpoint, load_checkpoint
from lsdebm.runtime.loading import Models, load_models
from lsdebm.sampling.trajectory import Trajectory
from lsdebm.tasks.progress import drain
from lsdebm.tasks.reconstruct import ReconstructionResult, reconstruct_volume


def _volume(source, affine) -> tuple[np.ndarray, np.ndarray, str | None]:
    """``(data, affine, name)`` from a NIfTI path, or from an array and its affine."""
    if isinstance(source, (str, Path)):
        if affine is not None:
            raise InputError(f"{source}: a file carries its own affine; pass affine only with an array")
        volume = read_volume(source)
        return np.asarray(volume.data), np.asarray(volume.affine, float), str(source)
    if hasattr(source, "dataobj") and hasattr(source, "affine"):  # a nibabel image
        raise InputError("a nibabel image: pass its file path, or np.asanyarray(img.dataobj) with img.affine")
    if affine is None:
        raise InputError("an array needs its 4x4 voxel-to-world affine (affine=...); e.g. np.diag([sx, sy, sz, 1])")
    return _array(source), check_affine(affine), None


def _array(source) -> np.ndarray:
    """``source`` as a 3D numeric array (a view, never modified); anything else is one InputError."""
    try:
        data = np.asarray(source)
    except (TypeError, ValueError) as exc:
        raise InputError(f"the volume could not be read as an array ({one_line(exc)}); expected a 3D mask or "
                         "label map") from None
    if data.ndim != 3:
        raise InputError(f"the volume has shape {data.shape} ({data.ndim}D); expected a 3D mask or label map "
                         "(squeeze or select axes first)")
    if data.dtype.kind not in "biuf":
        raise InputError(f"the volume holds {data.dtype} values; expected a boolean, integer or real mask or "
                         "label map")
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        raise InputError("the volume contains NaN or infinite values; expected a finite mask or label map")
    return data


def _labels(labels) -> list[int] | None:
    """``labels`` as a list of label ids (one int is one label); anything else is refused by name."""
    if labels is None or isinstance(labels, Selection):
        return labels
    ids = [labels] if np.ndim(labels) == 0 else list(np.ravel(labels))
    if not ids or not all(isinstance(v, (int, np.integer)) or (isinstance(v, (float, np.floating)) and
                                                               float(v).is_integer()) for v in ids):
        raise InputError(f"labels={labels!r}: expected label ids, e.g. 22 or [20, 21, 22]")
    return [int(v) for v in ids]


def _grid(out_grid, data, affine):
    """``out_grid`` as :func:`reconstruct` documents it: 'auto', None or a (3-int shape, 4x4 affine) pair."""
    if isinstance(out_grid, str):
        if out_grid != "auto":
            raise InputError(f"out_grid={out_grid!r}: expected 'auto', None or a (shape, affine) pair")
        return output_grid(np.shape(data), affine)
    if out_grid is None:
        return None
    try:
        shape, grid_affine = out_grid
        sizes = np.asarray(shape, dtype=float)
    except (TypeError, ValueError):
        raise InputError("out_grid: expected a (shape, affine) pair, e.g. ((128, 128, 96), affine)") from None
    if sizes.shape != (3,) or not np.all(np.isfinite(sizes)) or np.any(sizes < 1) or np.any(sizes % 1):
        raise InputError(f"out_grid shape {shape}: expected three positive sizes (whole numbers of voxels)")
    shape = tuple(int(v) for v in sizes)
    check_grid_size(shape, "out_grid")
    return shape, check_affine(grid_affine, "out_grid")


def _settings(settings) -> RunSettings:
    if settings is None:
        return RunSettings()
    if not isinstance(settings, RunSettings):
        raise InputError(f"settings={settings!r:.60}: expected lsdebm.RunSettings(...), e.g. RunSettings(seed=1)")
    return settings


def _metadata(metadata) -> dict[str, Any]:
    """``metadata`` as the JSON a saved trajectory holds: numpy scalars and arrays become numbers and lists and
    paths text; anything else JSON cannot hold is refused by key (it failed later, in ``Trajectory.save``)."""
    import json
    from collections.abc import Mapping

    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise InputError(f"metadata={metadata!r:.60}: expected a dict of JSON values, e.g. {{'subject': 'sub-01'}}")

    def plain(value):
        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()
        return str(value) if isinstance(value, Path) else value

    out = {str(k): plain(v) for k, v in metadata.items()}
    for key, value in out.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            raise InputError(f"metadata[{key!r}] = {value!r:.60} cannot be stored in a trajectory; expected text, "
                             "numbers, booleans, None, or lists and dicts of them") from None
    return out


def _kind(models: Models) -> str:
    return models.method.kind if models.method is not None else "reconnet"


def _checkpoint(checkpoint, what: str = "checkpoint") -> LoadedCheckpoint:
    """A loaded checkpoint, or a bundled name / ``.safetensors`` path loaded now; anything else refused."""
    if isinstance(checkpoint, (str, Path)):
        return load_checkpoint(checkpoint)
    if not isinstance(checkpoint, LoadedCheckpoint):
        raise InputError(f"{what}={checkpoint!r:.60}: expected lsdebm.load_checkpoint(...) or a checkpoint name")
    return checkpoint


def reconstruct(source, affine=None, *, models: Models | None = None, method: str | None = None,
                settings: RunSettings | None = None, labels=None, out_grid="auto",
                with_probabilities: bool = False) -> ReconstructionResult:
    """Refine every vertebra of a mask or label map (a NIfTI path, or an array with its affine).

    ``models`` defaults to :func:`load_models` of ``method`` (the bundled default pipeline when
    None). ``labels`` restricts the structures. ``out_grid`` is where the result is written:
    ``"auto"`` (the default) as ``lsdebm reconstruct`` does, an isotropic grid at the finest
    spacing for an anisotropic (thick-slice) input and the input's own grid otherwise
    (:func:`lsdebm.data.grids.output_grid`); None the input's own grid (on a thick-slice grid the
    result then agrees with every observed slab and adds no through-plane detail); or a
    ``(shape, affine)`` pair. The result holds the label map (``mask``, on ``result.affine``),
    optional probabilities and the provenance.
    """
    data, aff, name = _volume(source, affine)
    given_grid = out_grid is not None and not isinstance(out_grid, str)
    out_grid, labels, settings = _grid(out_grid, data, aff), _labels(labels), _settings(settings)
    if given_grid:  # a grid elsewhere gave an empty mask without a word
        chosen = data != 0 if labels is None or isinstance(labels, Selection) else np.isin(data, labels)
        check_grid_holds(chosen, aff, out_grid, "out_grid", "a grid over the input's field of view, e.g. 'auto'")
    if models is not None and method is not None and method != _kind(models):
        raise InputError(f"method={method!r} but models holds a {_kind(models)} pipeline; pass one of them")
    if models is not None and not isinstance(models, Models):  # models="lsdebm" failed deep in the pipeline
        raise InputError(f"models={models!r:.60}: expected lsdebm.load_models(...); to load by name pass "
                         "method='lsdebm' (or 'reconnet', 'vae', 'lebm')")
    models = models if models is not None else load_models(method)
    return reconstruct_volume(models, data, aff, labels=labels, settings=settings,
                              with_probabilities=with_probabilities, input_name=name, out_grid=out_grid)


@dataclass
class Recording:
    """A recorded run and where its model-grid crop came from.

    Attributes:
        output: The :class:`lsdebm.explore.record.RunOutput`: ``trajectory`` (save it with
            ``.save(path)``, reopen with :meth:`Trajectory.load`), ``probs`` (repeats, *grid),
            ``input`` (the model-grid input) and ``seconds``.
        crop: How the input was cropped into the model frame (None: it was on the model grid).
    """

    output: RunOutput
    crop: CropInfo | None

    @property
    def trajectory(self) -> Trajectory:
        return self.output.trajectory

    def to_input_grid(self, volume: np.ndarray) -> np.ndarray:
        """A model-grid probability volume (e.g. from :func:`decode_frame`) on the input's grid, float32."""
        volume = np.asarray(volume, np.float32)
        if volume.shape != np.shape(self.output.input):
            raise InputError(f"volume of shape {volume.shape}: expected the model grid's "
                             f"{np.shape(self.output.input)} (e.g. from decode_frame)")
        return volume if self.crop is None else paste_probabilities(volume, self.crop)


def record(source, checkpoint: LoadedCheckpoint | str, affine=None, *, settings: RunSettings | None = None,
           stage1: LoadedCheckpoint | str | None = None, label: int | None = None, every: int = 1,
           metadata: dict[str, Any] | None = None) -> Recording:
    """Run ``checkpoint``'s method on one structure and keep every latent of the chain.

    ``checkpoint`` (and ``stage1``) is a :func:`load_checkpoint` result, or a bundled name or
    ``.safetensors`` path loaded on the CPU. The input is cropped into the checkpoint's model frame
    (unless it is already on the model grid); ``stage1`` (a ReconNet checkpoint) runs first, as in
    the default pipeline. A label map of several structures (a spine) needs ``label``: an
    :class:`InputError` lists its labels otherwise. The trajectory's metadata names the checkpoint
    (as the explorer's does), so a saved run reopens decoded in ``lsdebm view``; ``metadata`` adds to it.
    """
    data, aff, name = _volume(source, affine)
    checkpoint, settings = _checkpoint(checkpoint), _settings(settings)
    stage1 = None if stage1 is None else _checkpoint(stage1, "stage1")
    if label is not None:  # label=[1, 2] failed inside numpy; label="1" said label 1 was absent
        ids = _labels(label)
        if len(ids) != 1:
            raise InputError(f"label={label!r}: record runs one structure; expected one label id, e.g. 22")
        label = ids[0]
    metadata = _metadata(metadata)
    m = checkpoint.config.model
    x, crop = prepare_input(data, aff, m.grid, m.spacing, label, m)
    model_affine = crop.crop_affine if crop is not None else aff
    meta = {**run_metadata(checkpoint, settings, stage1, every, input_name=name, affine=model_affine.tolist()),
            **metadata}
    return Recording(drain(record_run(checkpoint, x, settings, stage1, every, meta)), crop)


def decode_frame(checkpoint: LoadedCheckpoint | str, trajectory: Trajectory | str | Path, frame: int = -1, k: int = -1,
                 repeat: int = 0, clean: bool = False) -> np.ndarray:
    """The decoded probability volume (model grid, float32 in [0, 1]) of one trajectory frame.

    ``frame`` counts forward frames first, then reverse steps (negative counts from the end:
    -1 is the final reverse step); ``k`` is the recorded Langevin iteration (-1: the last);
    ``clean`` decodes the predicted clean latent z_t / a_cum[t] instead of the current one.
    ``trajectory`` is a :class:`Trajectory` or the path of a saved run (loaded on every call).
    A trajectory that names its checkpoint (sha256) is decoded only by that checkpoint. A name or
    path is loaded (and verified) on every call: load it once with :func:`load_checkpoint` to
    decode many frames.
    """
    import torch

    checkpoint = _checkpoint(checkpoint)
    if isinstance(trajectory, (str, Path)):  # a saved run, as lsdebm view opens it
        trajectory = Trajectory.load(trajectory)
    if not isinstance(trajectory, Trajectory):
        raise InputError(f"trajectory={trajectory!r:.60}: expected a Trajectory (record(...).trajectory, "
                         "Trajectory.load(path)) or the path of a saved .npz run")
    _check_decoder(checkpoint, trajectory)
    for what, value in (("frame", frame), ("k", k), ("repeat", repeat)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise InputError(f"{what}={value!r}: expected an integer index")
    n = trajectory.n_frames
    s = frame + n if frame < 0 else frame
    if not 0 <= s < n:
        raise InputError(f"frame {frame} is outside the trajectory's {n} frames")
    n_k = max(trajectory.n_k, 1)
    if not -n_k <= k < n_k or not -trajectory.repeats <= repeat < trajectory.repeats:
        raise InputError(f"k={k}, repeat={repeat}: the trajectory records {n_k} Langevin iterations (k) of "
                         f"{trajectory.repeats} chain(s) (repeat); negative values count from the end")
    z = trajectory.latent(s, k, repeat, clean)
    device = next(checkpoint.model.parameters()).device
    probs = decode(checkpoint.model, torch.as_tensor(np.asarray(z)[None], dtype=torch.float32, device=device))
    return probs[0, 0].float().cpu().numpy()


def _check_decoder(checkpoint: LoadedCheckpoint, trajectory: Trajectory) -> None:
    """Refuse a checkpoint without a decoder, or another one than the trajectory names."""
    if not is_refinement(checkpoint.kind):
        raise CheckpointError(f"{checkpoint.path}: a {checkpoint.kind} checkpoint has no decoder; decode with the "
                              "LSD-EBM, VAE or LEBM checkpoint that recorded the trajectory")
    recorded = trajectory.metadata.get("checkpoint_sha256")
    if recorded and recorded != checkpoint.sha256:
        raise CheckpointError(f"the trajectory was recorded with checkpoint {recorded[:12]}…, not "
                              f"{checkpoint.path} ({checkpoint.sha256[:12]}…); its latents only fit that decoder")


__all__ = ["Recording", "decode_frame", "record", "reconstruct"]
