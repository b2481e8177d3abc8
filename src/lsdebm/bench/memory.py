"""Memory benchmark, run as its own process: ``python -m lsdebm.bench.memory --preset default``.

Records a full generation trajectory (Algorithm 3: T reverse steps x K Langevin iterations,
every iteration kept), then decodes ``--frames`` (t, k) positions through a
:class:`DecodeCache` bounded at ``--cache-mb`` -- more frames than fit -- and prints JSON with
the resident set size (RSS) at each stage and its peak. The cache must stay within its bound
whatever T and K are; the RSS shows what the rest (model, trajectory, decode workspace) costs.
"""
from __future__ import annotations

import argparse
import json
import resource
import sys

import numpy as np
import torch


def rss_bytes() -> int:
    """Current resident set size (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return peak_rss_bytes()


def peak_rss_bytes() -> int:
    """Peak RSS of this process image (Linux VmHWM: getrusage's maxrss would include the parent's
    peak from before ``exec``); elsewhere getrusage's ``ru_maxrss``."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def measure_memory(preset: str, device: str, cache_mb: float, frames: int) -> dict:
    from lsdebm.bench.runner import bench_models
    from lsdebm.explore.decode_cache import DecodeCache
    from lsdebm.methods import RunSettings, decode, generate_events, langevin_config, sampling_schedule
    from lsdebm.runtime.device import resolve_device
    from lsdebm.sampling import TrajectoryRecorder

    mb = 2 ** 20
    out = {"rss_start_mb": rss_bytes() / mb}
    model, source = bench_models(preset, resolve_device(device), kinds=("lsdebm",))["lsdebm"]
    schedule, settings = sampling_schedule(model), RunSettings(seed=0)
    K = langevin_config(model, settings).K
    out.update(source=source, T=schedule.T, K=K, rss_model_mb=rss_bytes() / mb)
    recorder = TrajectoryRecorder(K, schedule.a, schedule.a_cum, every=1)
    recorder.consume(generate_events(model, 1, settings))
    traj = recorder.trajectory()
    traj_bytes = sum(getattr(traj, n).nbytes for n in ("forward", "reverse", "energy", "grad_norm"))
    out.update(trajectory_frames=traj.n_frames * traj.n_k, trajectory_mb=traj_bytes / mb,
               rss_trajectory_mb=rss_bytes() / mb)
    cache = DecodeCache(int(cache_mb * mb))
    positions = [(s, k) for s in range(traj.n_frames - 1, -1, -1) for k in range(traj.n_k - 1, -1, -1)]
    rss_max = 0
    for i, (s, k) in enumerate(positions[:frames]):
        z = torch.as_tensor(traj.latent(s, k), device=model.decoder.linear.weight.device)[None]
        cache.get((s, k), lambda z=z: decode(model, z)[0, 0].float().cpu().numpy())
        if i == 0:
            out["rss_after_first_decode_mb"] = rss_bytes() / mb
        rss_max = max(rss_max, rss_bytes())
    vol = np.dtype(np.float16).itemsize * model.cfg.model.grid ** model.cfg.model.spatial_dims
    out.update(frames_decoded=cache.misses, frames_cached=len(cache), volume_mb=vol / mb,
               cache_bytes=cache.nbytes, cache_bound_bytes=cache.max_bytes,
               all_frames_uncached_mb=traj.n_frames * traj.n_k * vol / mb,
               rss_end_mb=rss_bytes() / mb, rss_max_sampled_mb=rss_max / mb, rss_peak_mb=peak_rss_bytes() / mb)
    out["rss_growth_while_scrubbing_mb"] = out["rss_max_sampled_mb"] - out["rss_after_first_decode_mb"]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lsdebm.bench.memory", description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-mb", type=float, default=64.0, help="decode cache bound in MiB (default 64)")
    p.add_argument("--frames", type=int, default=192, help="(t, k) positions to decode (default 192)")
    p.add_argument("--threads", type=int, help="torch CPU threads")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(json.dumps(measure_memory(a.preset, a.device, a.cache_mb, a.frames), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
