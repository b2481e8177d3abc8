"""Phantom sizes against the shipped real masks (train split), and the world-extent helper."""
import numpy as np
import pytest

from lsdebm.data.anatomy import LEVELS, level_table, volume_cm3, world_extents


@pytest.fixture(scope="module")
def table():
    return level_table("train", seeds=range(4), size=128, spacing=1.0)


@pytest.mark.parametrize("level", LEVELS)
def test_phantom_volume_and_extents_match_real_train(table, level):
    real, phantom = table[level]["real"], table[level]["phantom"]
    assert real is not None and real["n"] >= 2
    ratio = phantom["volume_mean"] / real["volume_mean"]
    assert 0.9 <= ratio <= 1.1, (level, phantom["volume_mean"], real["volume_mean"])
    diff = np.subtract(phantom["extents"], real["extents"])
    assert np.all(np.abs(diff) <= 5.0), (level, "L-R/A-P/S-I", phantom["extents"], real["extents"])


def test_world_extents_follow_the_affine():
    mask = np.zeros((10, 20, 30), np.uint8)
    mask[2:6, 3:15, 5:25] = 1  # 4 x 12 x 20 voxels
    spacing = np.array([3.0, 1.0, 2.0])
    # array axes 0, 1, 2 -> world -y (posterior in RAS), +z, -x: a permuted, flipped grid
    affine = np.eye(4)
    affine[:3, :3] = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]) * spacing
    affine[:3, 3] = [40.0, -7.0, 3.0]
    lr, ap, si = world_extents(mask, affine)
    assert (lr, ap, si) == pytest.approx((20 * 2.0, 4 * 3.0, 12 * 1.0))
    assert volume_cm3(mask, affine) == pytest.approx(4 * 12 * 20 * 6.0 / 1000)
    assert world_extents(np.zeros((3, 3, 3)), affine) == (0.0, 0.0, 0.0)
    # the same box on the phantom grid (Z, Y, X = superior, posterior, right)
    from lsdebm.data.phantoms import grid_affine

    lr, ap, si = world_extents(mask, grid_affine(30, 1.5))
    assert (lr, ap, si) == pytest.approx((30.0, 18.0, 6.0))
