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


def test_files_of_one_scan_open_in_their_scanner_positions(make_napari_viewer):
    """L3 and L4 of one VerSe scan are two crops 29 mm apart along the spine (axes permuted and flipped
    against the scanner's): in the viewer too, not piled up at the origin; each voxel's centre is where the
    affine puts it, seen along the volume's axes; a saved layer keeps the file's affine exactly."""
    from lsdebm.data.nifti import read_volume
    from lsdebm.realdata import DATA_DIR

    viewer = make_napari_viewer()
    paths = [DATA_DIR / "verse" / f"{level}_verse009.nii.gz" for level in ("L3", "L4")]
    layers = [viewer.open(str(path), plugin="napari-lsdebm")[0] for path in paths]
    centres = []
    for layer, path in zip(layers, paths):
        volume = read_volume(path)
        index = np.argwhere(volume.data > 0).mean(axis=0)
        world = volume.affine[:3, :3] @ index + volume.affine[:3, 3]
        directions = volume.affine[:3, :3] / np.linalg.norm(volume.affine[:3, :3], axis=0)
        np.testing.assert_allclose(layer.data_to_world(index), np.linalg.solve(directions, world), atol=1e-6)
        centres.append((np.asarray(layer.data_to_world(index)), world))
    (shown_l3, world_l3), (shown_l4, world_l4) = centres
    assert np.linalg.norm(shown_l3 - shown_l4) == pytest.approx(np.linalg.norm(world_l3 - world_l4))
    assert np.linalg.norm(shown_l3 - shown_l4) > 20  # about one vertebra apart


def test_real_sample_opens_with_attribution(make_napari_viewer):
    from napari_lsdebm.sample_data import REAL_ATTRIBUTION

    viewer = make_napari_viewer()
    viewer.open_sample("napari-lsdebm", "real_pair")
    layers = {layer.metadata["role"]: layer for layer in viewer.layers}
    assert set(layers) == {"input", "truth"} and len(viewer.layers) == 2
    lq, gt = layers["input"], layers["truth"]
    assert lq.__class__.__name__ == gt.__class__.__name__ == "Labels"
    assert lq.visible and not gt.visible
    for layer in (lq, gt):
        np.testing.assert_allclose(layer.scale, (1.0, 1.0, 1.0))
        assert layer.metadata["attribution"] == REAL_ATTRIBUTION
        assert "VerSe 2019" in layer.name and "CC BY-SA 4.0" in layer.name
        np.testing.assert_allclose(np.linalg.norm(layer.metadata["affine"][:3, :3], axis=0), 1.0)
    assert lq.data.shape == gt.data.shape and gt.data.max() == 1 == lq.data.max()
    differ = np.count_nonzero(np.asarray(lq.data) != np.asarray(gt.data))
    assert 0.02 * gt.data.sum() < differ < 0.5 * gt.data.sum()
