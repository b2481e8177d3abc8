"""What ``lsdebm train`` writes (the checkpoint, its CSV log and its training-state sidecar), checked before the run.

A run finds out after its first epoch, when it saves, whether it can write there; so every target is checked
up front: a directory, a path under a file or an unwritable folder is refused before any data are read, and a
log or sidecar already beside a new ``--out`` (another run's, or a file of the user's: ``--data masks.csv
--out masks.safetensors`` would have written the log over the manifest) is replaced only with ``--overwrite``,
and never when it is one of the run's inputs.
"""
from __future__ import annotations

from pathlib import Path

from lsdebm.errors import InputError, LsdebmError
from lsdebm.fileio import check_target, check_writable, same_file
from lsdebm.train.state import sidecar_path


def csv_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".csv") if not out.name.endswith(".safetensors") else \
        out.with_name(out.name[: -len(".safetensors")] + ".csv")


def _same(a: Path, b) -> bool:
    return b is not None and str(b) != "bundled" and same_file(a, b)


def check_output(o) -> None:
    """``--out`` is a new ``.safetensors`` file (or ``--overwrite`` / the ``--resume`` file) in a writable folder,
    its log and sidecar replace nothing they must not, ``--resume`` exists."""
    out = Path(o.out)
    if not out.name.endswith(".safetensors"):
        raise InputError(f"--out {out}: checkpoints are written as .safetensors files")
    continuing = o.resume is not None and _same(out, o.resume)
    for target in (out, csv_path(out), sidecar_path(out)):
        try:
            check_target(target, overwrite=True)
        except LsdebmError as exc:
            said = str(exc)
            raise InputError(f"--out {said}" if said.startswith(str(target)) else f"--out {out}: {said}") from None
    if out.exists() and not o.overwrite and not continuing:
        raise InputError(f"--out {out} already exists; pass --overwrite to replace it or --resume {out} to continue")
    for made in (csv_path(out), sidecar_path(out)):
        if _same(made, o.data) or _same(made, o.resume) or _same(made, getattr(o, "init_from", None)):
            raise InputError(f"--out {out}: its {made.name} would be written over this run's input {made}; "
                             "choose another --out")
        if made.exists() and not o.overwrite and not continuing:
            raise InputError(f"--out {out}: {made} already exists beside it (another run's log or state, or a file "
                             "of yours); pass --overwrite to replace it, or choose another --out")
    try:
        check_writable(out)
    except LsdebmError as exc:
        raise InputError(f"--out {out}: {exc}; expected a writable folder") from None
    if o.resume is not None and not Path(o.resume).is_file():
        raise InputError(f"--resume {o.resume}: checkpoint file not found")
