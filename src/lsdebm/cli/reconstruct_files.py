"""The files ``lsdebm reconstruct`` reads and writes: output names, the checks made before anything runs, and
writing one input's outputs as a whole (all of them, or none).

Every target is checked before a model is loaded: an existing file (without ``--overwrite``), a target under a
file, and a target that is one of the inputs or the ``--like`` image, which ``--overwrite`` does not make
writable either (``-o in/ --overwrite`` replaced every input by its reconstruction). If writing one of an
input's files fails (an unwritable ``--mesh`` or ``--trajectory`` path, a full disk, Ctrl-C), the files
already written for that input are removed, so no mask is left without its mesh or provenance sidecar.
"""
from __future__ import annotations

import contextlib
from pathlib import Path

from lsdebm.errors import InputError, LsdebmError
from lsdebm.fileio import check_target, same_file
from lsdebm.review.meshfile import check_mesh_path

NIFTI = (".nii.gz", ".nii")


def stem(path: Path) -> str:
    """``path``'s name without its NIfTI suffix (``cc.nii.gz`` -> ``cc``)."""
    name = path.name
    for suffix in NIFTI:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def plan_outputs(inputs: list[Path], out: Path, as_dir: bool = False) -> list[Path]:
    """Output file per input: OUT itself for one input (unless OUT is a directory, or ``as_dir``: it was
    written with a trailing slash, ``-o out/``), else OUT/<name>."""
    for path in inputs:
        if not path.name.endswith(NIFTI):
            raise InputError(f"{path}: not a NIfTI file name (expected .nii or .nii.gz)")
    if len(inputs) == 1 and not out.is_dir() and not as_dir:
        if not out.name.endswith(NIFTI):
            raise InputError(f"{out}: output name must end with .nii or .nii.gz (or be an existing directory)")
        return [out]
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: several inputs need an output directory, but this is a file")
    if not out.exists() and out.name.endswith(NIFTI) and not as_dir:  # a file name: was one input meant?
        raise InputError(f"{out}: {len(inputs)} inputs need an output directory, but this is a NIfTI file name; "
                         f"give a directory (-o {out.parent / stem(out)}/)")
    stems = [stem(p) for p in inputs]  # cc.nii and cc.nii.gz would share cc.provenance.json
    dupes = sorted({n for n in stems if stems.count(n) > 1})
    if dupes:
        same = [str(p) for p in inputs if stem(p) == dupes[0]]
        raise InputError(f"several inputs are named {dupes[0]} ({', '.join(same)}); their outputs would collide "
                         f"in {out}")
    return [out / p.name for p in inputs]


def trajectory_path(arg: str | None, n_inputs: int, input_path: Path) -> Path | None:
    """Where ``--trajectory`` puts ``input_path``'s trajectory (None: not asked for)."""
    if arg is None:
        return None
    path = Path(arg)
    if n_inputs == 1 and not path.is_dir():
        return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")
    return path / f"{stem(input_path)}.trajectory.npz"


def mesh_path(arg: str | None, n_inputs: int, input_path: Path) -> Path | None:
    """Where ``--mesh`` puts ``input_path``'s surface (None: not asked for)."""
    if arg is None:
        return None
    path = Path(arg)
    if n_inputs == 1 and not path.is_dir():
        return check_mesh_path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path}: several inputs need a --mesh directory, but this is a file")
    return path / f"{stem(input_path)}.stl"


def probs_path(out: Path) -> Path:
    """``--save-probs``'s file next to ``out``."""
    return out.with_name(stem(out) + "_probs.nii.gz")


def check_targets(targets: list[Path], overwrite: bool, protected: list[Path] = ()) -> None:
    """One-line errors, before anything runs, for targets that cannot or must not be written: one of the
    ``protected`` files (the inputs, the ``--like`` image; also with ``--overwrite``), an existing file without
    ``overwrite``, a directory, or a path under a file."""
    for target in targets:
        if any(same_file(target, p) for p in protected):
            raise InputError(f"{target}: this run reads that file (an input or the --like image); writing there "
                             "would replace it (--overwrite replaces outputs, never inputs); choose another -o, "
                             "--mesh or --trajectory")
        if target.exists() and not target.is_dir() and not overwrite:
            raise InputError(f"{target} already exists; pass --overwrite to replace it")
        try:
            check_target(target, overwrite=True)
        except LsdebmError as exc:
            raise InputError(str(exc)) from None


@contextlib.contextmanager
def all_or_none():
    """Collect the paths written inside; if anything raises (including Ctrl-C), remove them and re-raise.

    Yields the list to append each written path to.
    """
    written: list[Path] = []
    try:
        yield written
    except BaseException:
        for path in written:
            with contextlib.suppress(OSError):
                Path(path).unlink()
        raise
