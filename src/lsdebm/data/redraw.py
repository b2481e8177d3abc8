"""Banks of training examples re-drawn epoch by epoch, in this process or in forked worker processes.

A bank holds ``n`` examples; ``refresh(epoch)`` re-draws ``redraw * n`` of them, chosen with a seed that
depends only on (seed, epoch), and each example is drawn from its own (seed, slot, epoch). So a run is
reproducible, DDP ranks agree, and ``workers`` processes drawing side by side give the same bank as one.
With workers the next epoch's examples are drawn in the background while the current epoch trains (a
GPU is otherwise kept waiting for the CPU: a pair takes 0.3-1 s on one core).
:class:`lsdebm.data.mixed_set.MixedPairs` (the model-frame pairs) and
:class:`lsdebm.data.slab_pairs.SlabBank` (SlabNet's 1 mm boxes) are such banks.
"""
from __future__ import annotations

import multiprocessing
import weakref
from typing import Any

import numpy as np
import torch

from lsdebm.errors import InputError


def bank_workers(workers: int) -> int:
    if workers < 0:
        raise InputError(f"workers {workers} must be >= 0 (0 = draw examples in this process)")
    if workers > 1 and "fork" not in multiprocessing.get_all_start_methods():
        raise InputError(f"workers {workers}: drawing examples in worker processes needs the 'fork' start "
                         "method (Linux, macOS); use workers 0 on this platform")
    return int(workers)


class RedrawnBank:
    """What every re-drawn bank shares; a subclass defines :meth:`draw` and :meth:`_store` and sets ``n``,
    ``seed``, ``redraw`` and ``workers`` (checked by :func:`bank_workers`) before drawing anything."""

    n: int
    seed: int
    redraw: float
    workers: int = 0
    _workers_pool = None
    _ahead = None

    def draw(self, index: int, epoch: int) -> Any:
        """The example of bank slot ``index`` drawn for ``epoch``."""
        raise NotImplementedError

    def _store(self, indices, items: list) -> None:
        raise NotImplementedError

    def _chosen(self, epoch: int) -> np.ndarray:
        """The slots re-drawn for ``epoch`` (empty for epoch 0 or no re-draw)."""
        k = int(round(self.redraw * self.n))
        if k == 0 or epoch < 1:
            return np.zeros(0, dtype=np.int64)
        return np.random.default_rng([self.seed, epoch, 11]).choice(self.n, size=k, replace=False)

    def _pool(self):
        """The worker processes, forked once and kept (they read only what the bank draws from)."""
        global _BANK
        if self._workers_pool is None:
            _BANK = self  # what the forked workers inherit (never pickled; the pool keeps no reference to the bank)
            self._workers_pool = multiprocessing.get_context("fork").Pool(self.workers, _worker_init)
            weakref.finalize(self, self._workers_pool.terminate)
        return self._workers_pool

    def _start(self, indices, epoch: int):
        """Begin drawing ``indices`` for ``epoch``: a pending result in the workers, or the examples drawn here."""
        jobs = [(int(i), epoch) for i in indices]
        if self.workers > 1 and len(jobs) > 1:
            return self._pool().starmap_async(_worker_draw, jobs, chunksize=1)
        return [self.draw(i, e) for i, e in jobs]

    def _fill(self, indices, started) -> None:
        self._store(indices, started.get() if hasattr(started, "get") else started)

    def refresh(self, epoch: int) -> int:
        """Re-draw ``redraw * n`` examples for ``epoch`` (>= 1); returns how many.

        With workers, the next epoch's examples are drawn in the background as soon as this one's are
        in (so the training steps of an epoch and the drawing of the next overlap); the examples are
        the same either way, each drawn from its own (seed, slot, epoch).
        """
        chosen = self._chosen(epoch)
        if len(chosen) == 0:
            return 0
        ahead = self._ahead if self._ahead is not None and self._ahead[0] == epoch else None
        self._fill(chosen, ahead[1] if ahead is not None else self._start(chosen, epoch))
        self._ahead = None
        if self.workers > 1:
            self._ahead = (epoch + 1, self._start(self._chosen(epoch + 1), epoch + 1))
        return len(chosen)

    def close(self) -> None:
        """Stop the worker processes (also done when the bank is garbage-collected or Python exits)."""
        if self._workers_pool is not None:
            self._workers_pool.terminate()
            self._workers_pool, self._ahead = None, None

    def __getstate__(self) -> dict:  # a bank travels without its processes
        return {**self.__dict__, "_workers_pool": None, "_ahead": None}


_BANK: RedrawnBank | None = None  # the bank a forked worker draws for (inherited, never pickled)


def _worker_init() -> None:
    torch.set_num_threads(1)


def _worker_draw(index: int, epoch: int) -> Any:
    return _BANK.draw(index, epoch)
