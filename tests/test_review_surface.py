import numpy as np
import pytest

pytest.importorskip("pyvista")
pytest.importorskip("skimage")

from lsdebm.errors import InputError  # noqa: E402
from lsdebm.review.surface import distance_surface, mask_mesh, symmetric_limit  # noqa: E402


def slab(shape=(24, 40, 40)):
    m = np.zeros(shape, np.uint8)
    m[8:14, 5:35, 5:35] = 1
    return m


def signed_volume(mesh) -> float:
    v = mesh.vertices.astype(float)[mesh.faces]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6)


def test_raw_mesh_is_in_grid_mm_and_wound_outwards():
    m = slab()
    mesh = mask_mesh(m, (2.0, 1.0, 1.0), smooth_iterations=0)
    lo, hi = mesh.vertices.min(0), mesh.vertices.max(0)
    np.testing.assert_allclose(lo, [7.5 * 2, 4.5, 4.5], atol=1e-5)
    np.testing.assert_allclose(hi, [13.5 * 2, 34.5, 34.5], atol=1e-5)
    assert signed_volume(mesh) == pytest.approx(m.sum() * 2.0, rel=0.05)


def test_distance_of_a_mask_to_itself_is_zero():
    from lsdebm.data.phantoms import make_vertebra

    p = make_vertebra("L3", 0, 32, 4.0)
    mesh = distance_surface(p.mask, p.mask, 4.0, decimate=0.3)
    assert mesh.values_name == "signed_distance_mm"
    assert np.abs(mesh.values).max() < 1e-4


@pytest.mark.parametrize("axis, spacing, shift_vox, shift_mm", [(0, (2.0, 1.0, 1.0), 2, 4.0),
                                                                 (0, (1.0, 1.0, 1.0), 3, 3.0)])
def test_distance_of_a_shifted_copy_equals_the_shift(axis, spacing, shift_vox, shift_mm):
    ref = slab()
    moved = np.roll(ref, shift_vox, axis=axis)
    mesh = distance_surface(moved, ref, spacing)
    d = mesh.values
    # the two large faces (most vertices) sit exactly shift_mm from the reference's faces
    assert np.median(np.abs(d)) == pytest.approx(shift_mm, abs=0.05)
    assert np.abs(d).max() == pytest.approx(shift_mm, abs=0.05)
    z = mesh.vertices[:, 0]
    central = (np.abs(mesh.vertices[:, 1:] - 20.0) < 8.0).all(1)  # > 4 mm from the slab's rim
    top, bottom = (z > z.max() - 0.25) & central, (z < z.min() + 0.25) & central
    assert top.sum() > 10 and bottom.sum() > 10
    assert np.median(d[top]) == pytest.approx(shift_mm, abs=0.05)  # above the reference: outside, positive
    assert np.median(d[bottom]) == pytest.approx(-shift_mm, abs=0.05)  # bottom face lies inside the reference


def test_bad_inputs():
    with pytest.raises(InputError, match="empty"):
        mask_mesh(np.zeros((4, 4, 4)))
    with pytest.raises(InputError, match="3D"):
        mask_mesh(np.ones((4, 4)))
    with pytest.raises(InputError, match="decimation"):
        mask_mesh(slab(), decimate=1.5)
    with pytest.raises(InputError, match="shapes differ"):
        distance_surface(slab(), np.ones((2, 2, 2)))
    assert symmetric_limit([0.0, -3.0, 1.0], 100) == 3.0
