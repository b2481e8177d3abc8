"""Checkpoint chooser: bundled checkpoints (with descriptions) or a browsed .safetensors file.

Loaded checkpoints are kept per model kind (one LSD-EBM, VAE, LEBM and ReconNet at a time), so
the run panel can pick the method's checkpoint. Bad files are refused with the one-line
:class:`lsdebm.errors.LsdebmError` message shown in red inside the panel, never a traceback.

A loaded checkpoint is described by a small two-column table of the key facts (:func:`facts`);
the full record (:func:`describe`: command, data, test metrics, file) opens with "Details…".
The bundled list follows the kind registry's order (LSD-EBM first).
"""
from __future__ import annotations

import ast
import html
from pathlib import Path

from qtpy.QtCore import Signal
from qtpy.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QVBoxLayout, QWidget

from lsdebm.errors import LsdebmError
from lsdebm.explore.record import check_volume_model, checkpoint_name
from lsdebm.methods import chain_summary
from lsdebm.nn.registry import KINDS, LABELS
from lsdebm.runtime.checkpoint import LoadedCheckpoint, bundled_checkpoints, load_checkpoint, read_metadata
from lsdebm.runtime.loading import same_frame
from napari_lsdebm._ui.run_panel import checkpoint_defaults

KIND_NAMES = LABELS  # kind -> the name shown (from the one kind table)


def describe(kind: str, config, info: dict, name: str | None = None,
             sha256: str | None = None) -> list[tuple[str, str]]:
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


def facts(ckpt: LoadedCheckpoint) -> list[tuple[str, str]]:
    """The key facts of a checkpoint as (label, value) rows for the compact table."""
    cfg, info = ckpt.config, ckpt.info
    m, info_kind = cfg.model, KINDS.get(ckpt.kind)
    rows = [("kind", KIND_NAMES.get(ckpt.kind, ckpt.kind)), ("preset", str(cfg.preset)),
            ("grid", f"{m.grid}³ at {m.spacing:g} mm")]
    if info_kind is not None and info_kind.refines:
        d = checkpoint_defaults(ckpt.kind, cfg)
        if info_kind.diffusion:
            rows += [("t* / T", f"{d['depth']} / {d['depth_max']}")]
        if info_kind.has_energy:
            rows += [("K", str(d["K"])), ("step size", f"{d['step_size']:g}")]
    data = info.get("train_data") or info.get("data")
    if data:
        rows.append(("trained on", trained_on(data)))
    if info.get("final_val_dsc") is not None:
        rows.append(("val Dice", _number(info["final_val_dsc"])))
    return rows


def trained_on(data) -> str:
    """A short phrase for a checkpoint's training data record (a dict, or its repr as stored)."""
    if isinstance(data, str) and data.startswith("{"):
        try:
            data = ast.literal_eval(data)
        except (ValueError, SyntaxError):  # a truncated repr: keep its beginning
            return data[:60] + "…"
    if not isinstance(data, dict):
        text = str(data)
        return text if len(text) <= 60 else text[:60] + "…"
    text = str(data.get("source", "data"))
    if data.get("n") is not None:
        text += f", {data['n']} pairs"
    parts = [f"{data[k]} {k.split('_')[0]}" for k in ("real_pairs", "phantom_pairs") if data.get(k) is not None]
    return text + (f" ({', '.join(parts)})" if parts else "")


def _number(value) -> str:
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return str(value)


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><td><b>{html.escape(k)}</b>&nbsp;</td><td>{_breakable(v)}</td></tr>" for k, v in rows)
    return f"<table cellspacing='0' cellpadding='1'>{cells}</table>"


