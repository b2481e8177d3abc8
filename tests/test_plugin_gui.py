import numpy as np
import pytest

pytest.importorskip("napari")
pytestmark = pytest.mark.gui


def test_sample_data_opens_in_viewer(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-lsdebm", "phantom_pair")
    names = [layer.name for layer in viewer.layers]
    assert names == ["HQ (L3)", "LQ thick-slice (L3)", "parts (L3)"]
    hq = viewer.layers["HQ (L3)"]
    assert hq.data.shape == (64, 64, 64) and hq.data.max() == 1
    np.testing.assert_allclose(hq.scale, (2.0, 2.0, 2.0))
    assert "affine" in hq.metadata


def test_reader_and_writer_keep_affine(make_napari_viewer, tmp_path):
    from lsdebm.data.nifti import read_volume, write_volume
    from lsdebm.data.phantoms import make_vertebra

    phantom = make_vertebra("L1", 0, 32, 4.0)
    source = write_volume(tmp_path / "hq.nii.gz", phantom.mask, phantom.affine)
    viewer = make_napari_viewer()
    layers = viewer.open(str(source), plugin="napari-lsdebm")
    assert layers[0].__class__.__name__ == "Labels"
    np.testing.assert_allclose(layers[0].scale, (4.0, 4.0, 4.0))
    saved = tmp_path / "saved.nii.gz"
    layers[0].save(str(saved), plugin="napari-lsdebm")
    volume = read_volume(saved)
    np.testing.assert_allclose(volume.affine, phantom.affine)
    assert np.array_equal(volume.data, phantom.mask)
