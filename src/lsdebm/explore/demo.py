"""The ``lsdebm demo`` pipeline without a display (Qt-free).

One sample pair (:mod:`lsdebm.data.samples`): by default the plugin's real sample, a VerSe L3 of
a validation subject at 1 mm degraded by 5 mm sagittal slabs, cropped into the model frame as the
explorer crops a layer; or the plugin's phantom at the checkpoint's grid. One recorded run of the
checkpoint's method (Algorithm 2 for LSD-EBM, guided by the observed slabs as in the explorer),
its result on the input's grid through the same measurement-aware output step as ``lsdebm
reconstruct``, and the files a person can look at without napari:

  input_lq.nii.gz, ground_truth_hq.nii.gz   the pair (their own affine)
  reconstruction.nii.gz                     the result on the input's grid
  probability.nii.gz                        the run's mean probability on the model grid (crop affine)
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

from lsdebm.data.frame import CropInfo
from lsdebm.data.samples import SamplePair
from lsdebm.errors import CheckpointError, InputError, LsdebmError
from lsdebm.explore.record import METHODS, RunOutput, drain, observe, prepare_input, record_run, run_metadata
from lsdebm.explore.render import render_iso_png
from lsdebm.explore.result import result_layer_data
from lsdebm.explore.volumes import make_decoder
from lsdebm.fileio import atomic_write
from lsdebm.methods import RunSettings
from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints
from lsdebm.sampling import Trajectory

FIXED_FILES = ("input_lq.nii.gz", "ground_truth_hq.nii.gz", "reconstruction.nii.gz", "probability.nii.gz",
               "trajectory.npz", "latent_variance.png", "metrics.json")
DEMO_CHECKPOINT = "lsdebm-default"


SAMPLES = ("real", "phantom")


@dataclass
class DemoCase:
    """The demo's input: a sample pair, and the model-grid volume the run starts from.

    Attributes:
        pair: The high-quality mask and its thick-slice version (:class:`lsdebm.data.samples.SamplePair`).
        x: The thick-slice mask on the model grid.
        crop: How ``x`` was cropped from the pair's grid (None: the pair is on the model grid).
    """

    pair: SamplePair
    x: np.ndarray
    crop: CropInfo | None = None

    @property
    def name(self) -> str:
        return self.pair.name

    @property
    def model_affine(self) -> np.ndarray:
        """The affine of the model grid the run works on."""
        return self.crop.crop_affine if self.crop is not None else self.pair.affine


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


def demo_case(model_cfg, sample: str = "real", level: str = "L3", seed: int = 0) -> DemoCase:
    """One of the plugin's sample pairs (``real`` or ``phantom``), ready for a run of a checkpoint whose
    model config is ``model_cfg`` (its grid, spacing and frame).

    Raises:
        InputError: For an unknown sample or a level the sample does not have.
    """
    from lsdebm.data.samples import phantom_sample, real_sample

    if sample not in SAMPLES:
        raise InputError(f"unknown demo sample {sample!r}; choose one of {', '.join(SAMPLES)}")
    if sample == "real":
        pair = real_sample(level, seed)
    else:
        pair = phantom_sample(level, seed, model_cfg.grid, model_cfg.spacing)[0]
    x, crop = prepare_input(pair.lq, pair.affine, model_cfg.grid, model_cfg.spacing, None, model_cfg=model_cfg)
    return DemoCase(pair, x, crop)


def snapshot_frames(traj: Trajectory) -> list[int]:
    """Frames worth a picture: the encoding, the most diffused latent, mid-reverse, the result."""
    n_fwd = traj.forward.shape[1]
    frames = [0, n_fwd - 1, n_fwd - 1 + max(traj.depth // 2, 1), traj.n_frames - 1]
    return sorted({f for f in frames if 0 <= f < traj.n_frames})


def record_demo(ckpt: LoadedCheckpoint, case: DemoCase, settings: RunSettings, on_progress=None) -> RunOutput:
    """Run ``ckpt`` on the LQ mask of ``case`` (guided by its slabs, as the explorer runs) and return the
    recorded output."""
    meta = run_metadata(ckpt, settings, input_name=f"LQ {case.name}", affine=case.model_affine.tolist())
    observations = observe(ckpt, case.pair.lq, case.pair.affine, case.crop, None, settings)
    return drain(record_run(ckpt, case.x, settings, metadata=meta, observations=observations), on_progress)


def demo_result(ckpt: LoadedCheckpoint, case: DemoCase, output: RunOutput) -> tuple[np.ndarray, np.ndarray]:
    """``(mask, affine)``: the run's result on the input's grid, through the measurement-aware output step
    (:func:`lsdebm.explore.result.result_layer_data`, what the explorer shows); the model-grid mask when
    the pair is on the model grid already."""
    if case.crop is None:
        return output.mask, case.pair.affine
    mask, grid = result_layer_data(output, case.crop, case.pair.lq, ckpt.model)
    return mask, (case.pair.affine if grid is None else grid[1])


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
    from lsdebm.provenance import checkpoint_record, make_provenance

    out = Path(out)
    check_out(out, overwrite)
    res = DemoResult(out)
    traj, pair = output.trajectory, case.pair
    mask, mask_affine = demo_result(ckpt, case, output)
    vols = {"input_lq": (pair.lq, pair.affine), "ground_truth_hq": (pair.truth, pair.affine),
            "reconstruction": (mask, mask_affine),
            "probability": (output.probs.mean(0).astype(np.float32), case.model_affine)}
    for name, (data, affine) in vols.items():
        res.files[name] = write_volume(out / f"{name}.nii.gz", data, affine, overwrite=overwrite)
    res.files["trajectory"] = traj.save(out / "trajectory.npz", overwrite=overwrite)
    decode = make_decoder(ckpt.model)
    for s in snapshot_frames(traj):
        phase, t = traj.frame_info(s)
        title = {"forward": f"forward t={t}" + (" (encoded z0)" if s == 0 else ""),
                 "reverse": f"reverse t={t}" + (" (result)" if s == traj.n_frames - 1 else "")}[phase]
        prob = decode(traj.latent(s, -1)[None])[0]
        path = out / f"view_{s:02d}_{phase}_t{t}.png"
        res.render_backend = render_iso_png(prob, ckpt.config.model.spacing, path, title, backend=backend,
                                            overwrite=overwrite)
        res.files[path.stem] = path
    res.files["latent_variance"] = write_variance_png(traj, out / "latent_variance.png", overwrite)
    res.metrics = {**demo_metrics(case, output, mask, mask_affine), "seconds": round(output.seconds, 2),
                   "render_backend": res.render_backend, "case": case.name, "attribution": pair.attribution,
                   "provenance": make_provenance([checkpoint_record(ckpt, "method")], traj.metadata["settings"]["seed"],
                                                 traj.metadata["settings"],
                                                 outputs=[p.name for p in res.files.values()])}
    text = json.dumps(res.metrics, indent=2, default=str) + "\n"
    res.files["metrics"] = atomic_write(out / "metrics.json", lambda tmp: tmp.write_text(text), overwrite=overwrite)
    return res


def demo_metrics(case: DemoCase, output: RunOutput, mask: np.ndarray, mask_affine: np.ndarray) -> dict:
    """The result, the input and (for a cropped input) the run's own model-grid mask pasted back without the
    output step, each against the ground truth on the truth's grid."""
    from lsdebm.data.boxes import resample
    from lsdebm.data.frame import affine_spacing, paste_back
    from lsdebm.evaluation.metrics import compute_metrics

    pair = case.pair
    spacing = affine_spacing(pair.affine)
    if mask.shape != pair.truth.shape or not np.allclose(mask_affine, pair.affine):
        mask = resample(mask, pair.truth.shape, pair.affine, mask_affine, order=0)
    metrics = {"reconstruction_vs_hq": _finite(compute_metrics(mask, pair.truth, spacing)),
               "input_lq_vs_hq": _finite(compute_metrics(pair.lq, pair.truth, spacing))}
    if case.crop is not None:
        chain = paste_back(output.mask, case.crop)
        metrics["run_pasted_without_output_step_vs_hq"] = _finite(compute_metrics(chain, pair.truth, spacing))
    return metrics


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
