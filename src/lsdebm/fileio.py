"""Atomic file writing shared by every writer in the package."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path
from typing import Callable

from lsdebm.errors import LsdebmError

_UMASK = os.umask(0)
os.umask(_UMASK)

EXISTS = "already exists; pass --overwrite (overwrite=True from Python) to replace it"


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable (best effort: not every platform can open a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    """Move the finished temporary file to ``path``; without ``overwrite`` never replace a file.

    Without ``overwrite`` a hard link is used, which fails if ``path`` appeared meanwhile (no
    check-then-rename race); filesystems without hard links fall back to a checked rename.
    """
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise LsdebmError(f"{path} {EXISTS}") from None
    except OSError:
        if path.exists():
            raise LsdebmError(f"{path} {EXISTS}") from None
        os.replace(tmp, path)
        return
    tmp.unlink()


def check_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """The checks :func:`atomic_write` makes before it writes ``path``, made up front: a command that runs for
    minutes calls this before it starts, so an existing target is refused before the run, not after it.

    Raises:
        LsdebmError: If ``path`` is a directory, exists and ``overwrite`` is False, or lies under a file.
    """
    path = Path(path)
    if path.is_dir():
        raise LsdebmError(f"{path} is a directory; expected a file name to write")
    if path.exists() and not overwrite:
        raise LsdebmError(f"{path} {EXISTS}")
    blocking = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise LsdebmError(f"cannot write {path}: {blocking} is a file, not a directory")
    return path


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether ``a`` and ``b`` are one existing file (links and relative paths included); False if either is missing."""
    try:
        return Path(a).exists() and Path(b).exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_writable(path: str | os.PathLike) -> Path:
    """A temporary file can be made in ``path``'s folder, or in the nearest folder above it that exists (it is
    created on write): a command that runs for minutes calls this before it starts, so a read-only folder or
    ``/proc`` is refused before the run, not after it.

    Raises:
        LsdebmError: ``cannot write <path>: cannot make a file in <folder> (<reason>)``.
    """
    path = Path(path)
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise LsdebmError(f"cannot write {path}: cannot make a file in {folder} ({exc.strerror or exc})") from None
    return path


def atomic_write(
    path: str | os.PathLike, write_fn: Callable[[Path], None], overwrite: bool = False
) -> Path:
    """Write a file atomically: to a temporary file in the same directory, then rename.

    Readers see either the old file or the complete new one, never a partial file; if
    ``write_fn`` raises (including ``KeyboardInterrupt``), neither the destination nor the
    temporary file is left behind. The new file gets the usual permissions (``0o666`` minus
    the umask) or, when replacing, those of the file it replaces.

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
        LsdebmError: If the destination exists and ``overwrite`` is False, is a directory,
            or cannot be written (permissions, disk full, ...; the message names the path).
    """
    path = check_target(path, overwrite)
    try:
        mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o666 & ~_UMASK
        path.parent.mkdir(parents=True, exist_ok=True)
        suffix = "".join(path.suffixes)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise LsdebmError(f"cannot write {path}: {exc.strerror or exc}") from exc
    tmp = Path(tmp_name)
    try:
        write_fn(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        _publish(tmp, path, overwrite)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise LsdebmError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path
