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

from lsdebm.data.nifti import read_volume
from lsdebm.errors import InputError
from lsdebm.explore.demo import DemoCase
from lsdebm.explore.record import RunOutput
from lsdebm.runtime.checkpoint import LoadedCheckpoint, load_checkpoint
from lsdebm.sampling import Trajectory

if TYPE_CHECKING:
    import napari

    from napari_lsdebm.widgets.explorer import ExplorerWidget

PLUGIN = "napari-lsdebm"
EXPLORER = "LSD-EBM explorer"
PLUGIN_SUFFIXES = (".nii", ".nii.gz", ".npz")  # opened with this plugin's readers; the rest by napari


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
    import napari

    viewer = napari.Viewer(show=show)
    try:
        _, explorer = viewer.window.add_plugin_dock_widget(PLUGIN, EXPLORER)
        if ckpt is not None:
            explorer.checkpoint_panel.use(ckpt)
        if sample:
            explorer.open_sample()
        for f in files:
            viewer.open(f, plugin=PLUGIN if f.lower().endswith(PLUGIN_SUFFIXES) else None)
    except BaseException:
        viewer.close()
        raise
    return Launched(viewer, explorer)


def show_demo(ckpt: LoadedCheckpoint, case: DemoCase, output: RunOutput, show: bool = True) -> Launched:
    """Open the explorer on a recorded demo run: the phantom pair (HQ hidden), the result and its trajectory.

    Args:
        ckpt: The checkpoint that recorded ``output``.
        case: The demo phantom pair (:func:`lsdebm.explore.demo.demo_case`).
        output: The recorded run (:func:`lsdebm.explore.demo.record_demo`).
        show: Show the window.
    """
    viewer, explorer = launched = open_viewer(checkpoint=str(ckpt.path), show=show)
    scale = (case.spacing,) * 3
    viewer.add_labels(case.hq, name=f"HQ ({case.name})", scale=scale, metadata={"affine": case.affine}, visible=False)
    lq = viewer.add_labels(case.lq, name=f"LQ thick-slice ({case.name})", scale=scale, metadata={"affine": case.affine})
    explorer.show_result(output, {"ckpt": ckpt, "source": lq, "crop": None, "affine": case.affine})
    return launched


def run() -> None:
    """Hand control to napari's event loop until every window is closed."""
    import napari

    napari.run()
