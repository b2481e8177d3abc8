"""``lsdebm view [FILES...]``: open napari with the LSD-EBM explorer docked.

NIfTI files and saved trajectories (``.npz``) open with the plugin's readers (physical scale
from the affine; trajectories decode lazily with their checkpoint); anything else is left to
napari. napari is imported only when the command runs.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from lsdebm.data.nifti import read_volume
from lsdebm.sampling import Trajectory
from lsdebm.errors import CheckpointError, InputError, LsdebmError

PLUGIN = "napari-lsdebm"
WIDGET = "LSD-EBM explorer"
PLUGIN_SUFFIXES = (".nii", ".nii.gz", ".npz")


def has_display() -> bool:
    """True when a window can be opened (macOS/Windows always; Linux needs X11 or Wayland)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``view`` subcommand."""
    parser = subparsers.add_parser("view", help="open napari with the LSD-EBM explorer docked",
                                   description="Open napari with the LSD-EBM explorer docked and open FILES "
                                               "(NIfTI masks, saved trajectories .npz, or anything napari reads).")
    parser.add_argument("files", nargs="*", help="files to open")
    parser.add_argument("--checkpoint", help="bundled checkpoint name or .safetensors file to load at start")
    parser.add_argument("--sample", action="store_true", help="also open the phantom sample pair")
    return parser


def open_viewer(files=(), checkpoint: str | None = None, sample: bool = False, show: bool = True):
    """Create the viewer with the explorer docked, load ``checkpoint``, open ``files``.

    Returns ``(viewer, explorer)``. Errors (missing file, bad checkpoint) are LsdebmErrors.
    """
    missing = [f for f in files if not Path(f).exists()]
    if missing:
        raise InputError(f"{missing[0]}: file not found")
    for f in files:  # validate before a window opens, so a bad file is one line, not a reader traceback
        if str(f).lower().endswith(".npz"):
            Trajectory.load(f)
        elif str(f).lower().endswith((".nii", ".nii.gz")):
            read_volume(f)
    import napari

    viewer = napari.Viewer(show=show)
    try:
        _, explorer = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
        if checkpoint and explorer.checkpoint_panel.load(checkpoint) is None:
            raise CheckpointError(explorer.checkpoint_panel.error.text().removeprefix("Not loaded: "))
        if sample:
            explorer.open_sample()
        for f in files:
            ours = str(f).lower().endswith(PLUGIN_SUFFIXES)
            viewer.open(str(f), plugin=PLUGIN if ours else None)
    except BaseException:
        viewer.close()
        raise
    return viewer, explorer


def run(args) -> int:
    """Open the viewer and block until it is closed."""
    if not has_display():
        raise LsdebmError("no display found ($DISPLAY is not set): `lsdebm view` needs a screen; "
                          "use `lsdebm demo --headless` or run it under xvfb-run")
    import napari

    open_viewer(args.files, args.checkpoint, args.sample)
    napari.run()
    return 0
