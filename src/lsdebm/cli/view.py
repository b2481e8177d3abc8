"""``lsdebm view [FILES...]``: open napari with the LSD-EBM explorer docked.

NIfTI files and saved trajectories (``.npz``) open with the plugin's readers (physical scale
from the affine; trajectories decode lazily with their checkpoint); anything else is left to
napari. The viewer comes from :func:`napari_lsdebm.launch.open_viewer`, imported only when the
command runs (it checks the files and the checkpoint before a window opens).
"""
from __future__ import annotations

import argparse
import os
import sys

from lsdebm.errors import LsdebmError


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


def run(args) -> int:
    """Open the viewer and block until it is closed."""
    if not has_display():
        raise LsdebmError("no display found ($DISPLAY is not set): `lsdebm view` needs a screen; "
                          "use `lsdebm demo --headless` or run it under xvfb-run")
    from napari_lsdebm import launch

    launch.open_viewer(args.files, args.checkpoint, args.sample)
    launch.run()
    return 0
