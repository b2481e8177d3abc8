"""The explorer and Compare refine a layer whose thick slices are oblique to its grid on their own slab
grid, as ``lsdebm reconstruct`` does (run under xvfb-run)."""
import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui

from test_explorer_gui import RUN_TIMEOUT_MS, docked  # noqa: E402
from test_tilted_slabs import thick_slices  # noqa: E402


@pytest.fixture(scope="module")
def tilted_case():
    """A real L3 of a validation subject at 1 mm (truth) and its 5 mm slabs tilted by 15°, on the truth's grid."""
    from lsdebm.data.real import isotropic, load_real_masks

    m = load_real_masks(split="val", levels=("L3",))[0]
    mask, affine = isotropic(m.mask, m.affine, 1.0, 12.0)
    return mask, thick_slices(mask, 15.0), affine


def add_pair(viewer, case):
    mask, lq, affine = case
    spacing = tuple(np.linalg.norm(affine[:3, :3], axis=0))
    common = {"scale": spacing, "translate": tuple(affine[:3, 3]), "metadata": {"affine": affine}}
    viewer.add_labels(mask.astype(np.uint8), name="truth", **common)
    return viewer.add_labels(lq, name="tilted slabs", **common)


def test_explorer_runs_a_tilted_layer_on_its_slab_grid(make_napari_viewer, qtbot, tilted_case):
    from lsdebm.evaluation.metrics import dice

    viewer, w = docked(make_napari_viewer())
    source = add_pair(viewer, tilted_case)
    w.input_combo.setCurrentText(source.name)
    w.run_panel.K.setValue(2)
    w.run_panel.run_button.click()
    assert w.worker is not None, w.status.text()
    qtbot.waitUntil(lambda: "slabs tilted 15° to the grid" in w.status.text(), timeout=RUN_TIMEOUT_MS)  # prepared
    qtbot.waitUntil(lambda: w.worker is None, timeout=RUN_TIMEOUT_MS)
    assert w.layer is not None, w.status.text()
    assert "frames" in w.status.text() and "slabs tilted 15° to the grid" in w.status.text()  # said after the run too
    result = viewer.layers["LSD-EBM reconstruction (input grid)"]
    truth, lq = tilted_case[0], tilted_case[1]
    assert result.data.shape == lq.shape and np.allclose(result.scale, source.scale)
    assert dice(result.data, truth) > dice(lq, truth) + 0.01  # the raw model paste, no output step, before


def test_compare_says_it_refined_a_tilted_layer_on_its_slab_grid(make_napari_viewer, qtbot, tilted_case):
    from napari_lsdebm.widgets.compare import CompareWidget

    viewer = make_napari_viewer()
    source = add_pair(viewer, tilted_case)
    widget = CompareWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.input_combo.set_layer(source)
    widget.reference_combo.set_layer(viewer.layers["truth"])
    widget.run_button.click()
    qtbot.waitUntil(lambda: widget.comparison is not None and widget.worker is None, timeout=RUN_TIMEOUT_MS)
    assert "slabs tilted 15° to the grid" in widget.status.text()
    results = widget.comparison.by_key()
    assert results["reconnet"].metrics["dsc"] > results["input"].metrics["dsc"] + 0.01
