"""`import lsdebm` with the inputs a notebook hands it: one InputError naming the problem, never a deep
numpy/torch traceback or a misleading message; runs recorded from Python name their checkpoint."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import lsdebm
from lsdebm.data.label_census import label_counts
from lsdebm.data.thickslice import ThickSliceParams
from lsdebm.errors import CheckpointError, InputError
from lsdebm.explore import find_checkpoint
from lsdebm.runtime.loading import load_models

AFFINE = np.diag([8.0, 8.0, 8.0, 1.0])


@pytest.fixture()
def cube():
    data = np.zeros((16, 16, 16), np.uint8)
    data[4:12, 4:12, 4:12] = 1
    return data


@pytest.fixture()
def vae_models(tiny_ckpts):
    return load_models(checkpoint=str(tiny_ckpts["vae"]), reconnet=False)


def _bad_volumes(cube):
    """(volume, affine, labels, message fragment): each used to pass the checks or fail deep inside."""
    import nibabel as nib

    inf = cube.astype(np.float32)
    inf[0, 0, 0] = np.inf
    return [(cube[:, :, 8], AFFINE, None, r"shape \(16, 16\) \(2D\); expected a 3D"),  # was "no vertebra ... 0.06 cm3"
            (cube[:, :, 8], AFFINE, 1, r"\(2D\); expected a 3D"),  # was numpy's AxisError
            (inf, AFFINE, None, "NaN or infinite"),  # was OverflowError
            (cube.astype(np.complex64), AFFINE, None, "holds complex64 values"),  # was a complex64 "mask"
            (cube.astype(object), AFFINE, None, "holds object values"),
            (nib.Nifti1Image(cube, AFFINE), None, None, "a nibabel image"),
            (nib.Nifti1Image(cube, AFFINE), AFFINE, None, "a nibabel image"),  # was TypeError
            (cube, "eye", None, "not a 4x4 matrix of numbers")]  # was ValueError


def test_reconstruct_refuses_arrays_it_cannot_read_in_one_line(cube, vae_models):
    for volume, affine, labels, fragment in _bad_volumes(cube):
        kept = np.array(volume, copy=True) if isinstance(volume, np.ndarray) else None
        with pytest.raises(InputError, match=fragment):
            lsdebm.reconstruct(volume, affine, models=vae_models, labels=labels)
        if kept is not None:
            assert np.array_equal(volume, kept, equal_nan=volume.dtype.kind == "f")


def test_label_counts_refuses_infinite_values():
    data = np.zeros((4, 4, 4), np.float32)
    data[1, 1, 1], data[2, 2, 2] = np.inf, 1.0
    with pytest.raises(InputError, match="non-integer values such as inf"):
        label_counts(data)


def test_out_grid_pair_is_checked_like_the_command_line_grid(cube, vae_models):
    with pytest.raises(InputError, match="larger than"):  # was a MemoryError after trying 116 GiB
        lsdebm.reconstruct(cube, AFFINE, models=vae_models, out_grid=((5000, 5000, 5000), AFFINE))
    with pytest.raises(InputError, match="whole numbers"):  # 10.7 was cut to 10
        lsdebm.reconstruct(cube, AFFINE, models=vae_models, out_grid=((10.7, 16, 16), AFFINE))


def test_an_out_grid_elsewhere_is_refused_and_one_that_cuts_is_warned_about(cube, vae_models):
    """A grid 1 m away gave an all-zero mask without a word (the command line's --like refused it)."""
    far = AFFINE.copy()
    far[:3, 3] = 1000.0
    with pytest.raises(InputError, match="out_grid: its grid does not hold any of the structures"):
        lsdebm.reconstruct(cube, AFFINE, models=vae_models, labels=1, out_grid=((16, 16, 16), far))
    with pytest.warns(lsdebm.errors.InputWarning, match="out_grid: only 50% of the structures' voxels"):
        lsdebm.reconstruct(cube, AFFINE, models=vae_models, labels=1, out_grid=((8, 16, 16), AFFINE))


def test_models_and_their_choices_are_refused_by_name(cube, tiny_ckpts):
    with pytest.raises(InputError, match="models='lsdebm': expected lsdebm.load_models"):  # was AttributeError
        lsdebm.reconstruct(cube, AFFINE, models="lsdebm")
    with pytest.raises(InputError, match="reconnet='no': expected True"):  # "no" is true: the stage was loaded
        load_models(checkpoint=str(tiny_ckpts["vae"]), reconnet="no")
    for option in ({"checkpoint": 3}, {"slab": False}, {"reconnet_checkpoint": 1.5}):  # were TypeErrors in Path
        with pytest.raises(InputError, match=f"{next(iter(option))}=.*expected a bundled name"):
            load_models("vae", **option)


def test_record_takes_one_label_and_json_metadata(tmp_path, cube, tiny_ckpts):
    ckpt = lsdebm.load_checkpoint(str(tiny_ckpts["lsdebm"]))
    with pytest.raises(InputError, match="expected one label id"):  # was a numpy broadcasting error
        lsdebm.record(cube, ckpt, AFFINE, label=[1, 2])
    with pytest.raises(InputError, match="expected label ids"):  # label "1" was said to be absent
        lsdebm.record(cube, ckpt, AFFINE, label="1")
    with pytest.raises(InputError, match="metadata=\\[1\\]: expected a dict"):
        lsdebm.record(cube, ckpt, AFFINE, metadata=[1])
    with pytest.raises(InputError, match="metadata\\['fit'\\] = <object"):  # failed later, in save
        lsdebm.record(cube, ckpt, AFFINE, metadata={"fit": object()})
    rec = lsdebm.record(cube, ckpt, AFFINE, label=np.int64(1), metadata={"n": np.int64(3), "w": np.float32(0.5),
                                                                         "src": tmp_path / "a.nii.gz"})
    path = rec.trajectory.save(tmp_path / "run.npz")  # numpy scalars and paths were not JSON: TypeError here
    traj = lsdebm.Trajectory.load(path)
    assert (traj.metadata["n"], traj.metadata["w"], traj.metadata["src"]) == (3, 0.5, str(tmp_path / "a.nii.gz"))
    np.testing.assert_array_equal(lsdebm.decode_frame(ckpt, path), lsdebm.decode_frame(ckpt, traj))  # a path too
    with pytest.raises(InputError, match="expected a Trajectory"):  # was AttributeError: no 'metadata'
        lsdebm.decode_frame(ckpt, None)


def test_settings_and_method_that_cannot_apply_are_refused(cube, vae_models):
    with pytest.raises(InputError, match="expected lsdebm.RunSettings"):  # was AttributeError
        lsdebm.reconstruct(cube, AFFINE, models=vae_models, settings={"seed": 1})
    with pytest.raises(InputError, match="models holds a vae pipeline"):  # method was silently ignored
        lsdebm.reconstruct(cube, AFFINE, models=vae_models, method="lsdebm")


def test_a_run_recorded_from_python_names_its_checkpoint(tmp_path, cube, tiny_ckpts):
    """`lsdebm view case run.npz` found no checkpoint for it (latents only), and any decoder was taken."""
    ckpt = lsdebm.load_checkpoint(str(tiny_ckpts["lsdebm"]))
    rec = lsdebm.record(cube, ckpt, AFFINE, metadata={"note": "mine"})
    meta = rec.trajectory.metadata
    assert meta["checkpoint_sha256"] == ckpt.sha256 and meta["method"] == "lsdebm" and meta["note"] == "mine"
    path = rec.trajectory.save(tmp_path / "run.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        traj = lsdebm.Trajectory.load(path, expect_checkpoint=ckpt.sha256)
    assert find_checkpoint(traj.metadata, near=path) is not None
    with pytest.raises(CheckpointError, match="its latents only fit that decoder"):
        lsdebm.decode_frame(lsdebm.load_checkpoint(str(tiny_ckpts["vae"])), traj)
    with pytest.raises(CheckpointError, match="has no decoder"):  # was AttributeError
        lsdebm.decode_frame(lsdebm.load_checkpoint(str(tiny_ckpts["reconnet"])), traj)
    with pytest.raises(InputError, match="expected an integer index"):  # was IndexError
        lsdebm.decode_frame(ckpt, traj, frame=1.5)
    probs = lsdebm.decode_frame(str(tiny_ckpts["lsdebm"]), traj)  # a path works as in load_checkpoint
    assert rec.to_input_grid(probs).shape == cube.shape
    with pytest.raises(InputError, match="expected the model grid"):  # was pasted silently
        rec.to_input_grid(probs[:10])


def test_record_takes_a_checkpoint_name_or_refuses_by_name(cube, tiny_ckpts):
    rec = lsdebm.record(cube, str(tiny_ckpts["lsdebm"]), AFFINE)  # was AttributeError: 'str' ... 'config'
    assert rec.trajectory.n_frames > 0
    with pytest.raises(InputError, match="expected lsdebm.load_checkpoint"):
        lsdebm.record(cube, 3, AFFINE)


def test_devices_are_resolved_in_one_line(tiny_ckpts):
    with pytest.raises(InputError, match="is not allowed"):  # was torch's RuntimeError
        lsdebm.load_checkpoint(str(tiny_ckpts["vae"]), "tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA is not available"):  # was AssertionError
            load_models(checkpoint=str(tiny_ckpts["vae"]), reconnet=False, device="cuda")


@pytest.mark.parametrize("mask, spacing, params, rng, fragment", [
    (np.ones((8, 8, 8)), 2.0, ThickSliceParams(), 0, "expected a numpy Generator"),  # was AttributeError
    (np.ones((8, 8, 8)), 2.0, ThickSliceParams(), None, "expected a numpy Generator"),
    (np.ones((8, 8, 8)), 0.0, ThickSliceParams(), np.random.default_rng(0), "positive number"),  # ZeroDivision
    (np.ones((8, 8, 8)), (2.0, 2.0, 2.0), ThickSliceParams(), np.random.default_rng(0), "positive number"),
    (np.ones((8, 8, 8)), 2.0, None, np.random.default_rng(0), "expected ThickSliceParams"),
    (np.ones((8, 8)), 2.0, ThickSliceParams(), np.random.default_rng(0), "3D"),
])
def test_simulate_thick_slice_refuses_bad_arguments_by_name(mask, spacing, params, rng, fragment):
    with pytest.raises(InputError, match=fragment):
        lsdebm.simulate_thick_slice(mask, spacing, params, rng)


def test_simulate_thick_slice_takes_a_list_and_keeps_its_input():
    phantom = lsdebm.make_vertebra("L3", seed=0, size=32, spacing=4.0)
    kept = phantom.mask.copy()
    a = lsdebm.simulate_thick_slice(phantom.mask.tolist(), 4.0, ThickSliceParams(), np.random.default_rng(1))
    b = lsdebm.simulate_thick_slice(phantom.mask, 4.0, ThickSliceParams(), np.random.default_rng(1))
    assert np.array_equal(a, b) and np.array_equal(phantom.mask, kept)
