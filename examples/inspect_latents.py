"""Inspect the latents of one LSD-EBM run from Python (the researcher's notebook path).

Degrades a real vertebra (shipped VerSe 2019 mask, CC BY-SA 4.0) into 5 mm sagittal slabs, runs
the bundled LSD-EBM (with its ReconNet stage) on it while recording every latent, then prints
per diffusion step t and Langevin iteration k: the latent variance (the paper's Fig. 5), the
energy, and the Dice to the truth of the decoded current and predicted-clean latents. The
trajectory is saved and reopened, as the explorer would. The recorded chain is the paper's
sampler on the model grid; the last line runs the full measurement-aware pipeline for contrast::

    python examples/inspect_latents.py --out outputs/inspect        # ~10 s on 2 CPU cores
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import lsdebm
from lsdebm.data.real import degrade, isotropic
from lsdebm.data.thickslice import ThickSliceParams


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--vertebra", default="L3_verse009", help="name of a shipped real mask (default L3_verse009)")
    p.add_argument("--out", type=Path, default=Path("outputs/inspect"), help="folder for the trajectory (.npz)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    real = {m.name: m for m in lsdebm.load_real_masks(split="val")}
    if args.vertebra not in real:
        p.error(f"unknown vertebra {args.vertebra!r}; choose one of {', '.join(sorted(real))}")
    truth_mask, truth_affine = isotropic(real[args.vertebra].mask, real[args.vertebra].affine, 1.0)
    thick = degrade(truth_mask, truth_affine, ThickSliceParams(plane="sagittal", thickness=5.0),
                    np.random.default_rng(args.seed))

    ckpt = lsdebm.load_checkpoint("lsdebm-default")
    stage1 = lsdebm.load_checkpoint("reconnet-default")
    rec = lsdebm.record(thick, ckpt, truth_affine, stage1=stage1, settings=lsdebm.RunSettings(seed=args.seed))
    args.out.mkdir(parents=True, exist_ok=True)
    path = rec.trajectory.save(args.out / f"{args.vertebra}_run.npz", overwrite=True)
    traj = lsdebm.Trajectory.load(path)

    def score(probs):  # Dice to the truth, on the truth's own 1 mm grid
        return lsdebm.dice(rec.to_input_grid(probs) >= 0.5, truth_mask)

    print(f"{args.vertebra}: {traj.n_frames} frames (forward then reverse), K={traj.n_k} recorded iterations")
    variance = traj.process_variance()[0]
    print(f"{'frame':>16} {'latent var':>10} {'energy':>9} {'DSC current':>11} {'DSC clean':>9}")
    for s in range(traj.n_frames):
        phase, t = traj.frame_info(s)
        energy = float(traj.energy[0, t, -1]) if phase == "reverse" else float("nan")
        dsc = [score(lsdebm.decode_frame(ckpt, traj, s, clean=c)) for c in (False, True)]
        print(f"{phase + ' t=' + str(t):>16} {float(variance[s]):10.4f} {energy:9.3f} {dsc[0]:11.3f} {dsc[1]:9.3f}")
    print(f"input DSC {lsdebm.dice(thick, truth_mask):.3f}; the recorded chain's output (the paper's sampler, "
          f"no data consistency) DSC {score(rec.output.probs.mean(0)):.3f}")
    full = lsdebm.reconstruct(thick, truth_affine, method="lsdebm")  # guided + projected onto the slabs
    print("the full pipeline (ReconNet + guided LSD-EBM + slab projection) "
          f"DSC {lsdebm.dice(full.mask, truth_mask):.3f}")
    print(f"saved {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
