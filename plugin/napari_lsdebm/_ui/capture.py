"""Screenshots of one layer stepped along its t (and k) sliders, for animation exports.

napari can only screenshot on the GUI thread, so :class:`AnimationJob` captures a few frames at
a time there, with a zero-delay QTimer between chunks (the UI keeps painting and answering the
Cancel button), and then encodes the frames on a worker thread through
:func:`napari_lsdebm._ui.jobs.start_job`. While capturing, every other layer is hidden (so the
file shows exactly the chosen layer, or its mesh when the explorer draws it as a Surface) and
the sliders, visibility and decoding mode are restored afterwards. A hidden or removed layer is
refused with a one-line message; a cancelled export writes nothing.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
from qtpy.QtCore import QObject, QTimer
from qtpy.QtWidgets import QApplication

from lsdebm.errors import InputError
from lsdebm.review.animation import grid_order, with_progress
from napari_lsdebm._ui.jobs import Outcome, error_text, start_job
from napari_lsdebm._ui.trajectory_surface import SURFACE_OF_KEY

SECONDS_PER_FRAME = {"value": 0.3}  # a first guess for software OpenGL; replaced by each capture's own rate
CHUNK_S = 0.1  # GUI time per chunk before the event loop runs again


def time_axes(viewer, layer) -> tuple[int, int | None]:
    """World axes (t, k) of a layer: its ``t``/``k`` axis labels, else its first (two) leading axes."""
    labels = list(getattr(layer, "axis_labels", ()) or ())
    offset = viewer.dims.ndim - layer.ndim
    spatial = viewer.dims.ndisplay
    if "t" in labels:
        return offset + labels.index("t"), (offset + labels.index("k") if "k" in labels else None)
    lead = layer.ndim - spatial
    if lead < 1:
        raise InputError(f"layer {layer.name!r} has no axis to animate (ndim {layer.ndim})")
    return offset, (offset + 1 if lead >= 2 else None)


def companions(viewer, layer) -> list:
    """Layers that draw ``layer`` (the explorer's mesh of a trajectory layer)."""
    return [lay for lay in viewer.layers if lay.metadata.get(SURFACE_OF_KEY) == layer.name]


def is_shown(viewer, layer) -> bool:
    """Whether the canvas draws ``layer``: it, or a companion drawing it, is visible."""
    return any(lay.visible for lay in [layer, *companions(viewer, layer)])


def shown_layers(viewer, layer) -> list:
    """The layers a capture of ``layer`` keeps visible; refuses a layer that is missing or hidden."""
    if layer is None or layer not in viewer.layers:
        name = getattr(layer, "name", None)
        raise InputError(f"layer {name!r} is no longer in the viewer; choose another" if name
                         else "choose a trajectory layer to animate")
    shown = [lay for lay in [layer, *companions(viewer, layer)] if lay.visible]
    if not shown:
        raise InputError(f"layer {layer.name!r} is hidden; show it (eye icon in the layer list) to export "
                         "its animation")
    return shown


def frame_order(viewer, layer, along: str) -> list[tuple[int, int]]:
    """The (t, k) slider positions an export of ``layer`` along ``along`` visits."""
    t_axis, k_axis = time_axes(viewer, layer)
    n_t = int(viewer.dims.nsteps[t_axis])
    n_k = int(viewer.dims.nsteps[k_axis]) if k_axis is not None else 1
    step = viewer.dims.current_step
    return grid_order(n_t, n_k, along if k_axis is not None else "t", step[t_axis],
                      step[k_axis] if k_axis is not None else 0)


class FrameGrabber:
    """Steps one layer's t (and k) sliders and screenshots the canvas with only that layer shown.

    ``open()`` hides the other layers and makes lazy frames decode synchronously; ``grab()`` takes
    the next frame (False when all are taken); ``close()`` restores everything (always call it).
    """

    def __init__(self, viewer, layer, along: str) -> None:
        self.viewer, self.layer = viewer, layer
        self.shown = shown_layers(viewer, layer)
        self.axes = time_axes(viewer, layer)
        self.order = frame_order(viewer, layer, along)
        self.frames: list[np.ndarray] = []
        self._size = None
        self._start = tuple(viewer.dims.current_step)
        self._visible = {id(lay): (lay, lay.visible) for lay in viewer.layers}
        self._blocking = bool(getattr(layer.data, "nonblocking", False))

    @property
    def captured(self) -> list[str]:
        """Names of the layers visible in the frames."""
        return [lay.name for lay in self.shown]

    def open(self) -> None:
        for lay, _ in self._visible.values():
            lay.visible = any(lay is s for s in self.shown)
        if self._blocking:
            self.layer.data.nonblocking = False  # decode synchronously: every frame shows its own step

    def grab(self) -> bool:
        """Take the next frame; False once every frame is taken."""
        if len(self.frames) >= len(self.order):
            return False
        if self.layer not in self.viewer.layers:
            raise InputError(f"layer {self.layer.name!r} was removed during the export")
        t, k = self.order[len(self.frames)]
        step = list(self.viewer.dims.current_step)
        step[self.axes[0]] = t
        if self.axes[1] is not None:
            step[self.axes[1]] = k
        self.viewer.dims.current_step = tuple(step)
        QApplication.processEvents()
        shot = self.viewer.screenshot(size=self._size, canvas_only=True, flash=False)
        self._size = self._size or shot.shape[:2]  # every frame at the first frame's size
        self.frames.append(with_progress(shot, (len(self.frames) + 1) / len(self.order)))
        return True

    def close(self) -> None:
        if self._blocking:
            self.layer.data.nonblocking = True
        for lay, visible in self._visible.values():
            if lay in self.viewer.layers:
                lay.visible = visible
        self.viewer.dims.current_step = self._start


def capture_frames(viewer, layer, along: str, progress: Callable[[int, int], None] | None = None) -> list:
    """All frames at once on the GUI thread (scripts and tests; the dock uses :class:`AnimationJob`)."""
    grabber = FrameGrabber(viewer, layer, along)
    grabber.open()
    try:
        while grabber.grab():
            if progress is not None:
                progress(len(grabber.frames), len(grabber.order))
    finally:
        grabber.close()
    return grabber.frames


class AnimationJob(QObject):
    """Capture in chunks on the GUI thread, then encode on a worker thread; cancellable throughout.

    ``write(frames, grabber, job)`` runs on the worker thread and returns the output (it should
    pass ``job.cancelled`` to the encoder). ``on_progress(stage, done, total)`` and
    ``on_done(Outcome)`` are called on the GUI thread; ``on_done`` exactly once.
    """

    def __init__(self, viewer, layer, along: str, write, on_progress, on_done) -> None:
        super().__init__()
        self.grabber = FrameGrabber(viewer, layer, along)  # refuses a hidden or missing layer
        self.write, self.on_progress, self.on_done = write, on_progress, on_done
        self.job = None  # the encoding Job
        self._cancelled = False
        self._timer = QTimer(self, singleShot=True, interval=0)
        self._timer.timeout.connect(self._chunk)
        self._t0 = 0.0

    def start(self) -> AnimationJob:
        self.grabber.open()
        self._t0 = time.monotonic()
        self._timer.start()
        return self

    def cancel(self) -> None:
        """Stop capturing (before the next chunk) or encoding; nothing is written."""
        self._cancelled = True
        if self.job is not None:
            self.job.cancel()

    def _chunk(self) -> None:
        if self._cancelled:
            return self._end(Outcome("cancelled", message="Animation cancelled; nothing was written."))
        try:
            until = time.monotonic() + CHUNK_S
            while time.monotonic() < until and self.grabber.grab():
                pass
        except Exception as exc:  # noqa: BLE001 - a removed layer or a failed screenshot ends the job
            return self._end(Outcome("error", message=error_text(exc)))
        done, total = len(self.grabber.frames), len(self.grabber.order)
        self.on_progress("capturing", done, total)
        if done < total:
            self._timer.start()
            return None
        SECONDS_PER_FRAME["value"] = (time.monotonic() - self._t0) / max(total, 1)
        self.grabber.close()
        self.on_progress("encoding", 0, 1)
        frames, grabber = self.grabber.frames, self.grabber
        self.job = start_job(lambda job: self.write(frames, grabber, job), self._encoded, what="animation export",
                             failed="animation export failed")
        return None

    def _end(self, outcome: Outcome) -> None:
        self.grabber.close()
        self.on_done(outcome)

    def _encoded(self, outcome: Outcome) -> None:
        if outcome.status == "cancelled":
            outcome.message = "Animation cancelled; nothing was written."
        self.job = None
        self.on_done(outcome)
