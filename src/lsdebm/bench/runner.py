"""Benchmarks of the product's speed: each returns plain JSON-able dicts.

Every timing is a median over ``repeats`` runs after warm-up, with the device, thread count
and load average recorded in :func:`environment`. The bare costs (energy MLP forward+backward,
the decoder's convolutions alone, the machine's matmul/conv peak) are measured in the same run
so that overheads can be read off. :func:`run_benchmarks` runs the chosen sections; the memory
section runs in a child process (see :mod:`lsdebm.bench.memory`) so its peak RSS is its own.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsdebm.bench.timing import environment, measure

if TYPE_CHECKING:
    import torch

SECTIONS = ("peak", "energy", "chain", "decode", "scrub", "end_to_end", "training", "memory")


def bench_models(preset: str, device: torch.device, kinds=("lsdebm", "vae", "lebm", "reconnet")) -> dict:
    """``{kind: (model, source)}``: bundled checkpoints of ``preset`` when installed, else fresh models (seed 0).

    The bundled ones load through the one loader (:func:`lsdebm.runtime.loading.load_checkpoints`).
    Timing does not depend on the weights; ``source`` says which was used.
    """
    import dataclasses

    import torch

    from lsdebm.config import get_preset
    from lsdebm.nn import build_model
    from lsdebm.runtime.checkpoint import bundled_checkpoints
    from lsdebm.runtime.loading import load_checkpoints

    cfg, bundled, out = get_preset(preset), bundled_checkpoints(), {}
    found = load_checkpoints({k: str(bundled[f"{k}-{preset}"]) for k in kinds if f"{k}-{preset}" in bundled}, device)
    for kind in kinds:
        name = f"{kind}-{preset}"
        if kind in found:
            loaded = found[kind]
            # the frame offset is stored at training time (the crop, not the network): same architecture
            if dataclasses.replace(loaded.config.model, centroid_offset_mm=cfg.model.centroid_offset_mm) == cfg.model:
                out[kind] = (loaded.model, f"bundled {name}")
                continue
        torch.manual_seed(0)
        out[kind] = (build_model(kind, cfg).to(device).eval(), "fresh (untrained) weights")
    return out


def phantom_input(cfg, device: torch.device) -> torch.Tensor:
    """One thick-slice phantom input (1, 1, *grid) on the model grid."""
    import torch

    from lsdebm.data.phantom_set import generate_pairs

    m = cfg.model
    pair = generate_pairs(1, seed=0, size=m.grid, spacing=m.spacing)[0]
    return torch.as_tensor(pair.lq, dtype=torch.float32, device=device)[None, None]


def bench_peak(device: torch.device, repeats: int, quick: bool) -> dict:
    """Measured peak: a large float32 matmul and a well-shaped 3D convolution (GFLOP/s)."""
    import torch

    n = 512 if quick else 2048
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    mm = measure(lambda: a @ b, repeats, 1, device)
    c, s = (16, 16) if quick else (64, 32)
    x, w = torch.randn(1, c, s, s, s, device=device), torch.randn(c, c, 3, 3, 3, device=device)
    with torch.inference_mode():
        cv = measure(lambda: torch.nn.functional.conv3d(x, w, padding=1), repeats, 1, device)
    return {"matmul": {**mm, "size": n, "gflops": 2 * n ** 3 / mm["median_s"] / 1e9},
            "conv3d": {**cv, "channels": c, "grid": s, "gflops": 2 * c * c * 27 * s ** 3 / cv["median_s"] / 1e9}}


def run_benchmarks(preset: str = "default", device: str = "cpu", repeats: int = 5, quick: bool = False,
                   sections=SECTIONS, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run ``sections`` and return ``{"environment", "preset", "sources", "results", "targets"}``."""

    from lsdebm.bench import cases
    from lsdebm.config import get_preset
    from lsdebm.errors import InputError
    from lsdebm.runtime.device import resolve_device

    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise InputError(f"unknown benchmark section(s) {sorted(unknown)}; expected some of {', '.join(SECTIONS)}")
    dev = resolve_device(device)
    log = log or (lambda msg: None)
    cfg = get_preset(preset)
    models = bench_models(preset, dev)
    x = phantom_input(cfg, dev)
    report: dict[str, Any] = {"environment": environment(dev), "preset": preset, "quick": quick,
                              "sources": {k: src for k, (_, src) in models.items()}, "results": {}}
    plain = {k: m for k, (m, _) in models.items()}
    runners = {
        "peak": lambda: bench_peak(dev, repeats, quick),
        "energy": lambda: cases.bench_energy(plain["lsdebm"], repeats),
        "chain": lambda: cases.bench_chain(plain["lsdebm"], repeats, quick),
        "decode": lambda: cases.bench_decode(plain["lsdebm"], repeats, quick),
        "scrub": lambda: cases.bench_scrub(plain["lsdebm"], repeats),
        "end_to_end": lambda: cases.bench_end_to_end(plain, x, repeats, quick),
        "training": lambda: cases.bench_training(plain, x, repeats, quick),
        "memory": lambda: cases.bench_memory(preset, device, quick),
    }
    for name in SECTIONS:
        if name in sections:
            log(f"benchmark {name} ...")
            t0 = time.perf_counter()
            report["results"][name] = runners[name]()
            report["results"][name]["section_seconds"] = time.perf_counter() - t0
    report["environment"]["load_average_end"] = environment(dev)["load_average"]
    report["targets"] = cases.targets(report["results"])
    return report


def script_main(sections=SECTIONS, argv: list[str] | None = None) -> int:
    """Entry point of the ``benchmarks/*.py`` scripts: run ``sections``, print JSON to stdout."""
    import argparse
    import json

    import torch

    p = argparse.ArgumentParser(description=f"lsdebm benchmarks: {', '.join(sections)} (JSON on stdout)")
    p.add_argument("--preset", default="default")
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="smaller peak/memory measurements (smoke runs)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    report = run_benchmarks(a.preset, a.device, a.repeats, a.quick, sections,
                            log=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(json.dumps(report, indent=1, default=float))
    return 0
