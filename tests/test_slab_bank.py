"""SlabNet's training bank re-drawn in forked worker processes is the bank drawn in this process, epoch by epoch
(a GPU run of SlabNet waits on these draws: ~1 s per example on one core)."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from lsdebm.data.slab_pairs import SlabBank
from lsdebm.errors import InputError


def _same(a: SlabBank, b: SlabBank) -> bool:
    return all(np.array_equal(getattr(x, f.name), getattr(y, f.name))
               for x, y in zip(a.examples, b.examples) for f in dataclasses.fields(x))


def test_workers_draw_the_same_slab_examples_and_refresh():
    one = SlabBank([], 3, 0.0, seed=4, redraw=2 / 3)
    par = SlabBank([], 3, 0.0, seed=4, redraw=2 / 3, workers=2)
    assert _same(one, par)
    before = [e.truth.copy() for e in one.examples]
    assert par.refresh(1) == one.refresh(1) == 2
    assert _same(one, par) and sum(not np.array_equal(a, e.truth) for a, e in zip(before, one.examples)) >= 1
    assert par._ahead is not None and par._ahead[0] == 2  # epoch 2's examples are drawn meanwhile
    assert par.refresh(2) == one.refresh(2) == 2 and _same(one, par)
    par.close()
    assert par._workers_pool is None
    with pytest.raises(InputError, match="workers -1 must be >= 0"):
        SlabBank([], 1, 0.0, workers=-1)
