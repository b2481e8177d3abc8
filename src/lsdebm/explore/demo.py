"""The ``lsdebm demo`` pipeline without a display (Qt-free).

One phantom pair at the checkpoint's grid (the same L3 phantom as the plugin's sample data),
the thick-slice mask as input, one recorded run of the checkpoint's method (Algorithm 2 for
LSD-EBM), and the files a person can look at without napari:

  input_lq.nii.gz, ground_truth_hq.nii.gz   the pair (model-frame affine)
  reconstruction.nii.gz, probability.nii.gz final mask and mean probability
  trajectory.npz                            the recorded run (opens in ``lsdebm view``)
  view_<frame>.png                          iso-surface of the decoded volume at a few frames
  latent_variance.png                       latent variance per frame (the paper's Fig. 5)
  metrics.json                              reconstruction and input vs ground truth, provenance
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lsdebm.errors import CheckpointError, LsdebmError
from lsdebm.explore.record import METHODS, RunOutput, drain, record_run, run_metadata
from lsdebm.explore.render import render_iso_png
from lsdebm.explore.volumes import make_decoder
from lsdebm.fileio import atomic_write
from lsdebm.methods import RunSettings
from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints
from lsdebm.sampling import Trajectory

FIXED_FILES = ("input_lq.nii.gz", "ground_truth_hq.nii.gz", "reconstruction.nii.gz", "probability.nii.gz",
               "trajectory.npz", "latent_variance.png", "metrics.json")
DEMO_CHECKPOINT = "lsdebm-default"


@dataclass
class DemoCase:
    """The demo's input: an HQ phantom mask and its simulated thick-slice LQ mask."""

    name: str
    hq: np.ndarray
    lq: np.ndarray
    affine: np.ndarray
    spacing: float


@dataclass
class DemoResult:
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    render_backend: str = ""


def demo_checkpoint(path: str | None = None) -> str:
    """``path`` or the bundled LSD-EBM; a one-line CheckpointError if neither exists."""
    if path:
        return path
    if DEMO_CHECKPOINT not in bundled_checkpoints():
        raise CheckpointError(f"no bundled LSD-EBM checkpoint is installed yet ({DEMO_CHECKPOINT}); "
                              "pass --checkpoint PATH to a .safetensors file")
    return DEMO_CHECKPOINT


def demo_case(grid: int, spacing: float, level: str = "L3", seed: int = 0) -> DemoCase:
    """The plugin's sample pair (default thick-slice settings) at the model grid."""
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.data.thickslice import ThickSliceParams, simulate_thick_slice

    phantom = make_vertebra(level, seed, grid, spacing)
    lq = simulate_thick_slice(phantom.mask, spacing, ThickSliceParams(), np.random.default_rng(seed))
    return DemoCase(f"{level}-seed{seed}", phantom.mask.astype(np.uint8), (lq > 0).astype(np.uint8),
                    phantom.affine, spacing)


def snapshot_frames(traj: Trajectory) -> list[int]:
    """Frames worth a picture: the encoding, the most diffused latent, mid-reverse, the result."""
    n_fwd = traj.forward.shape[1]
    frames = [0, n_fwd - 1, n_fwd - 1 + max(traj.depth // 2, 1), traj.n_frames - 1]
    return sorted({f for f in frames if 0 <= f < traj.n_frames})


def record_demo(ckpt: LoadedCheckpoint, case: DemoCase, settings: RunSettings, on_progress=None) -> RunOutput:
    """Run ``ckpt`` on the LQ mask of ``case`` and return the recorded output."""
    meta = run_metadata(ckpt, settings, input_name=f"LQ {case.name}")
    return drain(record_run(ckpt, case.lq, settings, metadata=meta), on_progress)


def check_out(out: Path, overwrite: bool) -> None:
    """Refuse before any work if the folder already holds demo outputs and ``overwrite`` is off."""
    existing = [n for n in FIXED_FILES if (out / n).exists()] + [p.name for p in out.glob("view_*.png")]
    if existing and not overwrite:
        raise LsdebmError(f"{out} already holds demo outputs ({', '.join(existing[:3])}...); "
                          "pass --overwrite or choose another --out")


def write_demo(out: str | Path, ckpt: LoadedCheckpoint, case: DemoCase, output: RunOutput,
               overwrite: bool = False, backend: str = "auto") -> DemoResult:
    """Write every demo file (see the module docstring) into ``out``."""
    from lsdebm.data.nifti import write_volume
    from lsdebm.evaluation.metrics import compute_metrics
    from lsdebm.provenance import checkpoint_record, make_provenance

    out = Path(out)
    check_out(out, overwrite)
    res = DemoResult(out)
    traj = output.trajectory
    vols = {"input_lq": case.lq, "ground_truth_hq": case.hq, "reconstruction": output.mask,
            "probability": output.probs.mean(0).astype(np.float32)}
    for name, data in vols.items():
        res.files[name] = write_volume(out / f"{name}.nii.gz", data, case.affine, overwrite=overwrite)
    res.files["trajectory"] = traj.save(out / "trajectory.npz", overwrite=overwrite)
    decode = make_decoder(ckpt.model)
    for s in snapshot_frames(traj):
        phase, t = traj.frame_info(s)
        title = {"forward": f"forward t={t}" + (" (encoded z0)" if s == 0 else ""),
                 "reverse": f"reverse t={t}" + (" (result)" if s == traj.n_frames - 1 else "")}[phase]
        prob = decode(traj.latent(s, -1)[None])[0]
        path = out / f"view_{s:02d}_{phase}_t{t}.png"
        res.render_backend = render_iso_png(prob, case.spacing, path, title, backend=backend, overwrite=overwrite)
        res.files[path.stem] = path
    res.files["latent_variance"] = write_variance_png(traj, out / "latent_variance.png", overwrite)
    res.metrics = {"reconstruction_vs_hq": _finite(compute_metrics(output.mask, case.hq, (case.spacing,) * 3)),
                   "input_lq_vs_hq": _finite(compute_metrics(case.lq, case.hq, (case.spacing,) * 3)),
                   "seconds": round(output.seconds, 2), "render_backend": res.render_backend, "case": case.name,
                   "provenance": make_provenance([checkpoint_record(ckpt, "method")], traj.metadata["settings"]["seed"],
                                                 traj.metadata["settings"],
                                                 outputs=[p.name for p in res.files.values()])}
    text = json.dumps(res.metrics, indent=2, default=str) + "\n"
    res.files["metrics"] = atomic_write(out / "metrics.json", lambda tmp: tmp.write_text(text), overwrite=overwrite)
    return res


def write_variance_png(traj: Trajectory, path: Path, overwrite: bool = False) -> Path:
    """Latent variance (Fig. 5) and, for the last reverse step, energy and |grad U| over k."""
    from matplotlib.figure import Figure

    from lsdebm.explore.plots import draw_langevin, draw_variance

    fig = Figure(figsize=(10, 3.4), dpi=100, layout="constrained")
    axes = fig.subplots(1, 3, width_ratios=(2, 1, 1))
    draw_variance(axes[0], traj).set_visible(False)
    method = METHODS.get(traj.metadata.get("method"), "")
    axes[0].set_title(f"{method} latent variance per step (forward, then reverse)".strip(), fontsize=9)
    for cursor in draw_langevin(axes[1], axes[2], traj, traj.n_frames - 1):
        cursor.set_visible(False)
    return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"), overwrite=overwrite)


def _finite(metrics: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
