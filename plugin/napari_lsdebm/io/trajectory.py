"""Reader and writer contributions for recorded trajectories (``.npz``, no pickles).

Reading never re-runs the model: the latents, energies and gradient norms come from the file,
and the decoder of the checkpoint named in its metadata (path, bundled name, a file of the same
name next to the trajectory, or any bundled checkpoint with the recorded sha256) decodes the
frames lazily. When no such checkpoint is found, the latents are shown as an image and the plots
still work; a notification says which checkpoint is missing.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from lsdebm.errors import InputError
from lsdebm.sampling import Trajectory
from lsdebm.sampling.trajectory import FORMAT
from napari_lsdebm._ui.roles import RESULT, role_metadata
from napari_lsdebm._ui.trajectory_layer import META_KEY, latents_layer_data, trajectory_layer_data

CHECKPOINT_KEY = "lsdebm_checkpoint"


def is_trajectory_file(path: str | Path) -> bool:
    """True for an ``.npz`` that is an lsdebm trajectory or cannot be read at all.

    A corrupt or truncated ``.npz`` is claimed too, so that ``Trajectory.load`` reports what is
    wrong with it in one line instead of napari saying that no reader accepted the file.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return "metadata" in data.files and json.loads(str(data["metadata"])).get("format") == FORMAT
    except Exception:  # not a zip, truncated, bad JSON: ours to explain
        return True


def get_trajectory_reader(path):
    """Reader for a single trajectory ``.npz`` path, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    return read_trajectory if is_trajectory_file(path) else None


def read_trajectory(path):
    """Layers of a saved trajectory: decoded (t, k) volumes and the final reconstruction, or latents only."""
    from lsdebm.explore import TrajectoryVolumes, find_checkpoint, make_decoder
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.runtime.device import resolve_device

    path = Path(path[0] if isinstance(path, list) else path)
    traj = Trajectory.load(path)
    meta = traj.metadata
    name = f"trajectory {meta.get('method', '')} ({path.stem})".replace("  ", " ")
    found = find_checkpoint(meta, near=path)
    if found is None:
        wanted = meta.get("checkpoint_name") or meta.get("checkpoint_path") or "unknown"
        digest = meta.get("checkpoint_sha256")
        named = f"checkpoint {wanted}" + (f" (sha256 {digest[:12]}…)" if digest else "")
        message = (f"{path.name}: {named} was not "
                   "found, so frames cannot be decoded; showing the latents and plots only. Put the checkpoint "
                   "next to the trajectory file or install it to decode.")
        _notify(message)
        return [latents_layer_data(traj, f"{name} latents", message)]
    ckpt = load_checkpoint(found, resolve_device("auto"))
    grid, spacing = ckpt.config.model.grid, ckpt.config.model.spacing
    volumes = TrajectoryVolumes(traj, make_decoder(ckpt.model), (grid,) * 3)
    data, kwargs, kind = trajectory_layer_data(volumes, spacing, name)
    kwargs["metadata"][CHECKPOINT_KEY] = str(found)
    last = traj.n_frames - 1
    probs = volumes.decode(np.stack([traj.latent(last, -1, r) for r in range(traj.repeats)])).mean(0)
    result = ((probs >= 0.5).astype(np.uint8), {"name": f"reconstruction ({path.stem})", "scale": (spacing,) * 3,
                                                  "visible": False,
                                                  "metadata": {"source": str(path), **role_metadata(RESULT)}}, "labels")
    return [result, (data, kwargs, kind)]


def write_trajectory(path: str, data, meta: dict) -> list[str]:
    """Write the trajectory behind a layer (its metadata) as ``.npz``; other layers are refused."""
    traj = meta.get("metadata", {}).get(META_KEY)
    if not isinstance(traj, Trajectory):
        raise InputError(f"layer {meta.get('name')!r} is not an lsdebm trajectory; only layers made by the "
                         "explorer (or opened from a trajectory file) can be saved as .npz")
    if not str(path).endswith(".npz"):
        path = f"{path}.npz"
    traj.save(path, overwrite=True)  # napari's save dialog has already confirmed any overwrite
    return [str(path)]


def _notify(message: str) -> None:
    try:
        from napari.utils.notifications import show_warning
    except ImportError:  # pragma: no cover - napari is always present where readers run
        return
    show_warning(message)
