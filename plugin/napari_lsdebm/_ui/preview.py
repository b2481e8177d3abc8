"""Live preview while a run samples: the newest latent decoded on a background thread, throttled.

Decoding competes with the sampler for the CPU, so a new preview starts only when the previous
one is done and at least ``max(0.5 s, 3 x the last decode time)`` has passed (the first one 0.5 s
after the start, so a run that ends sooner, such as a VAE, decodes no preview at all). With
``render="mesh"`` the preview is a Surface layer whose iso-surface is made on the same thread.

At interpreter exit every preview still open is closed (its decode waited for, at most
:data:`napari_lsdebm._ui.jobs.EXIT_WAIT_S`) before PyQt's clean-up deletes the ``LivePreview``: a decode
that ended after that emitted into a deleted object (a script leaving Python mid-run, the explorer docked).
"""
from __future__ import annotations

import atexit
import time
import weakref

import numpy as np
from qtpy.QtCore import QObject, Signal

from lsdebm.explore import make_decoder
from lsdebm.explore.background import JobQueue
from lsdebm.review.surface import empty_mesh
from napari_lsdebm._ui.jobs import EXIT_WAIT_S
from napari_lsdebm._ui.placement import follow_display, frame_centre, placed_layer
from napari_lsdebm._ui.surface_layer import add_mesh_layer, set_mesh, volume_mesh

LAYER_NAME = "live preview"
PREVIEW_KEY = "lsdebm_live_preview"  # metadata of the preview layer: never an input (known while it is inserted)
_OPEN: weakref.WeakSet = weakref.WeakSet()  # previews whose thread may still decode


class LivePreview(QObject):
    """Owns the ``live preview`` layer of one run (an iso Image layer, or a Surface layer)."""

    ready = Signal(object)

    def __init__(self, viewer) -> None:
        super().__init__()
        self.viewer, self.layer = viewer, None
        self.jobs = JobQueue("lsdebm-preview")
        self._decode = None
        self._last = self._cost = 0.0
        self._spacing = None  # voxel spacing when the preview is a mesh
        self.ready.connect(self._show)
        _OPEN.add(self)

    def start(self, model, grid: int, spacing: float, placement, render: str = "volume") -> None:
        """Add an empty iso-surface layer on the model grid and decode with ``model`` from now on.

        ``placement`` puts the model frame on the input (:mod:`napari_lsdebm._ui.placement`); ``render`` is
        ``mesh`` (a Surface layer) or ``volume`` (an iso-rendered Image layer).
        """
        # the throttle counts from the start: a run that ends within 0.5 s (a VAE) is not slowed by a preview
        self._decode, self._last, self._cost = make_decoder(model), time.monotonic(), 0.0
        self._spacing = (float(spacing),) * 3 if render == "mesh" else None
        where = placed_layer(placement, 3, frame_centre(grid, spacing))
        meta = {**where.pop("metadata", {}), PREVIEW_KEY: True}
        follow_display(self.viewer)
        if render == "mesh":
            self.layer = add_mesh_layer(self.viewer, empty_mesh(), LAYER_NAME, where or None, meta)
            return
        self.layer = self.viewer.add_image(np.zeros((grid,) * 3, np.float32), name=LAYER_NAME,
                                           scale=(spacing,) * 3, **where, metadata=meta, rendering="iso",
                                           iso_threshold=0.5, contrast_limits=(0, 1), colormap="bone")

    def update(self, z: np.ndarray | None) -> None:
        """Queue a decode of the first chain's latent ``z`` (batch, latent) unless throttled."""
        now = time.monotonic()
        if z is None or self._decode is None or now - self._last < max(0.5, 3 * self._cost) or not self.jobs.idle():
            return
        self._last, z = now, z[:1]
        self.jobs.submit(lambda: self._run(z), urgent=True)

    def stop(self, remove: bool = True):
        """Stop previewing and remove the layer (``remove=False``: return it for the caller to remove,
        e.g. together with other layers in one batch); a decode still running is dropped when it finishes."""
        self._decode = None
        layer, self.layer = self.layer, None
        if remove and layer is not None and layer in self.viewer.layers:
            self.viewer.layers.remove(layer)
        return None if remove else layer

    def close(self, timeout: float = 0.0) -> bool:
        """Decode no more (its dock was closed): the thread ends after a decode still running, waited for up to
        ``timeout`` seconds (0: not at all, as on the GUI thread); True once it has ended."""
        self._decode = None
        return self.jobs.close(timeout)

    def _run(self, z) -> None:
        decode = self._decode
        if decode is None:
            return
        start = time.perf_counter()
        vol = decode(z)[0]
        spacing = self._spacing
        shown = vol if spacing is None else volume_mesh(vol, spacing)  # meshed here, off the GUI thread
        self._cost = time.perf_counter() - start
        self.ready.emit(shown)

    def _show(self, shown) -> None:
        if self.layer is None or self.layer not in self.viewer.layers:
            return
        if isinstance(shown, np.ndarray):
            self.layer.data = shown
        elif self.layer.__class__.__name__ == "Surface":
            set_mesh(self.layer, shown)


def close_previews(timeout: float = EXIT_WAIT_S) -> None:
    """Close every preview still open, waiting up to ``timeout`` seconds in all for their threads."""
    end = time.monotonic() + timeout
    for preview in list(_OPEN):
        preview.close(max(0.0, end - time.monotonic()))


atexit.register(close_previews)  # registered after PyQt's exit clean-up (QtCore is imported above): runs first