def _kind_order(path: Path) -> int:
    """Position of a bundled checkpoint's kind in the kind registry (unknown kinds last)."""
    try:
        kind = read_metadata(path)["kind"]
    except LsdebmError:
        return len(KINDS)
    return list(KINDS).index(kind) if kind in KINDS else len(KINDS)


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
        self.error.setVisible(False)  # shown only with a message (no blank gap above the facts)
        self.facts = QLabel("No checkpoint loaded.")  # the compact table of key facts
        self.facts.setWordWrap(True)
        self.info = QLabel("")  # the full record, shown by "Details…"
        self.info.setWordWrap(True)
        self.info.setVisible(False)
        for label in (self.error, self.facts, self.info):
            label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.details_button = QPushButton("Details…")
        self.details_button.setCheckable(True)
        self.details_button.setEnabled(False)
        self.details_button.setToolTip("Show the checkpoint's full record (command, data, test metrics, file)")
        self.details_button.toggled.connect(self.info.setVisible)
        self.combo.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        row = QHBoxLayout()
        row.addWidget(self.combo, 1)
        row.addWidget(self.load_button)
        row.addWidget(self.browse_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(row)
        layout.addWidget(self.error)
        layout.addWidget(self.facts)
        layout.addWidget(self.details_button)
        layout.addWidget(self.info)
        self.load_button.clicked.connect(
            lambda: self.load(self.combo.currentData()) if self.combo.currentData() else None)
        self.browse_button.clicked.connect(self._browse)
        self.refresh_bundled()

    def refresh_bundled(self) -> None:
        """Fill the combo with bundled checkpoints and their descriptions."""
        self.combo.clear()
        bundled = bundled_checkpoints()
        if not bundled:
            self.combo.addItem("(no bundled checkpoints installed: use Browse…)", None)
        for name, path in sorted(bundled.items(), key=lambda item: _kind_order(item[1])):
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
            check_volume_model(ckpt)
        except LsdebmError as exc:
            self.error.setText(f"Not loaded: {exc}")
            self.error.setVisible(True)
            return None
        return self.use(ckpt, announce)

    def for_run(self, run_panel) -> tuple[LoadedCheckpoint, LoadedCheckpoint | None]:
        """(method checkpoint, ReconNet or None) for ``run_panel``'s method; bundled defaults load on demand."""
        have = self.checkpoints
        kinds = [run_panel.kind()] + (["reconnet"] if run_panel.reconnet.isChecked() else [])
        for kind in kinds:
            if kind not in have and f"{kind}-default" in bundled_checkpoints():
                run_panel.register(self.load(f"{kind}-default", announce=False))
            if kind not in have:
                raise LsdebmError(f"load a {KIND_NAMES[kind]} checkpoint first (Checkpoint → Browse…)")
        main, stage1 = have[kinds[0]], have.get("reconnet") if len(kinds) > 1 else None
        if stage1 is not None and not same_frame(main, stage1):
            raise LsdebmError(f"ReconNet {stage1.path.name} and {main.path.name} use different model grids")
        return main, stage1

    def use(self, ckpt: LoadedCheckpoint, announce: bool = True) -> LoadedCheckpoint:
        """Keep an already loaded checkpoint as the one of its kind and describe it (as :meth:`load` does)."""
        self.error.setText("")
        self.error.setVisible(False)
        self.checkpoints[ckpt.kind] = ckpt
        index = self.combo.findData(str(ckpt.path))
        if index >= 0:  # a bundled one: show it in the list
            self.combo.setCurrentIndex(index)
        rows = describe(ckpt.kind, ckpt.config, ckpt.info, checkpoint_name(ckpt), ckpt.sha256)
        rows.append(("file", f"{ckpt.path} (sha256 {ckpt.sha256[:12]}…)"))
        loaded = ", ".join(KIND_NAMES[k] for k in self.checkpoints)
        self.facts.setText(_table(facts(ckpt)) + f"<i>loaded: {html.escape(loaded)}</i>")
        self.info.setText("<br>".join(f"<b>{html.escape(k)}</b>: {_breakable(v)}" for k, v in rows))
        self.details_button.setEnabled(True)
        if announce:
            self.loaded.emit(ckpt)
        return ckpt
