"""Plots beside the sliders: latent variance per frame (Fig. 5), energy and |grad U| over k.

A matplotlib FigureCanvasQTAgg docked under the canvas. ``set_position(s, k)`` moves the red
cursors (and redraws the Langevin curves when the reverse step changes); clicking the variance
plot asks for frame s, clicking an energy/gradient plot for iteration k (``on_pick``).

Scrubbing must not wait for matplotlib: a full redraw (constrained layout, new Langevin curves)
takes longer than drawing the 3D frame, so it waits until the sliders rest for
``REDRAW_DELAY_MS``, while cursor moves alone are blitted onto the last full drawing at once. A full
drawing for another reason meanwhile (the widget resized) cancels the waiting one: it shows the change.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from lsdebm.explore.plots import draw_langevin, draw_variance, update_langevin
from lsdebm.explore.vocabulary import frame_name, k_number, k_numbers
from lsdebm.sampling import Trajectory

REDRAW_DELAY_MS = 150  # full redraws wait until the sliders rest this long (the 3D frame draws first)
MIN_CANVAS_HEIGHT = 110  # px: with the caption line and the dock title the plots dock shrinks to ~160 px


class TrajectoryPlots(QWidget):
    """Variance / energy / gradient-norm plots of one trajectory, with cursors."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.figure = Figure(figsize=(9, 2.4), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(MIN_CANVAS_HEIGHT)  # shrinks so a 1280x800 window keeps its size
        self.message = QLabel("Run the explorer or open a trajectory to see its plots.")
        self.message.setWordWrap(True)
        self.where = QLabel("")  # the sliders in words: diffusion step t and Langevin iteration k
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(self.message)
        layout.addWidget(self.where)
        layout.addWidget(self.canvas, 1)
        self.traj: Trajectory | None = None
        self.position = (0, 0)
        self.on_pick: Callable[[str, int], None] | None = None  # ("t", frame) or ("k", k index)
        self.ax_var = self.ax_energy = self.ax_grad = None
        self._t_cursor = self._k_cursors = None
        self._langevin_frame: int | None = None
        self.canvas.mpl_connect("button_press_event", self._clicked)
        self.canvas.mpl_connect("draw_event", self._on_draw)
        self._background = None  # the last full drawing without cursors, for blitting
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(REDRAW_DELAY_MS)
        self._redraw.timeout.connect(self.canvas.draw_idle)

    def set_trajectory(self, traj: Trajectory | None, message: str = "") -> None:
        """Draw the plots of ``traj`` (None clears them); ``message`` is shown above."""
        self.traj = traj
        self.message.setText(message)
        self.message.setVisible(bool(message))
        self.figure.clear()
        self._langevin_frame = self._background = None
        self.where.setText("")
        if traj is None:  # drawn after the delay: a new run's trajectory usually follows at once, drawn once
            self._redraw.start()
            return
        self.ax_var, self.ax_energy, self.ax_grad = self.figure.subplots(1, 3, width_ratios=(2, 1, 1))
        self._t_cursor = draw_variance(self.ax_var, traj)
        self.set_position(*self.position, force=True)

    def set_position(self, s: int, k: int, force: bool = False) -> None:
        """Move the cursors to frame ``s`` and recorded iteration index ``k``."""
        self.position = (int(s), int(k))
        traj = self.traj
        if traj is None:
            return
        s = int(np.clip(s, 0, traj.n_frames - 1))
        k = int(np.clip(k, 0, max(traj.n_k - 1, 0)))
        self._t_cursor.set_xdata([s, s])
        redraw = force or self._langevin_reframe(s)
        if redraw:
            if force or not update_langevin(self.ax_energy, self.ax_grad, traj, s, self._langevin_frame):
                for ax in (self.ax_energy, self.ax_grad):
                    ax.clear()
                self._k_cursors = draw_langevin(self.ax_energy, self.ax_grad, traj, s)
            self._langevin_frame = s
        kv = k_number(traj, k)  # the Langevin iteration counted from 0 (lsdebm.explore.vocabulary)
        self.where.setText(f"slider t (frame {s} of {traj.n_frames - 1}) = {frame_name(traj, s)}"
                           + (f"; slider k = {k} is Langevin iteration k = {kv} (from 0)" if traj.n_k else ""))
        for cursor in self._k_cursors:
            cursor.set_xdata([kv, kv])
        for cursor in self._cursors():
            cursor.set_animated(True)  # drawn by _on_draw / _blit, over the background
        if redraw or self._background is None:
            self._background = None
            self._redraw.start()
        else:
            self._blit()

    def _cursors(self) -> list:
        return [c for c in [self._t_cursor, *(self._k_cursors or [])] if c is not None]

    def _on_draw(self, event=None) -> None:
        """After a full drawing: keep it as the blit background and draw the cursors over it."""
        self._redraw.stop()  # this drawing shows the latest change: the one waiting for the sliders is not needed
        if self.traj is None:
            return
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for cursor in self._cursors():
            cursor.axes.draw_artist(cursor)

    def _blit(self) -> None:
        """Draw the cursors over the last full drawing; the widget repaints with the next window update.

        (``canvas.blit`` would repaint it at once, and with it the whole window, 3D canvas included.)
        """
        self.canvas.restore_region(self._background)
        for cursor in self._cursors():
            cursor.axes.draw_artist(cursor)
        self.canvas.update()

    def cursor_positions(self) -> tuple[float, float]:
        """(frame index, Langevin iteration k from 0) under the cursors (tests read it)."""
        return float(self._t_cursor.get_xdata()[0]), float(self._k_cursors[0].get_xdata()[0])

    def _langevin_reframe(self, s: int) -> bool:
        """True when the Langevin curves shown are not those of frame ``s``."""
        if self._langevin_frame is None:
            return True
        return self.traj.frame_info(s) != self.traj.frame_info(self._langevin_frame)

    def _clicked(self, event) -> None:
        if self.traj is None or event.xdata is None or self.on_pick is None:
            return
        if event.inaxes is self.ax_var:
            self.on_pick("t", int(np.clip(round(event.xdata), 0, self.traj.n_frames - 1)))
        elif event.inaxes in (self.ax_energy, self.ax_grad) and self.traj.n_k:
            self.on_pick("k", int(np.argmin(np.abs(k_numbers(self.traj) - event.xdata))))
