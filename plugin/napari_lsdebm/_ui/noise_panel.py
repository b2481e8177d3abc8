"""Teaching in 3D: "Generate from noise" (Algorithm 3) and "Full depth (t* = T)" for the explorer.

At the bundled t* (a few steps) the forward frames of a reconstruction barely differ; starting from
pure noise shows a vertebra emerging step by step. Both record a normal trajectory that the t/k
sliders and the plots scrub. The canvas note (:func:`explorer_note`) says what is on screen.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import QCheckBox, QLabel, QPushButton, QVBoxLayout, QWidget

from lsdebm.errors import LsdebmError
from lsdebm.explore import run_metadata
from lsdebm.explore.generate import can_generate, full_depth, record_generation_run
from lsdebm.explore.vocabulary import canvas_text
from lsdebm.sampling import Trajectory
from napari_lsdebm._ui.checkpoint_panel import KIND_NAMES
from napari_lsdebm._ui.jobs import start_job


class NoisePanel(QWidget):
    """The "Generate from noise" button and the "Full depth (t* = T)" option."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.generate_button = QPushButton("Generate from noise")
        self.generate_button.setToolTip("Algorithm 3: start from z_T ~ N(0, I) at t = T and run the whole reverse "
                                        "chain (K, step size, seed, repeats and 'record every' from above); "
                                        "needs an LSD-EBM checkpoint, no input")
        self.full_depth = QCheckBox("Full depth (t* = T) for runs on an input")
        self.full_depth.setToolTip("Diffuse the input all the way to t = T (pure noise) before the reverse chain, "
                                   "instead of the depth above: the forward frames then really differ")
        hint = QLabel("Teaching: scrub a vertebra emerging from noise with the t and k sliders.")
        hint.setWordWrap(True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.full_depth)
        layout.addWidget(self.generate_button)
        layout.addWidget(hint)

    def run_settings(self, ckpt, settings):
        """``settings`` with t* = T when "Full depth" is ticked and the method has a diffusion chain."""
        return full_depth(ckpt, settings) if self.full_depth.isChecked() and can_generate(ckpt) else settings


def generation_context(ckpt) -> dict:
    """The result context of a generation: no input layer, no crop, the model grid at the origin."""
    spacing = float(ckpt.config.model.spacing)
    return {"ckpt": ckpt, "source": None, "crop": None, "affine": np.diag([spacing] * 3 + [1.0]), "placement": None}


def start_generation(ckpt, settings, every: int, on_outcome, on_progress, then=None):
    """Start generating from noise on a worker thread; returns the Job (raises LsdebmError if unsupported).

    ``then(output)``, when given, also runs on the worker thread and its value is the job's output
    (:func:`napari_lsdebm._ui.results.preload_result`)."""
    if not can_generate(ckpt):
        raise LsdebmError(f"{KIND_NAMES[ckpt.kind]} has no diffusion chain: load an LSD-EBM checkpoint "
                          "to generate from noise")
    settings = full_depth(ckpt, settings)
    meta = run_metadata(ckpt, settings, None, every, input_name="noise z_T ~ N(0, I)")
    return start_job(lambda job: _then(record_generation_run(ckpt, settings, every, meta, job.cancel_event), then),
                     on_outcome, on_progress, throttle=0.1, keep=lambda p: p.done >= p.total, what="generation",
                     failed="generation failed")


def _then(run, then):
    output = yield from run
    return output if then is None else then(output)


def explorer_note(traj: Trajectory, s: int, k: int, clean: bool) -> str:
    """Canvas note of the explorer, e.g. ``LSD-EBM · reverse t=1 · k=12/49 · decoded current latent z_t``."""
    method = KIND_NAMES.get(traj.metadata.get("method"), "trajectory")
    if traj.metadata.get("generated"):
        method += " from noise"
    return canvas_text(method, traj, s, k, clean)


__all__ = ["NoisePanel", "explorer_note", "generation_context", "start_generation"]
