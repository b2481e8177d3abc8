"""Atomic file writing shared by every writer in the package."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from lsdebm.errors import LsdebmError


def atomic_write(
    path: str | os.PathLike, write_fn: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Write a file atomically: to a temporary file in the same directory, then rename.

    Args:
        path: Destination file. Its parent directory is created if missing.
        write_fn: Called with the temporary path; must write the complete file there.
            The temporary name keeps the destination's suffixes (e.g. ``.nii.gz``) so
            writers that infer the format from the name still work.
        overwrite: Replace an existing destination. Without it an existing file is an
            error (the command line exposes this as ``--overwrite``).

    Returns:
        The destination path.

    Raises:
        LsdebmError: If the destination exists and ``overwrite`` is False.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise LsdebmError(f"{path} already exists; pass --overwrite to replace it")
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
