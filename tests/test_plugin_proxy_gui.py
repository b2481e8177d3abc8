"""Every dock as the Plugins menu opens it: napari hands it the viewer behind its ``PublicOnlyProxy``, through which
each layer a dock adds or looks up is a new proxy, not the layer in the list (``is`` and ``type()`` fail on it).
Each dock keeps the viewer itself (``napari_lsdebm._ui.docking.dock_viewer``); run under xvfb-run -a."""
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

MANIFEST = Path(__file__).resolve().parents[1] / "plugin" / "napari_lsdebm" / "napari.yaml"
DOCKS = [w["display_name"] for w in yaml.safe_load(MANIFEST.read_text())["contributions"]["widgets"]]
RUN_TIMEOUT_MS = 180_000


@pytest.mark.parametrize("name", DOCKS)
def test_a_dock_from_the_plugins_menu_holds_the_layers_themselves(make_napari_viewer, name):
    """A layer the dock adds, looks up by name or finds selected is the layer in the viewer's list."""
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-lsdebm", name)
    assert widget.viewer is viewer
    added = widget.viewer.add_labels(np.zeros((4, 4, 4), np.uint8), name="added by the dock")
    listed = [layer for layer in viewer.layers if layer.name == "added by the dock"]
    assert listed == [added] and listed[0] is added and type(added).__name__ == "Labels"
    assert widget.viewer.layers["added by the dock"] is added
    assert widget.viewer.layers.selection.active is added


def test_explorer_never_offers_its_live_preview_as_input(make_napari_viewer, qtbot, tiny_ckpts, monkeypatch):
    """In 2D (or rendered as a volume) the live preview is an Image layer; the input picker skips it by identity,
    which napari's proxy broke: the preview was listed as an input while the run sampled, and once it was removed
    a picker left on it fell back to the first layer, the ground truth."""
    from lsdebm.sampling.kernels import switch as fast

    monkeypatch.setitem(fast.STATE, "enabled", False)  # one event per Langevin iteration: the run lasts
    viewer = make_napari_viewer()
    _, w = viewer.window.add_plugin_dock_widget("napari-lsdebm", "LSD-EBM explorer")
    w.open_sample()
    assert w.checkpoint_panel.load(tiny_ckpts["lsdebm"]) is not None, w.checkpoint_panel.error.text()
    w.view3d_box.setChecked(False)
    w.run_panel.K.setValue(100_000)
    w.run_panel.depth.setValue(1)
    w.run()
    qtbot.waitUntil(lambda: "live preview" in viewer.layers, timeout=RUN_TIMEOUT_MS)
    offered = [layer.name for layer in w.input_combo.layers()]
    w.cancel()
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    assert offered == ["HQ (L3)", "LQ thick-slice (L3)", "parts (L3)"]
    assert w.input_combo.currentText() == "LQ thick-slice (L3)"
