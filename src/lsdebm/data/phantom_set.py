"""Sets of high-quality / low-quality phantom pairs, in memory and on disk.

On disk a set is a directory::

    DIR/hq/NAME.nii.gz      high-quality mask (uint8 {0, 1})
    DIR/lq/NAME.nii.gz      simulated thick-slice mask
    DIR/parts/NAME.nii.gz   part labels (see PART_LABELS)
    DIR/manifest.csv        name, level, seed, size, spacing and every simulator parameter

All volumes carry the model-frame affine (spacing included).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.data.phantoms import LEVELS, make_vertebra
from lsdebm.data.thickslice import TRAIN_RANGES, ParamRanges, ThickSliceParams, sample_params, simulate_thick_slice
from lsdebm.data.validate import seed_ok
from lsdebm.errors import InputError
from lsdebm.fileio import atomic_write

MANIFEST = "manifest.csv"
SUBDIRS = ("hq", "lq", "parts")


@dataclass(frozen=True)
class PhantomPair:
    """One training/test case.

    Attributes:
        name: Case name (file stem), e.g. ``case0003_L4``.
        level: Vertebra level "L1".."L5".
        seed: Subject seed passed to :func:`make_vertebra`.
        hq: High-quality mask, uint8 (Z, Y, X).
        lq: Simulated thick-slice mask, uint8, same shape.
        parts: Part labels of the high-quality mask.
        affine: 4x4 voxel-to-world affine.
        sim_params: The :class:`ThickSliceParams` settings as a dict.
    """

    name: str
    level: str
    seed: int
    hq: np.ndarray
    lq: np.ndarray
    parts: np.ndarray
    affine: np.ndarray
    sim_params: dict = field(default_factory=dict)


def iter_pairs(
    n: int, seed: int, size: int = 64, spacing: float = 2.0, ranges: ParamRanges = TRAIN_RANGES
) -> Iterator[PhantomPair]:
    """Yield ``n`` pairs; levels cycle L1..L5; everything is determined by ``seed``."""
    if n < 1:
        raise InputError(f"number of cases must be >= 1; got {n}")
    if not seed_ok(int(seed)):  # numpy's seed sequence takes no negative number (a ValueError from inside)
        raise InputError(f"seed={seed} must be >= 0 and < 2**63")
    for index in range(n):
        level = LEVELS[index % len(LEVELS)]
        subject_seed = int(np.random.default_rng([int(seed), index]).integers(2**31 - 1))
        phantom = make_vertebra(level, subject_seed, size, spacing)
        rng = np.random.default_rng([subject_seed, 1])
        params = sample_params(rng, ranges)
        lq = simulate_thick_slice(phantom.mask, spacing, params, rng)
        yield PhantomPair(
            name=f"case{index:04d}_{level}",
            level=level,
            seed=subject_seed,
            hq=phantom.mask,
            lq=lq,
            parts=phantom.parts,
            affine=phantom.affine,
            sim_params=params.as_dict(),
        )


def generate_pairs(
    n: int, seed: int, size: int = 64, spacing: float = 2.0, ranges: ParamRanges = TRAIN_RANGES
) -> list[PhantomPair]:
    """Generate ``n`` pairs in memory (see :func:`iter_pairs`)."""
    return list(iter_pairs(n, seed, size, spacing, ranges))


def _check_replaceable(manifest: Path) -> None:
    """``--overwrite`` replaces a phantom set, never another manifest.csv (a real-mask manifest, say, in the folder
    given as ``--out`` or ``evaluate --data``), which it would have written over."""
    try:
        with open(manifest, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{manifest}: cannot read it to check it is a phantom set's ({exc}); choose another "
                         "folder") from None
    if header[:2] != ["name", "level"] or "seed" not in header:
        raise InputError(f"{manifest} is not a phantom set's manifest (its columns: {', '.join(header[:4]) or 'none'}"
                         "); --overwrite replaces only a phantom set, choose another folder")


def write_set(
    out_dir,
    n: int,
    seed: int,
    size: int = 64,
    spacing: float = 2.0,
    ranges: ParamRanges = TRAIN_RANGES,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate ``n`` pairs and write them under ``out_dir``.

    Args:
        out_dir: Output directory (created if missing).
        n, seed, size, spacing, ranges: As :func:`iter_pairs`.
        overwrite: Replace existing files.
        progress: Called with ``(done, total)`` after each case.

    Returns:
        The path of the written manifest.
    """
    out_dir = Path(out_dir)
    manifest = out_dir / MANIFEST
    if manifest.exists() and not overwrite:
        raise InputError(f"{manifest} already exists; pass --overwrite to replace it")
    if manifest.exists():
        _check_replaceable(manifest)
    elif not overwrite and any(any((out_dir / sub).glob("*.nii*")) for sub in SUBDIRS):
        raise InputError(f"{out_dir} holds phantom volumes but no {MANIFEST}: an incomplete set (an interrupted "
                         "run?); pass --overwrite to replace it, or choose another folder")
    param_names = [f.name for f in fields(ThickSliceParams)]
    rows, created = [], []
    try:
        for done, pair in enumerate(iter_pairs(n, seed, size, spacing, ranges), start=1):
            for sub, array in zip(SUBDIRS, (pair.hq, pair.lq, pair.parts)):
                path = out_dir / sub / f"{pair.name}.nii.gz"
                if not path.exists():
                    created.append(path)
                write_volume(path, array, pair.affine, overwrite=overwrite)
            rows.append({"name": pair.name, "level": pair.level, "seed": pair.seed, "size": size,
                         "spacing": spacing, **pair.sim_params})
            if progress is not None:
                progress(done, n)
    except BaseException:  # Ctrl-C or an error mid-set: no half-written set is left for a later run to trip over
        for path in created:
            path.unlink(missing_ok=True)
        raise

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["name", "level", "seed", "size", "spacing", *param_names])
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(manifest, write_csv, overwrite=True)


def _parse_params(row: dict) -> dict:
    params = {}
    for f in fields(ThickSliceParams):
        value = row[f.name]
        params[f.name] = value if f.type in ("str", str) else float(value)
    return params


def read_set(directory) -> list[PhantomPair]:
    """Load a set written by :func:`write_set`.

    Raises:
        InputError: If the manifest or a listed volume is missing or unreadable.
    """
    directory = Path(directory)
    manifest = directory / MANIFEST
    if not manifest.is_file():
        raise InputError(f"{manifest}: not found (expected a phantom set written by 'lsdebm phantoms')")
    with open(manifest, newline="") as handle:
        rows = list(csv.DictReader(handle))
    pairs = []
    for row in rows:
        hq, lq, parts = (read_volume(directory / sub / f"{row['name']}.nii.gz") for sub in SUBDIRS)
        pairs.append(
            PhantomPair(
                name=row["name"],
                level=row["level"],
                seed=int(row["seed"]),
                hq=np.asarray(hq.data, dtype=np.uint8),
                lq=np.asarray(lq.data, dtype=np.uint8),
                parts=np.asarray(parts.data, dtype=np.uint8),
                affine=hq.affine,
                sim_params=_parse_params(row),
            )
        )
    return pairs
