"""Provenance records: what produced an output file, written as a sidecar JSON beside it.

A record names every checkpoint by sha256 (so a result can be traced to exact weights), the
seed and sampling settings, the library/torch/numpy versions, the command line and a UTC
timestamp. ``sidecar_path("out/case.nii.gz")`` is ``out/case.provenance.json``.
"""
from __future__ import annotations

import datetime as _dt
import json
import platform
import shlex
import sys
from pathlib import Path
from typing import Any

from lsdebm import __version__
from lsdebm.fileio import atomic_write

FORMAT = "lsdebm-provenance"
FORMAT_VERSION = 1
_NIFTI_SUFFIXES = (".nii.gz", ".nii")


def versions() -> dict[str, str]:
    """Versions of the library and the packages that determine its numbers."""
    import nibabel
    import numpy
    import scipy
    import torch

    return {"lsdebm": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "scipy": scipy.__version__, "nibabel": nibabel.__version__,
            "python": platform.python_version(), "platform": platform.platform()}


def command_line(argv: list[str] | None = None) -> str:
    """The command as a shell-quoted string (``sys.argv`` by default)."""
    argv = sys.argv if argv is None else argv
    if argv and Path(argv[0]).name in ("lsdebm", "main.py", "__main__.py"):
        argv = ["lsdebm", *argv[1:]]  # the console script or ``python -m lsdebm.cli.main``
    return " ".join(shlex.quote(str(a)) for a in argv)


def checkpoint_record(loaded, role: str) -> dict[str, Any]:
    """Identify a :class:`lsdebm.runtime.checkpoint.LoadedCheckpoint` by name, path and sha256."""
    path = Path(loaded.path) if loaded.path is not None else None
    return {"role": role, "kind": loaded.kind, "name": path.stem if path else None,
            "path": str(path) if path else None, "sha256": loaded.sha256, "preset": loaded.config.preset}


def make_provenance(checkpoints: list[dict[str, Any]], seed: int | None, settings: dict[str, Any],
                    inputs: list[str] | None = None, outputs: list[str] | None = None,
                    extra: dict[str, Any] | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """Build a provenance record.

    Args:
        checkpoints: Records from :func:`checkpoint_record` (one per model used).
        seed: Seed of the sampling generator.
        settings: Sampling settings actually used (after checkpoint defaults were applied).
        inputs, outputs: File names read and written.
        extra: More JSON-serialisable fields (device, rank, timings, ...).
        argv: Command line (``sys.argv`` by default).
    """
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": command_line(argv),
        "checkpoints": list(checkpoints), "seed": seed, "settings": dict(settings),
        "inputs": list(inputs or []), "outputs": list(outputs or []),
        "versions": versions(), **(extra or {}),
    }


def sidecar_path(output: str | Path) -> Path:
    """``dir/name.nii.gz`` -> ``dir/name.provenance.json`` (any other suffix is replaced too)."""
    output = Path(output)
    name = output.name
    for suffix in _NIFTI_SUFFIXES:
        if name.endswith(suffix):
            return output.with_name(name[: -len(suffix)] + ".provenance.json")
    return output.with_name(output.stem + ".provenance.json")


def write_provenance(output: str | Path, record: dict[str, Any], overwrite: bool = False) -> Path:
    """Write ``record`` atomically as the sidecar of ``output``; returns the sidecar path."""
    path = sidecar_path(output)
    text = json.dumps(record, indent=2, default=str) + "\n"
    return atomic_write(path, lambda tmp: tmp.write_text(text), overwrite=overwrite)
