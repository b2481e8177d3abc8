"""A Table-2-like comparison: Digits Fréchet Distance of EBM, LEBM and LSD-EBM samples.

Every method generates ``n`` digits from noise with a fixed seed; each set is scored against
the held-out test split of the digits by :func:`lsdebm.teach.fid.digits_frechet_distance`.
Two reference rows make the numbers readable: real training digits (the floor: what a perfect
generator would get with this n) and the LSD-EBM decoder fed N(0, I) latents (what the learned
energy prior adds on top of the same decoder).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lsdebm.methods import RunSettings, decode
from lsdebm.teach.fid import METRIC_NAME, DigitsClassifier, digits_frechet_distance
from lsdebm.teach.generate import METHOD_LABELS, sample_images


@dataclass
class Row:
    method: str
    dfd: float
    n: int
    seconds: float | None
    note: str = ""


def compare_methods(models: dict[str, torch.nn.Module], classifier: DigitsClassifier, real_test: np.ndarray,
                    real_train: np.ndarray, n: int = 1000, seed: int = 0,
                    log: Callable[[str], None] | None = None) -> list[Row]:
    """Score ``models`` ({"ebm"|"lebm"|"lsdebm": model}) plus the two reference rows."""
    rows = []
    rng = np.random.default_rng(seed)
    floor = real_train[rng.choice(len(real_train), size=min(n, len(real_train)), replace=False)]
    rows.append(Row("Real training digits (floor)", digits_frechet_distance(classifier, floor, real_test),
                    len(floor), None, "held-out test digits vs training digits"))
    for key in ("ebm", "lebm", "lsdebm"):
        if key not in models:
            continue
        if log:
            log(f"generating {n} digits with {METHOD_LABELS[key]} ...")
        start = time.perf_counter()
        images = sample_images(models[key], n, RunSettings(seed=seed))
        rows.append(Row(METHOD_LABELS[key], digits_frechet_distance(classifier, images, real_test), n,
                        time.perf_counter() - start))
    if "lsdebm" in models:
        model = models["lsdebm"]
        g = torch.Generator().manual_seed(seed)
        z = torch.randn((n, model.cfg.model.latent_dim), generator=g)
        images = decode(model, z)[:, 0].numpy()
        rows.append(Row("N(0, I) prior + LSD-EBM decoder (ablation)",
                        digits_frechet_distance(classifier, images, real_test), n, None, "no energy prior"))
    return rows


def format_table(rows: list[Row]) -> str:
    """A Markdown table of the rows (lower DFD is better)."""
    lines = [f"| Method | {METRIC_NAME} ↓ | samples | generation time (s) |", "|---|---:|---:|---:|"]
    for r in rows:
        seconds = "–" if r.seconds is None else f"{r.seconds:.1f}"
        lines.append(f"| {r.method} | {r.dfd:.2f} | {r.n} | {seconds} |")
    return "\n".join(lines)
