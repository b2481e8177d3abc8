"""What the colours and the canvas mean: a TP/FP/FN legend, colour bars with units, a canvas note.

napari has no legend widget, so the overlap legend is a small coloured label in the dock; colour
bars are napari's own per-layer colour-bar overlay (values on the canvas) plus a matplotlib bar in
the dock that carries the quantity and its unit; the canvas note is napari's text overlay
(``viewer.canvas.overlays.text``, ``viewer.text_overlay`` before napari 0.9).
"""
from __future__ import annotations

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from lsdebm.explore.vocabulary import SEPARATOR
from lsdebm.review.overlap import FN, FP, OVERLAP_CLASSES, OVERLAP_COLORS, OVERLAP_DESCRIPTIONS, TP, hex_color


def canvas_overlay(viewer, name: str):
    """The canvas overlay ``name`` (``text``, ``axes``, ``scale_bar``) of any napari version."""
    canvas = getattr(viewer, "canvas", None)
    overlays = getattr(canvas, "overlays", None)
    if overlays is not None and name in overlays:
        return overlays[name]
    return getattr(viewer, {"text": "text_overlay", "axes": "axes", "scale_bar": "scale_bar"}[name])


NOTE_FONT_SIZE = 10  # canvas note size: a 44-character line fits a ~400 px canvas (1280 px window, two docks open)
NOTE_LINE_CHARS = 44


def wrap_note(text: str, width: int = NOTE_LINE_CHARS) -> str:
    """``text`` in lines of at most ``width`` characters where it can, broken after its " · " separators first.

    Only single spaces become line breaks, so ``wrap_note(t).replace("\\n", " ") == t``. A piece
    between separators longer than ``width`` is broken between words; a longer word stays whole.
    """
    pieces = text.split(SEPARATOR)
    pieces = [p + SEPARATOR.rstrip() for p in pieces[:-1]] + pieces[-1:]  # "a · b" -> "a ·", "b"
    words = [w for p in pieces for w in ([p] if len(p) <= width else p.split(" "))]
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + 1 + len(word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return "\n".join(lines)


def show_canvas_note(viewer, text: str, font_size: float = NOTE_FONT_SIZE) -> None:
    """Write ``text`` in the canvas's top-left corner, wrapped to fit (an empty text hides the note)."""
    note = canvas_overlay(viewer, "text")
    note.text = wrap_note(text)
    note.font_size = font_size
    note.position = "top_left"
    note.visible = bool(text)


def canvas_note(viewer) -> str:
    """The note the canvas shows now, as one line ("" when hidden)."""
    note = canvas_overlay(viewer, "text")
    return note.text.replace("\n", " ") if note.visible else ""


class OwnedNote:
    """The canvas note of one dock: it writes its text, and clears the note only while the note is still its
    own (another dock's note, written since, stays)."""

    def __init__(self, viewer) -> None:
        self.viewer, self.text = viewer, ""

    def show(self, text: str) -> None:
        if text or canvas_note(self.viewer) == self.text:
            show_canvas_note(self.viewer, text)
            self.text = canvas_note(self.viewer)


def overlap_rows(counts: dict[str, int] | None = None) -> list[tuple[str, str, tuple, int | None]]:
    """(class, description, RGBA, voxels or None) of TP, FP and FN."""
    return [(OVERLAP_CLASSES[v], OVERLAP_DESCRIPTIONS[v], OVERLAP_COLORS[v],
             None if counts is None else counts.get(OVERLAP_CLASSES[v])) for v in (TP, FP, FN)]


class OverlapLegend(QLabel):
    """TP / FP / FN swatches in the overlap layer's colours, with voxel counts when known."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWordWrap(True)
        self.show_counts(None)

    def show_counts(self, counts: dict[str, int] | None) -> None:
        rows = overlap_rows(counts)
        self.setText("&nbsp;&nbsp;".join(
            f"<span style='color:{hex_color(rgba)}'>■</span> <b>{cls}</b>"
            + ("" if n is None else f" {n:,} voxels") for cls, _, rgba, n in rows))
        self.setToolTip("\n".join(f"{cls}: {desc}" for cls, desc, _, _ in rows))

    def classes(self) -> list[str]:
        """The class names shown (tests read it)."""
        return [cls for cls, _, _, _ in overlap_rows() if f"<b>{cls}</b>" in self.text()]


class ColourBar(QWidget):
    """A horizontal matplotlib colour bar whose label names the quantity and its unit."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(3.2, 0.8), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(64)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.label = ""
        self.limits: tuple[float, float] | None = None
        self.setVisible(False)

    def show_bar(self, cmap, vmin: float, vmax: float, label: str) -> None:
        """Draw ``cmap`` (a matplotlib name or Colormap) from ``vmin`` to ``vmax`` labelled ``label``."""
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize

        self.label, self.limits = label, (float(vmin), float(vmax))
        self.figure.clear()
        ax = self.figure.add_subplot(111)
        bar = self.figure.colorbar(ScalarMappable(Normalize(vmin, vmax), cmap), cax=ax, orientation="horizontal")
        bar.set_label(label, fontsize=8)
        ax.tick_params(labelsize=7)
        self.setVisible(True)
        self.canvas.draw_idle()


def show_layer_colorbar(layer) -> bool:
    """Turn on napari's colour-bar overlay of ``layer`` where this napari has one; True if shown."""
    bar = getattr(layer, "colorbar", None)
    if bar is None or not hasattr(bar, "visible"):
        return False
    if hasattr(bar, "position"):
        bar.position = "bottom_right"  # the canvas note holds the top left and, on a narrow canvas, the top right
    bar.visible = True
    return True


__all__ = ["ColourBar", "OverlapLegend", "OwnedNote", "canvas_note", "canvas_overlay", "overlap_rows",
           "show_canvas_note", "show_layer_colorbar", "wrap_note"]
