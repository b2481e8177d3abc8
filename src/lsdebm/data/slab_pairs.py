"""Training examples of the learned slab interpolation, made the way an input reaches it.

One example: a high-quality mask (a real vertebra at 1 mm, or a phantom) is augmented
(:func:`lsdebm.data.augment.random_warp`), degraded by the thick-slice simulator over
:data:`lsdebm.data.mixed_set.WIDE_RANGES`, its acquisition found from the staircase exactly as at
inference (:func:`lsdebm.data.acquisition.find_acquisition`), and the box around the observation
turned into SlabNet's channels (:func:`lsdebm.data.slab_features.slab_features`) beside the
high-quality mask in the same layout (slab axis first). :class:`SlabBank` keeps a bank of them and
re-draws a share every epoch; :func:`random_patch` cuts training patches with flips and an
in-plane transpose (the symmetries of the problem once the slab axis is first).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsdebm.data.acquisition import find_acquisition
from lsdebm.data.augment import AugmentRanges, random_warp
from lsdebm.data.frame import box_affine
from lsdebm.data.mixed_set import WIDE_RANGES, Source, phantom_source
from lsdebm.data.phantoms import LEVELS
from lsdebm.data.real import degrade
from lsdebm.data.redraw import RedrawnBank, bank_workers
from lsdebm.data.slab_features import slab_box, slab_features
from lsdebm.data.thickslice import ParamRanges, sample_params
from lsdebm.errors import InputError

PATCH = (48, 56, 56)
ATTEMPTS = 8


@dataclass(frozen=True)
class SlabExample:
    """SlabNet's channels (float16, ``(C, D, H, W)``, slab axis first) and the truth (uint8, ``(D, H, W)``)."""

    features: np.ndarray
    truth: np.ndarray


def make_example(src: Source, rng: np.random.Generator, ranges: ParamRanges = WIDE_RANGES,
                 augment: AugmentRanges = AugmentRanges()) -> SlabExample:
    """One example from ``src`` (see the module doc); re-drawn when the acquisition cannot be told."""
    for _ in range(ATTEMPTS):
        hq = random_warp(src.mask, src.affine, rng, augment)
        lq = degrade(hq, src.affine, sample_params(rng, ranges), rng)
        acq = find_acquisition(lq, src.affine) if lq.any() else None
        if acq is None:
            continue
        box = slab_box(lq | hq)
        grid = box_affine(src.affine, box)
        features = slab_features(lq[box], acq, grid, grid, acq.axis)
        truth = np.moveaxis(hq[box] != 0, acq.axis, 0)
        return SlabExample(features.astype(np.float16), np.ascontiguousarray(truth, dtype=np.uint8))
    raise InputError(f"{src.name}: no usable thick-slice simulation in {ATTEMPTS} draws")


def random_patch(example: SlabExample, rng: np.random.Generator, size=PATCH) -> tuple[np.ndarray, np.ndarray]:
    """A ``size`` patch (edge-padded when the box is smaller) with random flips and in-plane transpose."""
    feat, truth = example.features, example.truth
    pads = [(0, max(s - n, 0)) for s, n in zip(size, truth.shape)]
    if any(p[1] for p in pads):
        feat = np.pad(feat, [(0, 0)] + pads, mode="edge")
        truth = np.pad(truth, pads, mode="edge")
    start = [int(rng.integers(0, n - s + 1)) for s, n in zip(size, truth.shape)]
    box = tuple(slice(a, a + s) for a, s in zip(start, size))
    f = feat[(slice(None),) + box].astype(np.float32)
    t = truth[box].astype(np.float32)
    if rng.random() < 0.5:  # along the slabs: the position within a slab changes sign
        f, t = f[:, ::-1].copy(), t[::-1]
        f[2] = -f[2]
    for axis in (1, 2):
        if rng.random() < 0.5:
            f, t = np.flip(f, axis + 1), np.flip(t, axis)
    if rng.random() < 0.5:
        f, t = f.transpose(0, 1, 3, 2), t.transpose(0, 2, 1)
    return np.ascontiguousarray(f), np.ascontiguousarray(t)


class SlabBank(RedrawnBank):
    """``n`` examples, ``real_fraction`` of them from ``real`` sources, the rest phantoms of new subjects.

    Seeds depend only on (seed, index, epoch), so a run is reproducible; ``refresh(epoch)``
    re-draws ``redraw * n`` of them, in ``workers`` forked processes when more than one
    (:class:`lsdebm.data.redraw.RedrawnBank`: the same examples either way).
    """

    def __init__(self, real: list[Source], n: int, real_fraction: float, seed: int = 0, redraw: float = 0.05,
                 workers: int = 0):
        if n < 1:
            raise InputError(f"the training bank needs at least one example; got {n}")
        if real_fraction > 0 and not real:
            raise InputError("a real fraction above 0 needs real masks (--data FOLDER, manifest or bundled)")
        self.real, self.n, self.seed, self.redraw = real, int(n), int(seed), float(redraw)
        self.workers = bank_workers(workers)
        self.n_real = int(round(n * real_fraction))
        self.examples: list[SlabExample] = [None] * self.n
        self._fill(range(self.n), self._start(range(self.n), 0))
        if self._chosen(1).size == 0:  # nothing is ever re-drawn: no processes kept
            self.close()

    def draw(self, index: int, epoch: int) -> SlabExample:
        rng = np.random.default_rng([self.seed, index, epoch])
        if index < self.n_real:
            src = self.real[index % len(self.real)]
        else:
            src = phantom_source(LEVELS[index % len(LEVELS)], int(rng.integers(2 ** 31 - 1)))
        return make_example(src, rng)

    def _store(self, indices, examples: list) -> None:
        for i, example in zip(indices, examples):
            self.examples[int(i)] = example

    def batch(self, rng: np.random.Generator, size: int, patch=PATCH) -> tuple[np.ndarray, np.ndarray]:
        """``size`` random patches: features ``(B, C, *patch)`` and truth ``(B, 1, *patch)``."""
        pairs = [random_patch(self.examples[int(rng.integers(self.n))], rng, patch) for _ in range(size)]
        return np.stack([f for f, _ in pairs]), np.stack([t for _, t in pairs])[:, None]

    def description(self) -> dict:
        return {"source": "slab examples", "n": self.n, "real_examples": self.n_real,
                "phantom_examples": self.n - self.n_real, "real_masks": [s.name for s in self.real],
                "redraw_per_epoch": self.redraw, "seed": self.seed, "patch": list(PATCH)}
