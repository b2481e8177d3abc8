"""A training bank's first draw kept on disk, so that runs side by side draw it once.

The four bundled models train on the same 400-pair bank (same data seed, frame and simulator
ranges). Drawn by each run it cost ~2.5 minutes of a 9-minute GPU loan four times over (a pair
is ~0.3 s of one CPU core). ``lsdebm train --bank-cache DIR`` keeps the first draw (epoch 0)
as ``DIR/bank-<key>.safetensors``; ``key`` hashes everything the pairs depend on (seed, size,
real share, the real masks' names and contents, the frame and simulator settings, the library
version), so a cached bank is only ever reused where drawing it again would give the same
pairs. Safetensors only: nothing is unpickled.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lsdebm.errors import InputError
from lsdebm.fileio import atomic_write


def bank_key(bank) -> str:
    """A hex digest of everything bank ``bank``'s first draw depends on."""
    from lsdebm import __version__

    h = hashlib.sha256()
    grid, spacing, frame, offset, ranges, augment, values = bank.frame_args
    h.update(json.dumps({"version": __version__, "seed": bank.seed, "n": bank.n, "n_real": bank.n_real,
                         "grid": grid, "spacing": spacing, "frame": frame, "offset": [float(v) for v in offset],
                         "ranges": repr(ranges), "augment": repr(augment), "values": values},
                        sort_keys=True).encode())
    for src in bank.real:
        h.update(src.name.encode())
        h.update(src.mask.tobytes())
        h.update(src.affine.astype("float64").tobytes())
    return h.hexdigest()[:24]


def cache_path(directory: str | Path, bank) -> Path:
    return Path(directory) / f"bank-{bank_key(bank)}.safetensors"


def load_bank(path: Path, shape: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The cached (hq, lq) of ``shape``, or None when there is no such file."""
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), "pt") as f:
            hq, lq = f.get_tensor("hq"), f.get_tensor("lq")
    except Exception as exc:  # a truncated or foreign file: named, never a deep traceback
        raise InputError(f"{path}: not a readable bank cache ({exc}); delete it to draw the bank again") from None
    if tuple(hq.shape) != shape or tuple(lq.shape) != shape:
        raise InputError(f"{path}: cached bank of shape {tuple(hq.shape)}, expected {shape}; delete it to draw "
                         "the bank again")
    return hq, lq


def save_bank(path: Path, hq: torch.Tensor, lq: torch.Tensor) -> None:
    """Write the bank atomically (a run side by side reads the complete file or none)."""
    atomic_write(path, lambda tmp: save_file({"hq": hq.contiguous(), "lq": lq.contiguous()}, str(tmp)),
                 overwrite=True)
