import time

import numpy as np
import pytest

from lsdebm.data.phantoms import LEVELS, PART_LABELS, grid_affine, make_vertebra
from lsdebm.errors import InputError


def test_deterministic_by_seed():
    a, b = make_vertebra("L2", 7), make_vertebra("L2", 7)
    assert np.array_equal(a.parts, b.parts) and a.params == b.params
    assert not np.array_equal(a.mask, make_vertebra("L2", 8).mask)


@pytest.mark.parametrize("level", LEVELS)
def test_all_parts_present(level):
    phantom = make_vertebra(level, 1)
    assert phantom.mask.dtype == np.uint8 and set(np.unique(phantom.mask)) == {0, 1}
    for label in PART_LABELS:
        assert (phantom.parts == label).sum() > 20, PART_LABELS[label]
    assert np.array_equal(phantom.mask, (phantom.parts > 0).astype(np.uint8))


def test_levels_grow_and_posterior_elements_are_thin():
    volumes = [make_vertebra(level, 0).mask.sum() for level in LEVELS]
    assert volumes[-1] > volumes[0]
    phantom = make_vertebra("L3", 0, size=128, spacing=1.0)
    for label in (3, 4, 5):  # laminae, spinous, transverse: thin enough to vanish after erosion
        from scipy import ndimage

        part = phantom.parts == label
        eroded = ndimage.binary_erosion(part, iterations=5)
        assert eroded.sum() < 0.1 * part.sum(), PART_LABELS[label]


def test_spacing_and_grid_respected():
    coarse, fine = make_vertebra("L4", 3, 64, 2.0), make_vertebra("L4", 3, 128, 1.0)
    assert coarse.mask.shape == (64,) * 3 and fine.mask.shape == (128,) * 3
    np.testing.assert_allclose(np.linalg.norm(fine.affine[:3, :3], axis=0), 1.0)
    volume_coarse, volume_fine = coarse.mask.sum() * 8.0, fine.mask.sum() * 1.0
    assert abs(volume_coarse - volume_fine) / volume_fine < 0.08
    centre = np.linalg.inv(grid_affine(64, 2.0)) @ [0, 0, 0, 1]
    np.testing.assert_allclose(centre[:3], 31.5)


def test_bad_level():
    with pytest.raises(InputError, match="L1"):
        make_vertebra("T12", 0)


def test_timing_report(capsys):
    for size, spacing in ((64, 2.0), (128, 1.0)):
        start = time.perf_counter()
        make_vertebra("L3", 0, size, spacing)
        with capsys.disabled():
            print(f"\nphantom {size}^3 at {spacing} mm: {(time.perf_counter() - start) * 1e3:.1f} ms")


def test_overwrite_never_replaces_another_manifest(tmp_path):
    """``phantoms --out DIR --overwrite`` (or ``evaluate --data DIR --phantoms N --overwrite``) wrote its manifest over
    a real-mask manifest.csv in DIR; it replaces only a phantom set's."""
    from lsdebm.data.phantom_set import write_set

    real = tmp_path / "manifest.csv"
    real.write_text("file,level,subject\nL3_a.nii.gz,L3,a\n")
    with pytest.raises(InputError, match=r"manifest.csv is not a phantom set's manifest \(its columns: file, level, "
                                         r"subject\); --overwrite replaces only a phantom set"):
        write_set(tmp_path, 1, 0, size=16, spacing=8.0, overwrite=True)
    assert real.read_text() == "file,level,subject\nL3_a.nii.gz,L3,a\n" and not (tmp_path / "hq").exists()
    phantoms = tmp_path / "set"
    write_set(phantoms, 1, 0, size=16, spacing=8.0)
    assert write_set(phantoms, 1, 1, size=16, spacing=8.0, overwrite=True) == phantoms / "manifest.csv"


def test_an_interrupted_set_leaves_nothing_and_a_leftover_one_is_named(tmp_path, monkeypatch):
    """Ctrl-C while `lsdebm evaluate --data DIR` wrote its phantom set left 182 cases and no manifest; the same command
    then said `hq/case0000_L1.nii.gz already exists`, and `train --data` trained on the fragment."""
    from lsdebm.data import phantom_set
    from lsdebm.errors import InputError

    real, calls = phantom_set.write_volume, []

    def interrupted(path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(path, *args, **kwargs)

    monkeypatch.setattr(phantom_set, "write_volume", interrupted)
    with pytest.raises(KeyboardInterrupt):
        phantom_set.write_set(tmp_path / "set", 3, 0, size=16, spacing=8.0)
    assert not [p for p in (tmp_path / "set").rglob("*") if p.is_file()]  # the four volumes written are gone
    monkeypatch.setattr(phantom_set, "write_volume", real)
    leftover = tmp_path / "old"
    real(leftover / "hq" / "case0000_L1.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))  # an older fragment
    with pytest.raises(InputError, match="holds phantom volumes but no manifest.csv: an incomplete set"):
        phantom_set.write_set(leftover, 1, 0, size=16, spacing=8.0)
    assert phantom_set.write_set(leftover, 1, 0, size=16, spacing=8.0, overwrite=True).is_file()
