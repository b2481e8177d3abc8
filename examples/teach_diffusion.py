"""Teach how diffusion + an energy-based prior generate: digits emerging from noise (Algorithm 3).

Uses the bundled 2-D teaching checkpoints (16x16 digits): LSD-EBM starts from N(0, I) at the
last diffusion step t = T-1 and runs the reverse chain, K Langevin iterations per step; LEBM
runs Langevin on its latent prior once. Prints, per diffusion step t, how far the samples are
from their final images and the energy the sampler saw at the first and last iteration k (with
its noise term Langevin samples the energy's distribution, so the energy need not fall step
by step), and writes a PNG strip of the frames::

    python examples/teach_diffusion.py --out outputs/teach.png        # a few seconds on CPU
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from lsdebm import RunSettings
from lsdebm.teach.checkpoints import load_teach
from lsdebm.teach.generate import record_generation


def strip(images: np.ndarray) -> np.ndarray:
    """(n_t, n, H, W) -> one grey image: a row per sample, a column per diffusion step (noise on the left)."""
    n_t, n, h, w = images.shape
    out = np.ones((n * (h + 1), n_t * (w + 1)), np.float32)
    for i in range(n_t):
        for j in range(n):
            out[j * (h + 1):j * (h + 1) + h, i * (w + 1):i * (w + 1) + w] = images[n_t - 1 - i, j]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=6, help="samples (default 6)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("outputs/teach.png"), help="PNG strip of the LSD-EBM frames")
    args = p.parse_args(argv)

    for name in ("lsdebm-digits16", "lebm-digits16"):
        model = load_teach(name).model
        frames = record_generation(model, args.n, RunSettings(seed=args.seed))
        final = frames.samples
        print(f"{name}: {frames.images.shape[0]} diffusion step(s), {frames.images.shape[1]} recorded iterations k")
        print(f"{'t':>4} {'mean |x_t - x_final|':>20} {'energy k=0':>11} {'energy k=last':>13}")
        for i in range(frames.images.shape[0] - 1, -1, -1):
            gap = float(np.abs(frames.images[i, -1] - final).mean())
            e0, e1 = (float(frames.energy[i, j].mean()) for j in (0, -1))
            print(f"{int(frames.t_values[i]):>4} {gap:20.3f} {e0:11.3f} {e1:13.3f}")
        if name.startswith("lsdebm"):
            import matplotlib.pyplot as plt

            args.out.parent.mkdir(parents=True, exist_ok=True)
            plt.imsave(args.out, strip(frames.images[:, -1]), cmap="gray", vmin=0, vmax=1)
            print(f"wrote {args.out} (columns: t = {frames.images.shape[0] - 1} ... 0, left to right)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
