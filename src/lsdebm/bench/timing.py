"""Timing and the machine it ran on: the measuring primitives every benchmark section uses."""
from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def _sync(device: torch.device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1, device: torch.device | str = "cpu",
            per: int = 1) -> dict[str, float]:
    """Median/min/max seconds of ``fn()`` (divided by ``per``) over ``repeats`` runs after ``warmup``."""
    import torch

    device = torch.device(device)
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        times.append((time.perf_counter() - t0) / per)
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "repeats": len(times)}


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, Any]:
    """Device, threads, load and library versions: what the numbers were measured on."""
    import torch

    from lsdebm import __version__
    from lsdebm.sampling.kernels import mlp as fast

    env = {"device": str(device), "cpu": cpu_name(), "cpu_count": os.cpu_count(),
           "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": sys.version.split()[0],
           "lsdebm": __version__, "fast_paths": fast.enabled(),
           "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env
