"""Run settings (method, ReconNet stage, T, K, step size, seed, repeats, device), Run/Cancel, progress.

The panel only collects settings and shows progress; the explorer owns the run itself
(:func:`napari_lsdebm._ui.jobs.start_job`). For LEBM the K field is the number of posterior
Langevin steps and T does not apply; VAE uses neither.

T, K and step size belong to a checkpoint: switching method (or loading another checkpoint)
shows that checkpoint's values, or the values the user typed for that checkpoint
(:class:`CheckpointSettings`), so a K = 5000 typed for LSD-EBM never becomes 5000 LEBM
posterior steps. A method whose checkpoint is not loaded yet takes the defaults of its bundled
checkpoint (read from the file header, no weights). Run, Cancel, the progress bar (with an
ETA) and the status line are in :attr:`RunPanel.footer`, which the dock keeps outside its
scroll area so they are always on screen.
"""
from __future__ import annotations

import time

from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from lsdebm.errors import LsdebmError
from lsdebm.explore import Progress, make_settings
from lsdebm.explore.record import METHODS
from lsdebm.methods import RunSettings, method_for_config
from lsdebm.nn.registry import is_refinement, kind_info
from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints, read_metadata

FIELDS = ("depth", "K", "step_size")  # the per-checkpoint settings


def checkpoint_defaults(kind: str, config) -> dict:
    """The run settings a checkpoint of ``kind`` brings: depth t*, its maximum T, K and step size."""
    r = method_for_config(kind, config).resolve(RunSettings())
    if r.step_size is not None:  # the method's own chain (LSD-EBM: K per step; LEBM: posterior steps)
        K, step_size = r.chain_length, r.step_size
    else:
        K, step_size = config.langevin.K, config.langevin.step_size
    return {"depth": config.langevin.recon_steps, "depth_max": config.schedule.T, "K": K, "step_size": step_size}


class CheckpointSettings:
    """Per-checkpoint defaults and user edits of T, K and step size (keyed by checkpoint path)."""

    def __init__(self) -> None:
        self.by_kind: dict[str, str] = {}  # kind -> key of the checkpoint that method runs
        self.defaults: dict[str, dict] = {}
        self.user: dict[str, dict] = {}

    def register(self, kind: str, key: str, config) -> None:
        """Make ``key`` the checkpoint of ``kind`` and remember its defaults."""
        self.by_kind[kind] = key
        self.defaults.setdefault(key, checkpoint_defaults(kind, config))

    def key(self, kind: str) -> str:
        """Key of the checkpoint ``kind`` runs: a loaded one, else its bundled default (header read)."""
        if kind not in self.by_kind:
            path = bundled_checkpoints().get(f"{kind}-default")
            try:
                if path is not None:
                    self.register(kind, str(path), read_metadata(path)["config"])
            except LsdebmError:
                pass
        return self.by_kind.get(kind, f"kind:{kind}")

    def values(self, kind: str) -> dict:
        """Defaults of the checkpoint of ``kind`` with the user's edits on top."""
        key = self.key(kind)
        return {**self.defaults.get(key, {}), **self.user.get(key, {})}

    def edit(self, kind: str, field: str, value) -> None:
        self.user.setdefault(self.key(kind), {})[field] = value


class RunPanel(QWidget):
    """Settings form plus Run / Cancel buttons and a progress bar."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.memory = CheckpointSettings()
        self._applying = False  # True while the panel itself sets T, K, step size
        self._first: tuple[float, int] | None = None  # (monotonic time, events done) of the run's first event
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
        self.status.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        form = QFormLayout()
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
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
        self.footer = QWidget()  # Run/Cancel, progress, status: the dock shows it below its scroll area
        footer = QVBoxLayout(self.footer)
        footer.setContentsMargins(4, 2, 4, 2)
        footer.addLayout(buttons)
        footer.addWidget(self.progress)
        footer.addWidget(self.status)
        self.method.currentIndexChanged.connect(self._method_changed)
        for name in FIELDS:
            getattr(self, name).valueChanged.connect(lambda value, name=name: self._edited(name, value))
        self._method_changed()

    def kind(self) -> str:
        return self.method.currentData()

    def set_kind(self, kind: str) -> None:
        self.method.setCurrentIndex(self.method.findData(kind))

    def use_defaults(self, ckpt: LoadedCheckpoint) -> None:
        """Switch to a loaded checkpoint's method and show its T, K and step size (or the user's for it)."""
        if not is_refinement(ckpt.kind):
            self.reconnet.setChecked(True)
            return
        self.register(ckpt)
        if self.kind() == ckpt.kind:
            self.apply()
        else:
            self.set_kind(ckpt.kind)  # _method_changed applies

    def register(self, ckpt: LoadedCheckpoint | None) -> None:
        """Make ``ckpt`` the checkpoint its method runs, without changing what the form shows (None: nothing)."""
        if ckpt is not None and is_refinement(ckpt.kind):
            self.memory.register(ckpt.kind, str(ckpt.path), ckpt.config)

    def apply(self) -> None:
        """Show the current method's checkpoint settings (defaults with the user's edits on top)."""
        values = self.memory.values(self.kind())
        self._applying = True
        try:
            if "depth_max" in values:
                self.depth.setMaximum(values["depth_max"])
            for name in FIELDS:
                if name in values:
                    getattr(self, name).setValue(values[name])
        finally:
            self._applying = False

    def _edited(self, name: str, value) -> None:
        if not self._applying:
            self.memory.edit(self.kind(), name, value)

    def settings(self) -> RunSettings:
        kind = self.kind()
        return make_settings(kind, self.depth.value(), self.K.value(), self.step_size.value(), self.seed.value(),
                             self.repeats.value())

    def set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        if running:
            self._first = None  # (time, events done) of the first progress event of this run
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
        else:
            self.status.setText("")

    def show_progress(self, p: Progress) -> None:
        self.progress.setRange(0, max(p.total, 1))
        self.progress.setValue(p.done)
        step = p.payload  # a lsdebm.explore.RunStep
        where = f"{p.stage} t={step.t}" + (f" k={step.k}" if step.k else "")
        energy = f", energy {step.energy:.4g}" if step.energy is not None else ""
        now = time.monotonic()
        if self._first is None:  # the rate is timed from here: preparing the input and the first model call
            self._first = (now, p.done)  # before it say nothing about the events still to come
        self.status.setText(f"{where}{energy}: {progress_text(p.done, p.total, now - self._first[0], self._first[1])}")

    def _method_changed(self) -> None:
        info = kind_info(self.kind())
        self.depth.setEnabled(info.diffusion)
        self.K.setEnabled(info.has_energy)
        self.step_size.setEnabled(info.has_energy)
        self.every.setEnabled(info.has_energy)
        self.apply()


def progress_text(done: int, total: int, elapsed: float, since: int = 0) -> str:
    """``"412/1200 events, ~8 s left"``: ``elapsed`` seconds went by since event ``since`` (no estimate before
    the first event after it, or after the last)."""
    text = f"{done}/{total} events"
    if since < done < total:
        left = elapsed * (total - done) / (done - since)
        text += f", ~{left:.0f} s left" if left < 120 else f", ~{left / 60:.0f} min left"
    return text


def _spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    box = QSpinBox()
    box.setRange(lo, hi)
    box.setValue(value)
    box.setToolTip(tip)
    return box
