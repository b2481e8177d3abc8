"""Memory stays bounded: the decode cache obeys its byte limit, and scrubbing every (t, k) of a
T=20, K=300 trajectory keeps the process's peak RSS within the cache bound plus slack.

The stress test runs in a fresh process so its peak RSS (``ru_maxrss``) is not hidden by the
peak of earlier tests. It scrubs all 6021 distinct frames (21 forward, 20 x 300 reverse) of a
trajectory recorded on the tiny 16^3 grid through the explorer's :class:`TrajectoryVolumes`
with the cache limited to 1 MiB. Measured on the 2-core CI machine: peak RSS grows by ~1.4 MB;
with an unlimited cache the same scrub grows it by ~130 MB (47 MiB of float16 volumes plus
per-entry overhead), so the bound of 1 MiB + 16 MiB slack separates the two clearly.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading

import numpy as np
import pytest

from lsdebm.explore.decode_cache import DecodeCache


def _volume(key, nbytes):
    return np.full(nbytes // 2, hash(key) % 7, np.float16)


def test_decode_cache_obeys_its_limit_under_long_scrubbing():
    cache = DecodeCache(max_bytes=64 * 1024)
    rng = np.random.default_rng(0)
    made = {}

    def make(key, size):
        def build():
            made[key] = made.get(key, 0) + 1
            return _volume(key, size)
        return build

    for step in range(5000):
        key = int(rng.integers(0, 400))
        size = 1024 * int(1 + key % 8)  # 1..8 KiB volumes
        vol = cache.get(key, make(key, size))
        assert vol.nbytes == size
        assert cache.nbytes <= cache.max_bytes
        if step % 500 == 0:  # the accounting matches what is really held
            assert cache.nbytes == sum(v.nbytes for v in cache._items.values())
    assert cache.hits + cache.misses == 5000 and cache.hits > 0
    # A working set that fits is never decoded twice, however long the scrubbing goes on.
    small = DecodeCache(max_bytes=100 * 1024)
    made.clear()
    for _ in range(50):
        for key in range(10):
            small.get(("k", key), make(("k", key), 8 * 1024))
    assert set(made.values()) == {1}
    # A volume larger than the whole cache is returned but not kept.
    big = cache.get("big", make("big", 128 * 1024))
    assert big.nbytes == 128 * 1024 and "big" not in cache and cache.nbytes <= cache.max_bytes


def test_decode_cache_limit_holds_under_concurrent_access():
    cache = DecodeCache(max_bytes=32 * 1024)
    errors = []

    def scrub(seed):
        rng = np.random.default_rng(seed)
        try:
            for _ in range(2000):
                key = int(rng.integers(0, 200))
                cache.get(key, lambda key=key: _volume(key, 2048))
                if cache.nbytes > cache.max_bytes:
                    errors.append(cache.nbytes)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=scrub, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors and cache.nbytes == sum(v.nbytes for v in cache._items.values()) <= cache.max_bytes


_SCRUB = r"""
import json, resource, sys, time
import numpy as np, torch
torch.set_num_threads(1)
from lsdebm.config import get_preset
from lsdebm.explore import TrajectoryVolumes, make_decoder
from lsdebm.nn import build_model
from lsdebm.tasks.reconstruct import make_recorder
from lsdebm.explore.decode_cache import DecodeCache
from lsdebm.methods import RunSettings, run_events

limit, grid = int(sys.argv[1]), int(sys.argv[2])
cfg = get_preset("tiny").replace(**{"model.grid": grid, "model.spacing": 128 / grid, "schedule.T": 20,
                                    "langevin.K": 300})
torch.manual_seed(0)
model = build_model("lsdebm", cfg).eval()
x = torch.zeros((grid,) * 3); x[grid // 4:3 * grid // 4, grid // 3:2 * grid // 3, grid // 5:4 * grid // 5] = 1
settings = RunSettings(steps=20, K=300, step_size=1e-3, seed=0)
recorder = make_recorder(model, settings, every=1)
recorder.consume(run_events(model, x, settings))
traj = recorder.trajectory()
volumes = TrajectoryVolumes(traj, make_decoder(model), (grid,) * 3, cache=DecodeCache(limit), prefetch=False)
for s in range(3):  # warm up the decoder's allocations before the baseline
    volumes[s, 0]
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
checksum = 0.0
for s in range(volumes.shape[0]):
    for k in range(volumes.shape[1]):
        checksum += float(volumes[s, k][grid // 2, grid // 2, grid // 2])
        assert volumes.cache.nbytes <= limit
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"shape": list(volumes.shape), "decoded": volumes.decoded, "growth": peak - base,
                  "cache_bytes": volumes.cache.nbytes, "seconds": time.perf_counter() - t0,
                  "frame_bytes": grid ** 3 * 2}))
"""


@pytest.mark.timeout(900)
def test_scrubbing_every_t_k_keeps_peak_memory_bounded():
    limit = 2 ** 20
    proc = subprocess.run([sys.executable, "-c", _SCRUB, str(limit), "16"], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    n_s, n_k = result["shape"][:2]
    assert (n_s, n_k) == (41, 300)  # 21 forward frames + 20 reverse steps, 300 Langevin iterations each
    assert result["decoded"] == 21 + 20 * 300  # every position really decoded once (forward frames ignore k)
    retained = result["decoded"] * result["frame_bytes"]  # float16 volumes an unbounded cache would hold: 47 MiB
    slack = 16 * 2 ** 20
    assert result["growth"] <= limit + slack < retained / 2, result
