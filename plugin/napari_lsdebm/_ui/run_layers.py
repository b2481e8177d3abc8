"""Which layers each explorer run added, and what the layer list looked like before a run.

A new run replaces the previous run's layers unless the person ticks "Keep previous runs", so
repeated runs neither pile up "… [1]" layers nor keep old decoders and prefetchers busy (removing
a trajectory layer stops them, see the explorer's ``_on_removed``). While a run samples, the
previous results are hidden so the live preview is not drawn over them; when the run is
cancelled or fails, :meth:`RunLayers.restore` puts every layer's visibility back as it was
when Run was clicked.
"""
from __future__ import annotations

from napari_lsdebm._ui.trajectory_layer import real_layer


class RunLayers:
    """Bookkeeping of the layers of the explorer's runs in one viewer."""

    def __init__(self, viewer) -> None:
        self.viewer = viewer
        self.runs: list[list] = []  # layers added by each finished run, oldest first
        self._before: list[tuple] = []  # (layer, visible) of every layer when Run was clicked

    def begin(self) -> None:
        """Remember every layer's visibility and hide the previous runs' layers (Run was clicked)."""
        self._before = [(layer, layer.visible) for layer in self.viewer.layers]
        for layer in self.layers():
            layer.visible = False

    @property
    def active(self) -> bool:
        """True between :meth:`begin` and the run's end (its result shown, or :meth:`restore`)."""
        return bool(self._before)

    def restore(self, source=None) -> None:
        """Put back the visibility of every layer as it was at :meth:`begin` (cancelled or failed run).

        With no earlier result on screen, the input layer ``source`` is shown (the run had hidden it).
        """
        for layer, visible in self._before:
            if layer in self.viewer.layers:
                layer.visible = visible
        self._before = []
        if source is not None and source in self.viewer.layers and not any(x.visible for x in self.layers()):
            source.visible = True

    def replace(self, keep: bool, also: list | tuple = ()) -> None:
        """Before a finished run's layers are added: remove the previous runs' layers unless ``keep``,
        and the layers ``also`` (e.g. the live preview), all in one batch."""
        self._before = []
        old = [] if keep else list(reversed(self.layers()))
        gone = [layer for layer in old + list(also) if layer in self.viewer.layers]
        if gone:
            with self.viewer.layers.batched_update():  # one scene-graph cleanup (napari gc.collects per removal)
                for layer in gone:
                    self.viewer.layers.remove(layer)
        if not keep:
            self.runs = []

    def record(self, before: list) -> list:
        """Record the layers added since ``before`` (the layer list before the result was shown)."""
        known = {id(real_layer(layer)) for layer in before}
        added = [real_layer(layer) for layer in self.viewer.layers if id(real_layer(layer)) not in known]
        self.runs.append(added)
        return added

    def layers(self) -> list:
        """Every layer of the recorded runs still in the viewer, oldest first."""
        return [layer for run in self.runs for layer in run if layer in self.viewer.layers]
