import gzip

import numpy as np
import pytest
from scipy import ndimage

from lsdebm.data.frame import crop_label, paste_back
from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.data.phantom_set import generate_pairs, read_set, write_set
from lsdebm.data.phantoms import make_vertebra
from lsdebm.errors import InputError, LsdebmError
from lsdebm.evaluation.metrics import dice


def _oblique_affine(shape):
    theta = np.deg2rad(20)
    rotation = np.array([[np.cos(theta), -np.sin(theta), 0], [np.sin(theta), np.cos(theta), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([0.9, -1.1, 1.6])
    affine[:3, 3] = -(affine[:3, :3] @ ((np.array(shape) - 1) / 2)) + [5, -3, 2]
    return affine


@pytest.fixture(scope="module")
def oblique_labels():
    phantom = make_vertebra("L2", 5, 128, 1.0)
    shape = (150, 130, 90)
    affine = _oblique_affine(shape)
    moved = ndimage.affine_transform(phantom.mask.astype(np.float32), np.linalg.inv(phantom.affine) @ affine,
                                     output_shape=shape, order=1) >= 0.5
    labels = moved.astype(np.uint8) * 7
    labels[:5, :5, :5] = 3  # another structure that must survive paste-back
    return labels, affine


def test_write_read_keeps_affine(tmp_path, oblique_labels):
    labels, affine = oblique_labels
    path = write_volume(tmp_path / "labels.nii.gz", labels, affine)
    volume = read_volume(path)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    np.testing.assert_allclose(volume.spacing, (0.9, 1.1, 1.6), atol=1e-5)
    assert np.array_equal(volume.data, labels)
    with pytest.raises(LsdebmError, match="--overwrite"):
        write_volume(path, labels, affine)
    write_volume(path, labels, affine, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.nii.gz"]  # no temp files left


def test_crop_and_paste_back_round_trip(oblique_labels):
    labels, affine = oblique_labels
    crop, info = crop_label(labels, affine, label=7, grid=128, spacing=1.0)
    assert crop.shape == (128,) * 3 and crop.dtype == np.uint8
    back = paste_back(crop, info)
    assert back.shape == labels.shape
    assert dice(back, labels == 7) > 0.95
    merged = paste_back(crop, info, base=labels)
    assert (merged == 3).sum() == (labels == 3).sum()
    with pytest.raises(InputError, match="labels present"):
        crop_label(labels, affine, label=9)


def test_crop_of_phantom_keeps_model_orientation():
    phantom = make_vertebra("L3", 0)
    crop, info = crop_label(phantom.mask, phantom.affine, grid=64, spacing=2.0)
    shift = (np.linalg.inv(phantom.affine) @ np.r_[info.centroid_mm, 1])[:3] - 31.5
    expected = ndimage.shift(phantom.mask.astype(float), -shift, order=1) >= 0.5
    assert dice(crop, expected) > 0.97


@pytest.mark.parametrize("problem,content,match", [
    ("missing", None, "not found"),
    ("empty", b"", "empty"),
    ("corrupt", gzip.compress(b"not a nifti at all" * 10, mtime=0), "cannot read"),  # same id in every xdist worker
])
def test_read_errors_name_the_file(tmp_path, problem, content, match):
    path = tmp_path / f"{problem}.nii.gz"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(InputError, match=match) as info:
        read_volume(path)
    assert str(path) in str(info.value)


def test_read_rejects_non_nifti_4d_and_nan(tmp_path):
    (tmp_path / "a.png").write_bytes(b"x")
    with pytest.raises(InputError, match="not a NIfTI"):
        read_volume(tmp_path / "a.png")
    import nibabel as nib

    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3, 2), np.float32), np.eye(4)), tmp_path / "four.nii")
    with pytest.raises(InputError, match="3D"):
        read_volume(tmp_path / "four.nii")
    data = np.zeros((3, 3, 3), np.float32)
    data[1, 1, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii")
    with pytest.raises(InputError, match="NaN"):
        read_volume(tmp_path / "nan.nii")


def test_phantom_set_round_trip(tmp_path):
    write_set(tmp_path / "set", n=3, seed=1, size=32, spacing=4.0)
    pairs = read_set(tmp_path / "set")
    fresh = generate_pairs(3, seed=1, size=32, spacing=4.0)
    assert [p.level for p in pairs] == ["L1", "L2", "L3"]
    for loaded, made in zip(pairs, fresh):
        assert loaded.name == made.name and loaded.sim_params == made.sim_params
        assert np.array_equal(loaded.hq, made.hq) and np.array_equal(loaded.lq, made.lq)
        np.testing.assert_allclose(np.linalg.norm(loaded.affine[:3, :3], axis=0), 4.0)


def test_the_input_space_and_units_survive_a_new_output_grid(tmp_path):
    """An MNI-registered (sform code 4) thick-slice mask written on a 1 mm grid stays MNI, in mm, with its
    description; a fresh file says mm; a file without any transform still gets one (codes 1)."""
    import nibabel as nib

    from lsdebm.data.nifti import grid_free_header, read_volume, write_volume

    image = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.diag([1.0, 1.0, 5.0, 1.0]))
    image.set_sform(image.affine, code=4)
    image.set_qform(image.affine, code=2)
    image.header["descrip"] = b"registered to MNI"
    image.header.set_xyzt_units("mm", "sec")
    nib.save(image, tmp_path / "in.nii.gz")
    volume = read_volume(tmp_path / "in.nii.gz")
    write_volume(tmp_path / "out.nii.gz", np.zeros((4, 4, 20), np.uint8), np.eye(4), grid_free_header(volume.header))
    header = nib.load(tmp_path / "out.nii.gz").header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (4, 2)
    assert header["descrip"].item() == b"registered to MNI" and header.get_xyzt_units()[0] == "mm"
    assert header.get_zooms() == (1.0, 1.0, 1.0)
    write_volume(tmp_path / "fresh.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4))
    fresh = nib.load(tmp_path / "fresh.nii.gz").header
    assert (int(fresh["sform_code"]), fresh.get_xyzt_units()[0]) == (1, "mm")
    bare = nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), None)
    bare.set_sform(None, code=0)
    bare.set_qform(None, code=0)
    nib.save(bare, tmp_path / "bare.nii.gz")
    write_volume(tmp_path / "bare_out.nii.gz", np.zeros((4, 4, 4), np.uint8), np.eye(4),
                 read_volume(tmp_path / "bare.nii.gz").header)
    assert int(nib.load(tmp_path / "bare_out.nii.gz").header["sform_code"]) == 1


