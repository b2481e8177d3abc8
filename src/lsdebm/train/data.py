"""Training data: phantom pairs as tensors, and the light augmentation used while training.

The post-processing models (VAE, LEBM, LSD-EBM) learn from high-quality masks only (input =
target, as in the paper); ReconNet learns the mapping low-quality -> high-quality. A data set
is either a phantom-set directory (``lsdebm phantoms``) / any directory with ``hq/`` (and
``lq/``) NIfTI masks, or ``n`` pairs generated in memory from a seed.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from lsdebm.errors import InputError

MASK_SUFFIXES = (".nii.gz", ".nii")
#: ``--workers`` allowed per CPU: a worker draws pairs on one thread, so more than a few per CPU only wait for
#: one and hold memory (``--workers 10000`` forked 10000 processes).
WORKERS_PER_CPU = 4


def check_workers(workers: int) -> None:
    """``--workers`` is 0 (pairs drawn in the training process) to :data:`WORKERS_PER_CPU` per CPU this process
    may use; refused by name otherwise, before any data are drawn."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    limit = WORKERS_PER_CPU * cpus
    if not 0 <= workers <= limit:
        raise InputError(f"--workers {workers}: expected 0 (draw pairs in the training process) to {limit} "
                         f"({WORKERS_PER_CPU} per CPU of the {cpus} here: more only wait for a CPU and hold memory)")


@dataclass
class MaskSet:
    """Stacked masks (uint8, (N, 1, *grid)) plus a JSON-able description of where they came from.

    ``refresh(epoch)``, when set, re-draws part of ``hq``/``lq`` in place before an epoch
    (augmentation on the fly, see :class:`lsdebm.data.mixed_set.MixedPairs`).
    """

    hq: torch.Tensor
    lq: torch.Tensor | None
    description: dict = field(default_factory=dict)
    refresh: Callable[[int], int] | None = None

    def __len__(self) -> int:
        return int(self.hq.shape[0])


def _stack(volumes: list[np.ndarray], grid: int, dims: int, source: str) -> torch.Tensor:
    want = (grid,) * dims
    for i, v in enumerate(volumes):
        if tuple(v.shape) != want:
            raise InputError(f"{source}: case {i} has shape {tuple(v.shape)}; the model grid needs {want} "
                             f"(write the set with --size {grid} or choose a matching --preset)")
    return torch.from_numpy((np.stack(volumes) > 0).astype(np.uint8))[:, None]


def generated_set(n: int, seed: int, grid: int, spacing: float, ranges=None, dims: int = 3) -> MaskSet:
    """``n`` phantom pairs from ``seed`` (3D; 2D models take the middle sagittal slice)."""
    from lsdebm.data.phantom_set import generate_pairs
    from lsdebm.data.thickslice import TRAIN_RANGES

    ranges = TRAIN_RANGES if ranges is None else ranges
    pairs = generate_pairs(n, seed, grid, spacing, ranges)
    hq = [p.hq for p in pairs]
    lq = [p.lq for p in pairs]
    if dims == 2:
        hq, lq = [v[:, :, grid // 2] for v in hq], [v[:, :, grid // 2] for v in lq]
    desc = {"source": "generated", "n": n, "seed": seed, "grid": grid, "spacing_mm": spacing,
            "ranges": _ranges_dict(ranges)}
    return MaskSet(_stack(hq, grid, dims, f"phantoms seed {seed}"),
                   _stack(lq, grid, dims, f"phantoms seed {seed}"), desc)


def is_phantom_set(directory: str | Path) -> bool:
    """True for a phantom-set directory (``hq/`` on the model grid); else real masks are meant."""
    return Path(directory).is_dir() and (Path(directory) / "hq").is_dir()


def mixed_set(source, split: str | None, n: int, real_fraction: float, cfg, seed: int, redraw: float,
              workers: int = 0, cache=None) -> MaskSet:
    """A :class:`MixedPairs` bank of real masks (``source``: folder, manifest or None = bundled) and phantoms.

    Every lumbar and lower thoracic vertebra of ``split`` (T10-L5, complete ones) is used, and every
    mask whose level is unknown (a plain folder of masks with no level in their names).
    """
    from lsdebm.data.frame import centroid_offset_world
    from lsdebm.data.mixed_set import MixedPairs, real_sources
    from lsdebm.data.real import load_real_masks

    m = cfg.model
    if m.spatial_dims != 3:
        raise InputError("real masks train 3D models only; use --phantoms for a 2D preset")
    real = real_sources(load_real_masks(source, split=split, levels=REAL_LEVELS)) if real_fraction > 0 else []
    bank = MixedPairs(real, n, real_fraction, m.grid, m.spacing, m.frame, centroid_offset_world(m, m.grid, m.spacing),
                      seed=seed, redraw=redraw, values=m.input_values, workers=workers, cache=cache)
    desc = {**bank.description(), "real_source": str(source) if source is not None else "bundled (lsdebm.realdata)",
            "split": split}
    return MaskSet(bank.hq, bank.lq, desc, bank.refresh)


#: Levels taken from real data sets for training and validation.
REAL_LEVELS = ("T10", "T11", "T12", "L1", "L2", "L3", "L4", "L5")


def _ranges_dict(ranges) -> dict:
    try:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(ranges).items()}
    except TypeError:
        return {"repr": repr(ranges)}


def _mask_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.name.endswith(MASK_SUFFIXES))


