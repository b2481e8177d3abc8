"""Training bank of real masks mixed with phantoms (lsdebm.data.mixed_set); the CLI run is in test_train_real.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsdebm.config import get_preset
from lsdebm.data.frame import centroid_offset_world
from lsdebm.data.mixed_set import MixedPairs, make_pair, real_sources
from lsdebm.data.real import load_real_masks
from lsdebm.errors import InputError

torch.set_num_threads(1)

N, FRACTION, REDRAW, SEED = 3, 2 / 3, 1 / 3, 3  # 2 real + 1 phantom; 1 re-drawn per epoch


@pytest.fixture(scope="module")
def frame():
    m = get_preset("tiny").model
    return m.grid, m.spacing, m.frame, centroid_offset_world(m, m.grid, m.spacing)


@pytest.fixture(scope="module")
def sources():
    return real_sources(load_real_masks(split="train", levels=("L3",))[:2])


@pytest.fixture(scope="module")
def bank(sources, frame):
    return MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=REDRAW)


def test_real_sources_are_padded_isotropic_1mm(sources):
    assert len(sources) == 2 and all(s.kind == "real" for s in sources)
    for s in sources:
        assert np.allclose(np.linalg.norm(s.affine[:3, :3], axis=0), 1.0)
        assert s.mask.dtype == np.uint8 and s.mask.any()
        occupied = np.argwhere(s.mask)
        assert occupied.min() >= 10 and np.all(occupied.max(0) < np.array(s.mask.shape) - 10)  # room to warp


def test_bank_shape_dtype_and_real_share(bank, sources, frame):
    grid = frame[0]
    assert bank.hq.shape == bank.lq.shape == (N, 1, grid, grid, grid)
    assert bank.hq.dtype == bank.lq.dtype == torch.uint8
    assert set(torch.unique(bank.hq).tolist()) <= {0, 1} and set(torch.unique(bank.lq).tolist()) <= {0, 1}
    assert bank.n_real == round(N * FRACTION) == 2
    for i in range(N):
        assert bank.hq[i].sum() > 20 and bank.lq[i].sum() > 0  # a structure in every pair
        assert bank.source(i, 0).kind == ("real" if i < bank.n_real else "phantom")
    assert [bank.source(i, 0).name for i in range(2)] == [sources[0].name, sources[1].name]
    d = bank.description()
    assert (d["source"], d["n"], d["real_pairs"], d["phantom_pairs"]) == ("mixed", N, 2, 1)
    assert d["real_masks"] == [s.name for s in sources]
    # the first pair is the first real mask, drawn with the pair's own seed
    hq, lq = make_pair(sources[0], np.random.default_rng([SEED, 0, 0]), *frame)
    np.testing.assert_array_equal(bank.hq[0, 0].numpy(), hq)
    np.testing.assert_array_equal(bank.lq[0, 0].numpy(), lq)


def test_hq_and_lq_agree_roughly(bank):
    """The LQ mask is a degraded copy of the HQ one in the same crop (not another structure)."""
    for i in range(N):
        hq, lq = bank.hq[i, 0].numpy() > 0, bank.lq[i, 0].numpy() > 0
        dice = 2 * (hq & lq).sum() / (hq.sum() + lq.sum())
        assert dice > 0.5, (i, dice)


def test_same_seed_same_bank_and_refresh_redraws_a_fraction(bank, sources, frame):
    again = MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=REDRAW)
    assert torch.equal(again.hq, bank.hq) and torch.equal(again.lq, bank.lq)
    assert again.refresh(0) == 0 and torch.equal(again.hq, bank.hq)  # epoch 0 is the initial draw
    k = again.refresh(1)
    assert k == round(REDRAW * N) == 1
    changed = [i for i in range(N)
               if not (torch.equal(again.hq[i], bank.hq[i]) and torch.equal(again.lq[i], bank.lq[i]))]
    assert len(changed) == k
    # the re-draw is the pair's own seed for that epoch: reproducible, and a real pair stays real
    i = changed[0]
    hq, lq = make_pair(bank.source(i, 1), np.random.default_rng([SEED, i, 1]), *frame)
    np.testing.assert_array_equal(again.hq[i, 0].numpy(), hq)
    np.testing.assert_array_equal(again.lq[i, 0].numpy(), lq)
    # a later epoch re-draws again
    assert again.refresh(2) == 1


def test_workers_draw_the_same_bank_and_refresh(bank, sources, frame):
    """Pairs drawn by forked worker processes are the ones drawn in this process, epoch by epoch."""
    par = MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=REDRAW, workers=2)
    assert torch.equal(par.hq, bank.hq) and torch.equal(par.lq, bank.lq)
    one = MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=2 / 3)
    par.redraw = 2 / 3
    assert par.refresh(1) == one.refresh(1) == 2
    assert torch.equal(par.hq, one.hq) and torch.equal(par.lq, one.lq)
    assert not torch.equal(par.hq, bank.hq)  # the refresh did draw new pairs
    assert par._ahead is not None and par._ahead[0] == 2  # epoch 2's pairs are being drawn meanwhile
    for epoch in (2, 4):  # the prefetched epoch, then one after a skipped epoch (its prefetch unused)
        assert par.refresh(epoch) == one.refresh(epoch) == 2
        assert torch.equal(par.hq, one.hq) and torch.equal(par.lq, one.lq), epoch
    import pickle
    again = pickle.loads(pickle.dumps(par))  # a bank travels without its processes
    assert again._workers_pool is None and torch.equal(again.hq, par.hq)
    par.close()
    assert par._workers_pool is None and par._ahead is None
    with pytest.raises(InputError, match="workers -1 must be >= 0"):
        MixedPairs(sources, N, FRACTION, *frame, workers=-1)


def test_workers_without_fork_are_refused_by_name(sources, frame, monkeypatch):
    import multiprocessing

    monkeypatch.setattr(multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    with pytest.raises(InputError, match="workers 2: .*'fork' start method"):
        MixedPairs(sources, N, FRACTION, *frame, workers=2)


def test_no_redraw_and_bad_arguments(sources, frame):
    with pytest.raises(InputError, match="needs real masks"):
        MixedPairs([], 2, 0.5, *frame)
    with pytest.raises(InputError, match="must be in"):
        MixedPairs(sources, 2, 1.5, *frame)
    with pytest.raises(InputError, match="must be in"):
        MixedPairs(sources, 2, 0.5, *frame, redraw=-0.1)
    with pytest.raises(InputError, match="at least one pair"):
        MixedPairs(sources, 0, 0.5, *frame)
    only = MixedPairs([], 1, 0.0, *frame, seed=1, redraw=0.0)  # phantoms only, no re-draw
    assert only.n_real == 0 and only.source(0, 0).kind == "phantom"
    before = only.hq.clone()
    assert only.refresh(1) == 0 and torch.equal(only.hq, before)


def test_bank_cache_draws_once_and_only_for_the_same_settings(bank, sources, frame, tmp_path, monkeypatch):
    import lsdebm.data.mixed_set as ms

    first = MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=REDRAW, cache=tmp_path)
    assert not first.from_cache and first.cache_file.is_file() and first.cache_file.parent == tmp_path
    assert torch.equal(first.hq, bank.hq) and torch.equal(first.lq, bank.lq)
    assert first.description()["bank_cache"] == str(first.cache_file)

    def no_drawing(*args, **kwargs):
        raise AssertionError("a cached bank must not be drawn again")

    monkeypatch.setattr(ms, "make_pair", no_drawing)
    again = MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=REDRAW, cache=tmp_path)
    assert again.from_cache and torch.equal(again.hq, bank.hq) and torch.equal(again.lq, bank.lq)
    with pytest.raises(AssertionError, match="must not be drawn"):  # another seed is another bank
        MixedPairs(sources, N, FRACTION, *frame, seed=SEED + 1, redraw=REDRAW, cache=tmp_path)
    first.cache_file.write_bytes(b"not safetensors")
    with pytest.raises(InputError, match="not a readable bank cache.*delete it"):
        MixedPairs(sources, N, FRACTION, *frame, seed=SEED, redraw=REDRAW, cache=tmp_path)
