"""The trajectory as a napari layer whose extra dims are labelled ``t`` and ``k``.

The layer's data is a :class:`lsdebm.explore.TrajectoryVolumes` (lazy, decoded on demand), so
napari's own sliders scrub frames (forward diffusion, then every reverse step) and recorded
Langevin iterations. It renders as an iso-surface at p = 0.5 with physical scale. Without a
checkpoint to decode, a trajectory is shown as its latents (a (t, k, latent) image) instead.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, Signal

from lsdebm.explore import TrajectoryVolumes
from lsdebm.sampling import Trajectory

AXIS_LABELS = ("t", "k", "z", "y", "x")
META_KEY = "lsdebm_trajectory"
WAIT_S = 0.15  # a slider move waits this long for its frame before showing the previous one
PREFETCH_DELAY_S = 0.15  # neighbours are decoded after the frame under the slider has been drawn
MESSAGE_KEY = "lsdebm_message"
# metadata of a trajectory layer that a run added hidden for its mesh to draw it (napari then never slices it):
# the (t, k) position it opens at; the explorer's TrajectorySurface shows the mesh of that frame and removes the key
OPENS_AT_KEY = "lsdebm_opens_at"


def trajectory_layer_data(volumes: TrajectoryVolumes, spacing: float, name: str) -> tuple:
    """LayerDataTuple of a decoded-trajectory Image layer (iso-surface, t/k dims, mm scale)."""
    kwargs = {"name": name, "scale": (1.0, 1.0, *(float(spacing),) * 3), "axis_labels": AXIS_LABELS,
              "rendering": "iso", "iso_threshold": 0.5, "contrast_limits": (0.0, 1.0), "colormap": "bone",
              "metadata": {META_KEY: volumes.traj}}
    return (volumes, kwargs, "image")


def latents_layer_data(traj: Trajectory, name: str, message: str) -> tuple:
    """LayerDataTuple showing the latents themselves, (t, k, latent), when nothing can decode them."""
    data = np.stack([np.stack([traj.latent(s, k) for k in range(max(traj.n_k, 1))])
                     for s in range(traj.n_frames)]).astype(np.float32)
    lim = float(np.abs(data).max()) or 1.0
    kwargs = {"name": name, "axis_labels": ("t", "k", "latent"), "colormap": "PiYG",
              "contrast_limits": (-lim, lim), "metadata": {META_KEY: traj, MESSAGE_KEY: message}}
    return (data, kwargs, "image")


def real_layer(layer):
    """The layer itself: napari hands plugin widgets read-guarded proxies (``PublicOnlyProxy``),
    which break identity checks and slow down attribute access."""
    return getattr(layer, "__wrapped__", layer)


def trajectory_of(layer) -> Trajectory | None:
    """The trajectory a layer shows (decoded or latents-only), else None."""
    layer = real_layer(layer)
    if isinstance(getattr(layer, "data", None), TrajectoryVolumes):
        return layer.data.traj
    traj = layer.metadata.get(META_KEY) if hasattr(layer, "metadata") else None
    return traj if isinstance(traj, Trajectory) else None


def leading_axes(viewer, layer_ndim: int = 4) -> tuple[int, int]:
    """World axes of the first two dims (t, k) of ``layer_ndim``-dim layers: napari lines layers up by their
    last dims, so beside a 5-dim trajectory the teaching docks' 4-dim (t, k, y, x) layers start at axis 1."""
    offset = max(viewer.dims.ndim - layer_ndim, 0)
    return offset, offset + 1


def label_axes(viewer, labels: tuple[str, ...]) -> None:
    """Name the last ``len(labels)`` world axes (the others keep their names)."""
    names = list(viewer.dims.axis_labels)
    names[len(names) - len(labels):] = labels
    viewer.dims.axis_labels = tuple(names)


def set_leading(viewer, t: int, k: int, layer_ndim: int = 4) -> None:
    """Move the t and k sliders of ``layer_ndim``-dim layers (:func:`leading_axes`)."""
    ta, ka = leading_axes(viewer, layer_ndim)
    step = list(viewer.dims.current_step)
    step[ta], step[ka] = t, k
    viewer.dims.current_step = tuple(step)


def slider_axes(viewer, layer) -> tuple[int, int] | None:
    """World axes of the layer's ``t`` and ``k`` dims in ``viewer.dims``, or None."""
    labels = list(layer.axis_labels)
    if "t" not in labels or "k" not in labels:
        return None
    offset = viewer.dims.ndim - layer.ndim
    return offset + labels.index("t"), offset + labels.index("k")


class FrameRefresher(QObject):
    """Makes a layer's TrajectoryVolumes non-blocking and refreshes the layer when a frame is ready.

    ``TrajectoryVolumes.on_ready`` fires on the decode thread; the signal queues it onto the
    GUI thread, where the layer re-slices and now finds the frame in the cache.
    """

    ready = Signal(object)

    def __init__(self, layer) -> None:
        super().__init__()
        self.layer = real_layer(layer)
        self.volumes = self.layer.data
        self.frames_shown = 0
        self.ready.connect(self._on_ready)
        self._emit = self.ready.emit
        self.volumes.on_ready = self._emit
        self.volumes.wait_s = WAIT_S
        self.volumes.prefetch_delay_s = PREFETCH_DELAY_S
        self.volumes.nonblocking = True

    def _on_ready(self, key) -> None:
        if key == self.volumes.wanted and key != self.volumes.last_key:  # not already handed over
            self.frames_shown += 1
            self.layer.refresh()

    def release(self) -> None:
        """Stop refreshing the layer; its frames are decoded when napari asks (the decoder stays for a new owner)."""
        if self.volumes.on_ready is self._emit:  # not already taken over by another refresher
            self.volumes.on_ready = None
            self.volumes.nonblocking = False

    def detach(self) -> None:
        """Stop refreshing and stop the decoder (the layer was removed)."""
        self.release()
        self.volumes.close()
