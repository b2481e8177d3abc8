"""Pose normalisation: a tilted vertebra reaches the model upright and comes back where it was."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from lsdebm.data.augment import rotation_matrix
from lsdebm.data.frame import crop_to_model
from lsdebm.data.pose import WORLD_AXES, estimate_pose, frame_affine, world_pose
from lsdebm.data.real import degrade, isotropic, load_real_masks
from lsdebm.data.thickslice import ThickSliceParams
from lsdebm.evaluation.metrics import dice
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.runtime.loading import Models
from lsdebm.tasks.reconstruct import reconstruct_volume

ROTATIONS = [(axis, deg) for axis in range(3) for deg in (-20.0, 20.0)]


@pytest.fixture(scope="module")
def vertebra():
    """A real L1 (VerSe, tilted ~11 degrees by lordosis) at 1 mm with room around it."""
    m = load_real_masks(split="val", levels=("L1",))[0]
    return isotropic(m.mask, m.affine, 1.0, 20.0)


def _rotate_about_centroid(mask, affine, rot):
    """The same voxels with the world rotated by ``rot`` about the structure's centroid."""
    centre = affine[:3, :3] @ np.argwhere(mask).mean(0) + affine[:3, 3]
    out = np.eye(4)
    out[:3, :3] = rot @ affine[:3, :3]
    out[:3, 3] = rot @ (affine[:3, 3] - centre) + centre
    return out


def _angles(axis, deg):
    angles = np.zeros(3)
    angles[axis] = deg
    return angles


def _angle_between(a, b):
    return float(np.degrees(np.arccos(np.clip((np.trace(a.T @ b) - 1) / 2, -1, 1))))


@pytest.mark.parametrize("axis, deg", ROTATIONS)
def test_frame_turns_with_the_vertebra(vertebra, axis, deg):
    mask, affine = vertebra
    rot = rotation_matrix(_angles(axis, deg))
    base = estimate_pose(mask, affine)
    turned = estimate_pose(mask, _rotate_about_centroid(mask, affine, rot))
    assert base.method == turned.method == "pose"
    assert _angle_between(rot @ base.axes, turned.axes) < 2.0
    assert np.allclose(np.linalg.det(turned.axes), 1.0)


def test_frame_of_an_upright_phantom_is_near_the_scanner_axes():
    from lsdebm.data.phantoms import make_vertebra

    p = make_vertebra("L3", 0, 128, 1.0)
    pose = estimate_pose(p.mask, p.affine)
    assert pose.tilt_deg() < 10.0  # the phantom's own pose jitter is a few degrees
    assert _angle_between(world_pose(p.mask, p.affine).axes, WORLD_AXES) == 0.0


def test_non_vertebra_shapes_fall_back_to_the_scanner_axes():
    ball = np.zeros((40, 40, 40), np.uint8)
    ball[np.linalg.norm(np.indices(ball.shape) - 19.5, axis=0) < 15] = 1
    assert estimate_pose(ball, np.eye(4)).method == "world"


def test_frame_affine_puts_the_centroid_at_the_offset(vertebra):
    mask, affine = vertebra
    pose = estimate_pose(mask, affine)
    fa = frame_affine(pose, 64, 2.0, (0.0, -10.0, 0.0))
    centre_idx = np.linalg.inv(fa) @ np.r_[pose.centroid_mm, 1.0]
    assert np.allclose(centre_idx[:3], np.array([31.5, 31.5 - 5.0, 31.5]), atol=1e-6)


@pytest.mark.parametrize("axis, deg", ROTATIONS)
def test_rotated_input_gives_the_same_crop(vertebra, axis, deg):
    mask, affine = vertebra
    cfg = load_checkpoint("reconnet-default").config.model
    cfg = dataclasses.replace(cfg, frame="pose")
    upright, _ = crop_to_model(mask, affine, None, cfg.grid, cfg.spacing, cfg)
    turned, info = crop_to_model(mask, _rotate_about_centroid(mask, affine, rotation_matrix(_angles(axis, deg))),
                                 None, cfg.grid, cfg.spacing, cfg)
    assert info.frame == "pose"
    assert dice(turned, upright) > 0.97
    world = dataclasses.replace(cfg, frame="world")  # without pose normalisation the crop turns with the input
    w_up, _ = crop_to_model(mask, affine, None, cfg.grid, cfg.spacing, world)
    w_turned, _ = crop_to_model(mask, _rotate_about_centroid(mask, affine, rotation_matrix(_angles(axis, deg))),
                                None, cfg.grid, cfg.spacing, world)
    assert dice(w_turned, w_up) < 0.9


@pytest.fixture(scope="module")
def reconnet_pose():
    torch.set_num_threads(1)
    ck = load_checkpoint("reconnet-default")
    cfg = dataclasses.replace(ck.config, model=dataclasses.replace(ck.config.model, frame="pose"))
    return Models(None, dataclasses.replace(ck, config=cfg))


@pytest.mark.parametrize("axis, deg", ROTATIONS)
def test_rotated_vertebra_comes_back_within_0_02_dice(vertebra, reconnet_pose, axis, deg):
    """The acceptance test: +-20 degrees about each world axis, the result within 0.02 Dice."""
    mask, affine = vertebra
    params = ThickSliceParams(plane="sagittal", thickness=5.0, gap=0.0, offset=1.0, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0)
    lq = degrade(mask, affine, params, np.random.default_rng(0))
    upright = reconstruct_volume(reconnet_pose, lq, affine)
    turned_affine = _rotate_about_centroid(lq, affine, rotation_matrix(_angles(axis, deg)))
    turned = reconstruct_volume(reconnet_pose, lq, turned_affine)
    # same voxels, the world rotated: the result is scored against the same truth voxels
    assert abs(dice(turned.mask, mask) - dice(upright.mask, mask)) <= 0.02
    assert turned.provenance["pose"][0]["frame"] == "pose"


def test_resampled_rotation_comes_back_within_0_02_dice(vertebra, reconnet_pose):
    """Rotating the voxels themselves (resampled on the same grid) instead of the affine."""
    mask, affine = vertebra
    centre = np.argwhere(mask).mean(0)
    rot = rotation_matrix((20.0, 0.0, 0.0))  # lordosis-like tilt about left-right
    lin = np.linalg.inv(affine[:3, :3]) @ rot.T @ affine[:3, :3]
    turned = (ndimage.affine_transform(mask.astype(np.float32), lin, offset=centre - lin @ centre, order=1)
              >= 0.5).astype(np.uint8)
    a = reconstruct_volume(reconnet_pose, mask, affine, acquisition=None)
    b = reconstruct_volume(reconnet_pose, turned, affine, acquisition=None)
    assert abs(dice(b.mask, turned) - dice(a.mask, mask)) <= 0.02
