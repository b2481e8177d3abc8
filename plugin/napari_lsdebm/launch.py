"""What ``lsdebm view`` and ``lsdebm demo`` open: a napari viewer with the LSD-EBM explorer docked.

The command line imports this module only inside those commands, so the core stays free of Qt
and napari. Files and the checkpoint are checked here before any window opens: a missing or
unreadable file is an :class:`lsdebm.errors.InputError` (or the reader's own LsdebmError), a bad
checkpoint a :class:`lsdebm.errors.CheckpointError` -- one line, never a reader traceback and
never text read back from a Qt widget. napari itself is imported only after those checks.
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from lsdebm.data.nifti import read_volume
from lsdebm.errors import InputError
from lsdebm.explore.demo import DemoCase
from lsdebm.explore.record import RunOutput, check_volume_model
from lsdebm.explore.result import result_layer_data
from lsdebm.runtime.checkpoint import LoadedCheckpoint, load_checkpoint
from lsdebm.sampling import Trajectory

if TYPE_CHECKING:
    import napari

    from napari_lsdebm.widgets.explorer import ExplorerWidget

PLUGIN = "napari-lsdebm"
EXPLORER = "LSD-EBM explorer"
PLUGIN_SUFFIXES = (".nii", ".nii.gz", ".npz")  # opened with this plugin's readers; the rest by napari
EXPECTED = "expected a NIfTI mask (.nii, .nii.gz), a saved trajectory (.npz) or an image file napari reads"


class Launched(NamedTuple):
    """The opened viewer and its docked explorer (unpacks as ``viewer, explorer``)."""

    viewer: napari.Viewer
    explorer: ExplorerWidget


def check_files(files: Iterable[str | Path]) -> None:
    """Read every NIfTI and trajectory file once, so a bad one fails before a window opens.

    Raises:
        InputError: A file does not exist.
        LsdebmError: A NIfTI or trajectory file is unreadable (the reader's one-line message).
    """
    files = [str(f) for f in files]
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise InputError(f"{missing[0]}: file not found")
    for f in files:
        if f.lower().endswith(".npz"):
            Trajectory.load(f)
        elif f.lower().endswith((".nii", ".nii.gz")):
            read_volume(f)
        elif not napari_can_read(f):  # napari raised NoAvailableReaderError, a traceback, with the window open
            raise InputError(f"{f}: no napari reader opens this file; {EXPECTED}")


def napari_can_read(path: str) -> bool:
    """Whether an installed napari reader claims ``path``, asked of a plugin manager of its own (npe2 discovers the
    installed manifests in ~0.05 s): napari's global one is left for the viewer to initialise (initialising it here
    registered the plugins' commands twice once a viewer was made in the same process)."""
    from npe2 import PluginManager

    manager = PluginManager()
    manager.discover(include_npe1=False)
    return any(True for _ in manager.iter_compatible_readers([path]))


def open_file(viewer: napari.Viewer, path: str) -> list:
    """``viewer.open`` with this plugin's readers for its suffixes; a reader that fails is one line, not napari's
    multi-line ReaderPluginError traceback (a folder napari claims and then finds no image in)."""
    from napari.errors import MultipleReaderError, NoAvailableReaderError, ReaderPluginError

    try:
        return viewer.open(path, plugin=PLUGIN if path.lower().endswith(PLUGIN_SUFFIXES) else None) or []
    except (ReaderPluginError, NoAvailableReaderError, MultipleReaderError) as exc:
        cause = getattr(exc, "original_error", None) or exc
        reason = " ".join(f"{type(cause).__name__}: {cause}".split())
        raise InputError(f"{path}: napari could not open it ({reason}); {EXPECTED}") from exc


def open_viewer(files: Iterable[str | Path] = (), checkpoint: str | Path | LoadedCheckpoint | None = None,
                sample: bool = False, show: bool = True) -> Launched:
    """Open napari with the explorer docked, ``checkpoint`` loaded and ``files`` opened.

    Args:
        files: NIfTI masks and saved trajectories (``.npz``, decoded lazily with their checkpoint)
            open with this plugin's readers; any other file is left to napari.
        checkpoint: A bundled checkpoint name, a ``.safetensors`` path or a loaded checkpoint.
        sample: Also open the phantom sample pair.
        show: Show the window (False for tests and off-screen use).

    Raises:
        InputError, CheckpointError: Before any window opens (see :func:`check_files`).
    """
    files = [str(f) for f in files]
    check_files(files)
    ckpt = load_checkpoint(checkpoint, "cpu") if isinstance(checkpoint, (str, Path)) else checkpoint
    if ckpt is not None:
        check_volume_model(ckpt)
    import napari

    viewer = napari.Viewer(show=show)
    try:
        _, explorer = viewer.window.add_plugin_dock_widget(PLUGIN, EXPLORER)
        if ckpt is not None:
            explorer.checkpoint_panel.use(ckpt)
        if sample:
            explorer.open_sample()
        opened = []
        for f in sorted(files, key=lambda f: f.lower().endswith(".npz")):  # volumes first: runs go on them
            layers = open_file(viewer, f)
            place_runs(viewer, layers, [lay for lay in opened if lay.metadata.get("affine") is not None])
            opened += layers
        show_final_frame(viewer, explorer, opened, load_checkpoint=ckpt is None)
    except BaseException:
        viewer.close()
        raise
    return Launched(viewer, explorer)


def place_runs(viewer: napari.Viewer, layers: list, volumes: list) -> None:
    """Put the layers of a reopened run (its trajectory and reconstruction, model frame) on the first volume
    opened before it, through the model frame's recorded affine, as the explorer places a run on its input."""
    from napari_lsdebm._ui.placement import frame_centre, model_placement, place
    from napari_lsdebm._ui.trajectory_layer import trajectory_of

    runs = [trajectory_of(lay) for lay in layers if trajectory_of(lay) is not None]
    affine = runs[0].metadata.get("affine") if runs and volumes else None
    if affine is None:
        return
    grid, spacing = runs[0].metadata.get("grid"), runs[0].metadata.get("spacing")
    if grid is None or spacing is None:
        return
    placement = model_placement(volumes[0], np.asarray(affine, float), float(spacing))
    masks = [lay.data for lay in layers if trajectory_of(lay) is None and np.ndim(lay.data) == 3]
    place(viewer, layers, placement, frame_centre(int(grid), float(spacing), masks[0] if masks else None))


def show_final_frame(viewer: napari.Viewer, explorer: ExplorerWidget, layers: list,
                     load_checkpoint: bool = True) -> None:
    """Show the last opened trajectory in 3D at its final frame (last reverse step, last k).

    With ``load_checkpoint`` the checkpoint that decodes it (the one its reader found: the recorded
    path, a bundled checkpoint of that name or sha256, or a file beside it) is loaded in the
    explorer; when none was found the explorer's status says which checkpoint is needed.
    """
    from napari_lsdebm._ui.trajectory_layer import MESSAGE_KEY, real_layer, slider_axes, trajectory_of
    from napari_lsdebm.io.trajectory import CHECKPOINT_KEY

    trajectories = [real_layer(lay) for lay in layers if trajectory_of(lay) is not None]
    if not trajectories:
        return
    layer = trajectories[-1]
    traj, meta = trajectory_of(layer), layer.metadata
    if load_checkpoint and meta.get(CHECKPOINT_KEY):
        explorer.checkpoint_panel.load(meta[CHECKPOINT_KEY])
    elif load_checkpoint:
        wanted = traj.metadata.get("checkpoint_name") or traj.metadata.get("checkpoint_path") or "unknown"
        explorer.status.setText(meta.get(MESSAGE_KEY) or f"This trajectory needs checkpoint {wanted} to decode.")
    if layer.ndim >= 5:  # decoded (t, k, Z, Y, X) frames; latents-only layers stay a 2D (k, latent) image
        explorer.view3d_box.setChecked(True)
        viewer.dims.ndisplay = 3
    axes = slider_axes(viewer, layer)
    if axes is not None:
        viewer.dims.set_current_step(axes[0], traj.n_frames - 1)
        viewer.dims.set_current_step(axes[1], max(traj.n_k - 1, 0))
    viewer.layers.selection.active = layer
    viewer.reset_view()


def show_demo(ckpt: LoadedCheckpoint, case: DemoCase, output: RunOutput, show: bool = True) -> Launched:
    """Open the explorer on a recorded demo run: the sample pair (HQ hidden), the result and its trajectory.

    Args:
        ckpt: The checkpoint that recorded ``output``.
        case: The demo's sample pair (:func:`lsdebm.explore.demo.demo_case`); a real one carries its
            attribution in the layers' names and metadata.
        output: The recorded run (:func:`lsdebm.explore.demo.record_demo`).
        show: Show the window.
    """
    from napari_lsdebm._ui.layers import volume_layer
    from napari_lsdebm._ui.placement import model_placement
    from napari_lsdebm._ui.roles import INPUT, TRUTH, role_metadata

    viewer, explorer = launched = open_viewer(checkpoint=str(ckpt.path), show=show)
    pair = case.pair
    credit = f", {pair.attribution}" if pair.attribution else ""
    layers = {}
    for key, data, role, what in (("hq", pair.truth, TRUTH, "HQ"), ("lq", pair.lq, INPUT, "LQ thick-slice")):
        data, kwargs, _ = volume_layer(data, pair.affine, f"{what} ({case.name}{credit})",
                                       str(pair.path) if pair.path else None)
        kwargs["metadata"].update(role_metadata(role), attribution=pair.attribution)
        layers[key] = viewer.add_labels(data, visible=key == "lq", **kwargs)
    explorer.input_combo.set_layer(layers["lq"])  # Run re-runs on the thick-slice input, not the truth
    ctx = {"ckpt": ckpt, "source": layers["lq"], "crop": case.crop, "affine": case.model_affine,
           "placement": model_placement(layers["lq"], case.model_affine, ckpt.config.model.spacing)}
    if case.crop is not None:
        ctx["pasted"] = result_layer_data(output, case.crop, pair.lq, ckpt.model)
    explorer.show_result(output, ctx)
    return launched


def run() -> None:
    """Hand control to napari's event loop until every window is closed."""
    import napari

    napari.run()
