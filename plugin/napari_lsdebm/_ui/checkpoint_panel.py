"""Checkpoint chooser: bundled checkpoints (with descriptions) or a browsed .safetensors file.

Loaded checkpoints are kept per model kind (one LSD-EBM, VAE, LEBM and ReconNet at a time), so
the run panel can pick the method's checkpoint. Bad files are refused with the one-line
:class:`lsdebm.errors.LsdebmError` message shown in red inside the panel, never a traceback.
"""
from __future__ import annotations

import html
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints, load_checkpoint, read_metadata
from lsdebm.errors import LsdebmError
from lsdebm.explore.record import checkpoint_name
from lsdebm.methods import chain_summary
from lsdebm.nn.registry import LABELS

KIND_NAMES = LABELS  # kind -> the name shown (from the one kind table)


def describe(kind: str, config, info: dict, name: str | None = None, sha256: str | None = None) -> list[tuple[str, str]]:
    """(label, value) rows describing a checkpoint: model, preset, grid, T, K, data, test metrics."""
    m, s, lang = config.model, config.schedule, config.langevin
    rows = [("model", f"{KIND_NAMES.get(kind, kind)} ({m.spatial_dims}D, latent {m.latent_dim})"),
            ("preset", config.preset),
            ("grid", f"{m.grid}^{m.spatial_dims} at {m.spacing:g} mm"),
            ("T (diffusion steps)", f"{s.T} ({s.kind} schedule); reconstruction depth {lang.recon_steps}"),
            chain_summary(kind, config)]
    if info.get("description"):
        rows.insert(0, ("description", str(info["description"])))
    data = info.get("train_data") or info.get("data")
    if data:
        rows.append(("training data", _short(data)))
    for key, label in (("epochs", "epochs"), ("wall_time_s", "training time (s)"), ("final_val_dsc", "val DSC")):
        if info.get(key) is not None:
            rows.append((label, str(info[key])))
    rows.append(("test metrics", _test_metrics(name, sha256)))
    return rows


def _breakable(text: str) -> str:
    """HTML-escaped text that may wrap after path separators (long file paths)."""
    return html.escape(text).replace("/", "/&#8203;").replace(",", ",&#8203;")


def _short(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in list(value.items())[:6])
    return str(value)


def _test_metrics(name: str | None, sha256: str | None) -> str:
    from lsdebm.evaluation.report import recorded_metrics

    entry = recorded_metrics(name, sha256) if name and sha256 else None
    if not entry:
        return "none recorded for this file"
    parts = []
    for row, cols in (entry.get("rows") or {}).items():
        vals = [f"{c.upper()} {v['mean']:.3f}" for c, v in cols.items()
                if c in ("dsc", "hd95", "assd") and isinstance(v, dict) and v.get("mean") is not None]
        parts.append(f"{row}: {', '.join(vals)}")
    return f"n={entry.get('n')}; " + "; ".join(parts) if parts else "recorded (no rows)"


class CheckpointPanel(QWidget):
    """Pick and load checkpoints; emits ``loaded(LoadedCheckpoint)``."""

    loaded = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.checkpoints: dict[str, LoadedCheckpoint] = {}  # by kind
        self.combo = QComboBox()
        self.combo.setToolTip("Checkpoints bundled with napari-lsdebm")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        self.load_button = QPushButton("Load")
        self.browse_button = QPushButton("Browse…")
        self.error = QLabel()
        self.error.setStyleSheet("color: #ff6b6b")
        self.error.setWordWrap(True)
        self.info = QLabel("No checkpoint loaded.")
        self.info.setWordWrap(True)
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.load_button)
        row.addWidget(self.browse_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.error)
        layout.addWidget(self.info)
        self.load_button.clicked.connect(lambda: self.load(self.combo.currentData()) if self.combo.currentData() else None)
        self.browse_button.clicked.connect(self._browse)
        self.refresh_bundled()

    def refresh_bundled(self) -> None:
        """Fill the combo with bundled checkpoints and their descriptions."""
        self.combo.clear()
        bundled = bundled_checkpoints()
        if not bundled:
            self.combo.addItem("(no bundled checkpoints installed: use Browse…)", None)
        for name, path in bundled.items():
            try:
                desc = read_metadata(path)["info"].get("description", "")
            except LsdebmError as exc:
                desc = f"unreadable: {exc}"
            self.combo.addItem(f"{name} — {desc}" if desc else name, str(path))
        self.load_button.setEnabled(bool(bundled))

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open LSD-EBM checkpoint", "", "Checkpoints (*.safetensors)")
        if path:
            self.load(path)

    def load(self, name_or_path: str | Path, announce: bool = True) -> LoadedCheckpoint | None:
        """Load a checkpoint (bundled name or path); on a bad file show why and return None.

        ``announce`` emits ``loaded`` (the run panel then takes the checkpoint's defaults).
        """
        try:
            ckpt = load_checkpoint(name_or_path, "cpu")
        except LsdebmError as exc:
            self.error.setText(f"Not loaded: {exc}")
            return None
        return self.use(ckpt, announce)

    def use(self, ckpt: LoadedCheckpoint, announce: bool = True) -> LoadedCheckpoint:
        """Keep an already loaded checkpoint as the one of its kind and describe it (as :meth:`load` does)."""
        self.error.setText("")
        self.checkpoints[ckpt.kind] = ckpt
        index = self.combo.findData(str(ckpt.path))
        if index >= 0:  # a bundled one: show it in the list
            self.combo.setCurrentIndex(index)
        rows = describe(ckpt.kind, ckpt.config, ckpt.info, checkpoint_name(ckpt), ckpt.sha256)
        rows.append(("file", f"{ckpt.path} (sha256 {ckpt.sha256[:12]}…)"))
        loaded = ", ".join(KIND_NAMES[k] for k in self.checkpoints)
        self.info.setText("<br>".join(f"<b>{html.escape(k)}</b>: {_breakable(v)}" for k, v in rows)
                          + f"<br><i>loaded: {html.escape(loaded)}</i>")
        if announce:
            self.loaded.emit(ckpt)
        return ckpt