def test_an_existing_output_names_the_option_of_the_python_api_too(tmp_path):
    """From Python the refusal said only 'pass --overwrite', a command-line flag the API does not have."""
    write_volume(tmp_path / "a.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    with pytest.raises(LsdebmError, match=r"pass --overwrite \(overwrite=True from Python\)"):
        write_volume(tmp_path / "a.nii.gz", np.zeros((2, 2, 2), np.uint8), np.eye(4))
    write_volume(tmp_path / "a.nii.gz", np.ones((2, 2, 2), np.uint8), np.eye(4), overwrite=True)
    assert read_volume(tmp_path / "a.nii.gz").data.all()


def _scaled_file(path, stored, slope, inter):
    import nibabel as nib

    image = nib.Nifti1Image(stored, np.diag([2.0, 2.0, 2.0, 1.0]))
    image.header.set_slope_inter(slope, inter)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("slope, inter, dtype", [(2.0, 0.0, np.uint8), (1.0, 0.0, np.uint8), (2.0, -300.0, np.int16),
                                                 (1.0, 20.0, np.uint8), (3.0, 0.0, np.int16)])
def test_a_scaled_integer_label_map_reads_and_writes_as_integers(tmp_path, slope, inter, dtype):
    """A uint8 label map stored with scl_slope 2 was read as float64 (nibabel scales to floats), and so was
    every output made from it: its reconstruction was written as a float64 file."""
    import nibabel as nib

    stored = np.zeros((6, 5, 4), np.uint8)
    stored[1:3, 1:3, 1:3], stored[4, 3, 2], stored[0, 0, 0] = 1, 2, 100
    labels = stored.astype(np.int64) * int(slope) + int(inter)
    volume = read_volume(_scaled_file(tmp_path / "in.nii.gz", stored, slope, inter))
    assert volume.data.dtype == dtype and np.array_equal(volume.data, labels)
    out = write_volume(tmp_path / "out.nii.gz", volume.data, volume.affine, volume.header)
    with gzip.open(out) as f:  # the header as stored, before nibabel moves the scaling into the data proxy
        header = nib.Nifti1Header.from_fileobj(f)
    assert header.get_data_dtype() == dtype and header.get_slope_inter() in ((None, None), (1.0, 0.0))
    assert np.array_equal(np.asarray(nib.load(out).dataobj), labels)  # exactly the label ids


def test_a_fractional_scaling_still_reads_as_floats(tmp_path):
    stored = np.arange(6 * 5 * 4, dtype=np.uint8).reshape(6, 5, 4)
    volume = read_volume(_scaled_file(tmp_path / "p.nii", stored, 1 / 255, 0.0))  # a probability map
    assert volume.data.dtype == np.float64 and np.allclose(volume.data, stored / 255, atol=1e-6)


def _scaled_typed_file(path, stored, slope, inter):
    import nibabel as nib

    image = nib.Nifti1Image(stored, np.eye(4))
    image.set_data_dtype(stored.dtype)
    image.header.set_slope_inter(slope, inter)
    nib.save(image, str(path))
    return path


@pytest.mark.parametrize("dtype, slope, inter, top, itemsize", [
    (np.uint8, 2.5, 0.0, 3, 8),  # fractional: nibabel's float64 (was counted as 1 byte: the header said no scaling)
    (np.uint8, 1.0, 0.5, 3, 8),
    (np.float32, 2.0, 0.0, 3, 8),  # scaled floats are float64 too (was 4)
    (np.uint8, 2.0, 0.0, 3, 1),  # whole-number scaling of integers: read as integers, in the stored type
    (np.int16, 2.0, 1.0, 3, 2),
    (np.int16, -1.0, 0.0, 3, 2),
    (np.uint8, 2.0 ** 62, 0.0, 3, 8),  # beyond int64 once scaled: int64 or nibabel's float64
    (np.uint8, 1.0, 0.0, 3, 1),  # unscaled
    (np.float64, 1.0, 0.0, 3, 8),
])
def test_the_memory_check_counts_the_type_read_volume_returns(tmp_path, dtype, slope, inter, top, itemsize):
    """nib.load moves scl_slope/scl_inter from the header into image.dataobj, so the check before reading
    looked for them where they no longer were: a uint8 file with slope 2.5 (read as float64) counted 1 byte a voxel."""
    import nibabel as nib

    from lsdebm.data.validate import voxel_itemsize

    stored = np.zeros((4, 3, 2), dtype)
    stored[0, 0, :] = (1, top)
    path = _scaled_typed_file(tmp_path / "in.nii", stored, slope, inter)
    assert voxel_itemsize(path, nib.load(path, mmap=False)) == itemsize
    assert read_volume(path).data.dtype.itemsize == itemsize


def test_a_fractionally_scaled_uint8_file_over_the_limit_is_refused_before_reading(tmp_path, monkeypatch):
    stored = np.ones((50, 50, 30), np.uint8)  # 75,000 bytes stored, 600,000 as float64
    path = _scaled_typed_file(tmp_path / "p.nii", stored, 2.5, 0.0)
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.0001")  # 107,374 bytes
    with pytest.raises(InputError, match=r"p.nii: a 50x50x30 volume needs 585.9 KiB of memory, more than the "):
        read_volume(path)


def test_a_scaled_label_map_whose_ids_need_a_wider_type_is_checked_once_read(tmp_path, monkeypatch):
    """Values 0..200 under slope 2 need int16: twice what the header's uint8 let the check count before reading."""
    stored = np.full((50, 50, 30), 200, np.uint8)
    path = _scaled_typed_file(tmp_path / "l.nii", stored, 2.0, 0.0)
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.0001")
    with pytest.raises(InputError, match=r"l.nii: a 50x50x30 volume needs 146.5 KiB of memory, more than the "):
        read_volume(path)
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.001")
    volume = read_volume(path)
    assert volume.data.dtype == np.int16 and np.all(volume.data == 400)


def test_a_pipe_is_refused_as_not_a_regular_file_without_reading_it(tmp_path):
    """A FIFO named like a NIfTI file was reported as "file not found"; reading it would block until a writer came."""
    import os

    fifo = tmp_path / "mask.nii.gz"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match=r"mask\.nii\.gz: not a regular file \(a pipe, socket or device\)"):
        read_volume(fifo)
    with pytest.raises(InputError, match="file not found"):
        read_volume(tmp_path / "absent.nii.gz")