def directory_set(directory: str | Path, grid: int, dims: int = 3, need_lq: bool = False) -> MaskSet:
    """Masks from ``DIR/hq`` (and ``DIR/lq``, matched by file name)."""
    from lsdebm.data.nifti import read_volume

    directory = Path(directory)
    if not (directory / "hq").is_dir():
        raise InputError(f"{directory}: no hq/ folder; expected a phantom set ('lsdebm phantoms --out DIR') "
                         "or a directory with hq/ (and lq/ for reconnet) NIfTI masks")
    hq_files = _mask_files(directory / "hq")
    if not hq_files:
        raise InputError(f"{directory / 'hq'}: no .nii/.nii.gz masks found")
    hq = [np.asarray(read_volume(p).data) for p in hq_files]
    lq = None
    if (directory / "lq").is_dir():
        missing = [p.name for p in hq_files if not (directory / "lq" / p.name).is_file()]
        if missing and need_lq:
            raise InputError(f"{directory / 'lq'}: missing low-quality masks for {missing[:3]} "
                             f"({len(missing)} in all); reconnet needs an lq/ mask per hq/ mask")
        if not missing:
            lq = [np.asarray(read_volume(directory / "lq" / p.name).data) for p in hq_files]
    elif need_lq:
        raise InputError(f"{directory}: no lq/ folder; reconnet trains on (lq, hq) pairs")
    desc = {"source": str(directory.resolve()), "n": len(hq_files)}
    manifest = directory / "manifest.csv"
    if manifest.is_file():
        desc["manifest"] = str(manifest.resolve())
    hq_t = _stack(hq, grid, dims, str(directory / "hq"))
    lq_t = None if lq is None else _stack(lq, grid, dims, str(directory / "lq"))
    return MaskSet(hq_t, lq_t, desc)


def augment(tensors: list[torch.Tensor], generator: torch.Generator, max_shift: int = 2,
            flip_axis: int = -1) -> list[torch.Tensor]:
    """Random left-right flip and small integer shifts, the same per sample for every tensor.

    Args:
        tensors: float tensors (B, 1, *grid) transformed identically (e.g. lq and hq).
        generator: explicit CPU generator.
        max_shift: shifts are drawn from -max_shift..max_shift voxels per axis (circular; the
            phantoms have an empty border).
        flip_axis: the left-right axis (X of the (Z, Y, X) model frame).
    """
    b, dims = tensors[0].shape[0], tensors[0].dim() - 2
    flips = torch.rand(b, generator=generator) < 0.5
    shifts = torch.randint(-max_shift, max_shift + 1, (b, dims), generator=generator)
    out = [t.clone() for t in tensors]
    for i in range(b):
        axes = tuple(range(1, dims + 1))
        sh = tuple(int(s) for s in shifts[i])
        for t in out:
            v = t[i]
            if flips[i]:
                v = v.flip(flip_axis)
            t[i] = torch.roll(v, sh, axes) if max_shift > 0 else v
    return out
