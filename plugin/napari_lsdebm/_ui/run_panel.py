"""Run settings (method, ReconNet stage, T, K, step size, seed, repeats, device), Run/Cancel, progress.

The panel only collects settings and shows progress; the explorer owns the run itself
(:func:`napari_lsdebm._ui.jobs.start_job`). For LEBM the K field is the number of posterior
Langevin steps and T does not apply; VAE uses neither.
"""
from __future__ import annotations

from qtpy.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFormLayout, QHBoxLayout, QLabel, QProgressBar,
                            QPushButton, QSpinBox, QVBoxLayout, QWidget)

from lsdebm.runtime.checkpoint import LoadedCheckpoint
from lsdebm.explore import Progress, make_settings
from lsdebm.explore.record import METHODS
from lsdebm.methods import RunSettings, method_for
from lsdebm.nn.registry import is_refinement, kind_info


class RunPanel(QWidget):
    """Settings form plus Run / Cancel buttons and a progress bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.method = QComboBox()
        for kind, title in METHODS.items():
            self.method.addItem(title, kind)
        self.reconnet = QCheckBox("ReconNet first stage")
        self.reconnet.setToolTip("Refine the thresholded ReconNet output instead of the raw input "
                                 "(needs a ReconNet checkpoint loaded)")
        self.depth = _spin(0, 1000, 6, "Diffusion depth t*: forward steps before the reverse chain (≤ T)")
        self.K = _spin(1, 100000, 300, "Langevin iterations per reverse step (LEBM: posterior steps)")
        self.step_size = QDoubleSpinBox()
        self.step_size.setDecimals(5)
        self.step_size.setRange(1e-5, 10.0)
        self.step_size.setSingleStep(0.001)
        self.step_size.setValue(0.01)
        self.seed = _spin(0, 2 ** 31 - 1, 0, "Seed of the sampling generator")
        self.repeats = _spin(1, 64, 1, "Independent chains run as one batch")
        self.every = _spin(1, 100000, 1, "Record every n-th Langevin iteration (and the last)")
        self.device = QComboBox()
        self.device.addItems(["auto", "cpu", "cuda"])
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        form = QFormLayout()
        form.addRow("method", self.method)
        form.addRow("", self.reconnet)
        form.addRow("T (depth)", self.depth)
        form.addRow("K", self.K)
        form.addRow("step size", self.step_size)
        form.addRow("seed", self.seed)
        form.addRow("repeats", self.repeats)
        form.addRow("record every", self.every)
        form.addRow("device", self.device)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        self.method.currentIndexChanged.connect(self._method_changed)

    def kind(self) -> str:
        return self.method.currentData()

    def set_kind(self, kind: str) -> None:
        self.method.setCurrentIndex(self.method.findData(kind))

    def use_defaults(self, ckpt: LoadedCheckpoint) -> None:
        """Take T, K and step size defaults (and the method) from a loaded checkpoint."""
        cfg = ckpt.config
        if not is_refinement(ckpt.kind):
            self.reconnet.setChecked(True)
            return
        self.set_kind(ckpt.kind)
        self.depth.setMaximum(cfg.schedule.T)
        self.depth.setValue(cfg.langevin.recon_steps)
        r = method_for(ckpt.model).resolve(RunSettings())
        if r.step_size is not None:  # the method's own chain (LSD-EBM: K per step; LEBM: posterior steps)
            self.K.setValue(r.chain_length)
            self.step_size.setValue(r.step_size)
        else:
            self.K.setValue(cfg.langevin.K)
            self.step_size.setValue(cfg.langevin.step_size)

    def settings(self) -> RunSettings:
        kind = self.kind()
        return make_settings(kind, self.depth.value(), self.K.value(), self.step_size.value(), self.seed.value(),
                             self.repeats.value())

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self.progress.setRange(0, 1)
            self.progress.setValue(0)

    def show_progress(self, p: Progress) -> None:
        self.progress.setRange(0, max(p.total, 1))
        self.progress.setValue(p.done)
        step = p.payload  # a lsdebm.explore.RunStep
        where = f"{p.stage} t={step.t}" + (f" k={step.k}" if step.k else "")
        energy = f", energy {step.energy:.4g}" if step.energy is not None else ""
        self.status.setText(f"{where}{energy} ({p.done}/{p.total})")

    def _method_changed(self) -> None:
        info = kind_info(self.kind())
        self.depth.setEnabled(info.diffusion)
        self.K.setEnabled(info.has_energy)
        self.step_size.setEnabled(info.has_energy)
        self.every.setEnabled(info.has_energy)


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    return box
