"""Bad input at every entry point: one-line errors naming the file, exit code 2, nothing written.

Each bad NIfTI is fed to the Python API (``read_volume``), the plugin reader, ``lsdebm metrics``
and ``lsdebm reconstruct``; each hostile checkpoint to ``load_checkpoint`` and to every command
that takes one. The table in docs/reliability.md points at these tests.
"""
from __future__ import annotations

import gzip
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from reliability_helpers import (
    edit_config,
    edit_metadata,
    huge_header_nifti,
    listing,
    nifti_with_header_affine,
    plant_pickle,
    read_header,
    save_nifti,
    write_header,
)

from lsdebm.cli.main import main
from lsdebm.data.frame import crop_label, paste_back
from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.errors import CheckpointError, InputError, InputWarning, LsdebmError
from lsdebm.nn import build_model
from lsdebm.runtime.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from lsdebm.sampling import Trajectory

pytestmark = pytest.mark.usefixtures("single_thread")

BLOB = np.zeros((8, 8, 8), np.uint8)
BLOB[2:6, 2:6, 2:6] = 1


def _put(path, data: bytes):
    path.write_bytes(data)
    return path


def _good_bytes(tmp_path, name="good.nii"):
    return save_nifti(tmp_path / name, BLOB).read_bytes()


# name -> (factory(tmp_path) -> path, expected fragment of the message)
BAD_NIFTI = {
    "missing": (lambda d: d / "missing.nii.gz", "not found"),
    "empty": (lambda d: _put(d / "empty.nii", b""), "empty"),
    "directory": (lambda d: (d / "folder.nii").mkdir() or d / "folder.nii", "directory"),  # mkdir returns None
    "truncated_nii": (lambda d: _put(d / "trunc.nii", _good_bytes(d)[:-100]),
                      "truncated"),
    "truncated_header": (lambda d: _put(d / "head.nii", _good_bytes(d)[:200]),
                         "cannot read as NIfTI"),
    "truncated_gz": (lambda d: _put(d / "trunc.nii.gz", gzip.compress(_good_bytes(d))[:-30]), "cannot"),
    "corrupt_gz": (lambda d: _put(d / "corrupt.nii.gz", gzip.compress(b"not a nifti at all" * 40)),
                   "cannot read as NIfTI"),
    "png_named_nii": (lambda d: _put(d / "photo.nii", b"\x89PNG\r\n\x1a\n" + bytes(600)),
                      "cannot read as NIfTI"),
    "plain_named_gz": (lambda d: _put(d / "plain.nii.gz", _good_bytes(d)),
                       "an uncompressed NIfTI image: rename it to .nii"),
    "text_named_gz": (lambda d: _put(d / "notes.nii.gz", b"a mask, sent as text\n" * 30),  # no renaming helps
                      "neither gzip-compressed nor a NIfTI image; expected a NIfTI file"),
    "gz_named_plain": (lambda d: _put(d / "packed.nii", gzip.compress(_good_bytes(d, "x.nii"))),
                       "gzip-compressed but named .nii"),
    "2d": (lambda d: save_nifti(d / "slice.nii", BLOB[0]), "2D image"),
    "4d": (lambda d: save_nifti(d / "series.nii", np.stack([BLOB] * 3, -1)), "4D volume"),
    "5d": (lambda d: save_nifti(d / "vector.nii", BLOB[..., None, None].repeat(2, -1)), "5D volume"),
    "complex": (lambda d: save_nifti(d / "complex.nii", BLOB.astype(np.complex64)), "not supported"),
    "nan": (lambda d: save_nifti(d / "nan.nii", np.where(BLOB, np.nan, 0).astype(np.float32)), "NaN"),
    "inf": (lambda d: save_nifti(d / "inf.nii", np.where(BLOB, np.inf, 0).astype(np.float32)), "infinite"),
    "singular_affine": (lambda d: nifti_with_header_affine(d / "flat.nii", BLOB, ([0, 0, 0, 0], [0, 1, 0, 0],
                                                                                  [0, 0, 1, 0])), "singular"),
    "nan_affine": (lambda d: nifti_with_header_affine(d / "nanaff.nii", BLOB, ([np.nan, 0, 0, 0], [0, 1, 0, 0],
                                                                              [0, 0, 1, 0])), "NaN or infinite"),
    "huge_grid": (lambda d: huge_header_nifti(d / "huge.nii"), "GiB of memory"),
}


@pytest.fixture(params=sorted(BAD_NIFTI))
def bad_nifti(request, tmp_path):
    factory, fragment = BAD_NIFTI[request.param]
    return factory(tmp_path), fragment


def _one_line_error(capsys, *names) -> str:
    """The error line of a failed command; anything else on stderr must be one-line warnings."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines and "Traceback" not in "\n".join(lines), lines
    *others, err = lines
    assert err.startswith("lsdebm: error:") and all(x.startswith("lsdebm: warning:") for x in others), lines
    for name in names:
        assert str(name) in err, err
    return err


def test_bad_nifti_python_api(bad_nifti):
    path, fragment = bad_nifti
    with pytest.raises(InputError, match=fragment) as info:
        read_volume(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message


def test_bad_nifti_plugin_reader(bad_nifti):
    from napari_lsdebm.io.nifti import get_reader

    path, fragment = bad_nifti
    reader = get_reader(str(path))
    assert reader is not None  # a NIfTI name is claimed; the reader then explains the problem
    with pytest.raises(LsdebmError, match=fragment):
        reader(str(path))


def test_bad_nifti_cli_metrics_and_reconstruct(bad_nifti, tmp_path, capsys, tiny_ckpts):
    path, fragment = bad_nifti
    good = save_nifti(tmp_path / "reference.nii", BLOB)
    assert main(["metrics", str(path), str(good)]) == 2
    assert fragment in _one_line_error(capsys, path)
    out = tmp_path / "out"
    assert main(["reconstruct", str(path), "-o", str(out / "r.nii.gz"), "--checkpoint", str(tiny_ckpts["vae"]),
                 "--no-reconnet"]) == 2
    assert fragment in _one_line_error(capsys, path)
    assert not out.exists()


def test_huge_grid_refused_before_allocating(tmp_path, monkeypatch):
    import resource

    path = huge_header_nifti(tmp_path / "huge.nii", shape=(2000, 2000, 2000), dtype=np.float32)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(InputError, match=r"2000x2000x2000 volume needs 29\.8 GiB of memory"):
        read_volume(path)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB: nothing was allocated
    small = save_nifti(tmp_path / "small.nii", np.zeros((64, 64, 64), np.float32))
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.0001")
    with pytest.raises(InputError, match="needs 1.0 MiB of memory, more than the 104.9 KiB limit"):
        read_volume(small)
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "lots")
    with pytest.raises(InputError, match="LSDEBM_MAX_MEMORY_GB"):
        read_volume(small)


def test_cli_user_error_in_a_real_process(tmp_path):
    bad = tmp_path / "photo.nii"
    bad.write_bytes(b"\x89PNG" + bytes(500))
    proc = subprocess.run([sys.executable, "-m", "lsdebm.cli.main", "metrics", str(bad), str(bad)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr and str(bad) in proc.stderr


# --- accepted with a stated change --------------------------------------------------------------------


def test_singleton_4d_5d_are_squeezed_with_a_warning(tmp_path, capsys):
    for name, data in (("t1.nii", BLOB[..., None]), ("t11.nii.gz", BLOB[..., None, None])):
        path = save_nifti(tmp_path / name, data)
        with pytest.warns(InputWarning, match="squeezed to 3D"):
            assert read_volume(path).data.shape == BLOB.shape
    assert main(["metrics", str(path), str(path), "--json"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["dsc"] == 1.0
    lines = [line for line in captured.err.splitlines() if line]
    assert lines and all(line.startswith("lsdebm: warning:") for line in lines) and "squeezed" in lines[0]


def test_a_header_nibabel_fixes_is_one_warning_line(tmp_path, capsys):
    """nibabel repairs negative pixdims as it reads and printed its own bare stderr line about it."""
    import nibabel as nib

    image = nib.Nifti1Image(BLOB.astype(np.uint8), np.diag([-1.0, 1.0, 1.0, 1.0]))
    image.header["pixdim"][1] = -1.0
    path = tmp_path / "negative_pixdim.nii.gz"
    nib.save(image, path)
    with pytest.warns(InputWarning, match="pixdim.*should be positive.*nibabel fixed the header"):
        volume = read_volume(path)
    assert np.allclose(volume.affine, np.diag([-1.0, 1.0, 1.0, 1.0]))
    capsys.readouterr()
    assert main(["metrics", str(path), str(path), "--json"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if line]
    assert lines and all(line.startswith("lsdebm: warning:") for line in lines), lines


def test_sheared_affine_is_handled_and_kept(tmp_path):
    affine = np.array([[2.0, 0.6, 0, -10], [0, 2.0, 0.3, 5], [0, 0, 2.5, 1], [0, 0, 0, 1]])
    data = np.zeros((40, 40, 32), np.uint8)
    data[12:28, 10:30, 8:24] = 1
    path = write_volume(tmp_path / "sheared.nii.gz", data, affine)
    with pytest.warns(InputWarning, match="not orthogonal"):
        volume = read_volume(path)
    np.testing.assert_allclose(volume.affine, affine, atol=1e-5)
    crop, info = crop_label(volume.data, volume.affine, None, grid=32, spacing=2.0)
    back = paste_back(crop, info)
    overlap = 2 * (back & data).sum() / (back.sum() + data.sum())
    assert overlap > 0.9


@pytest.mark.parametrize("spacing", [0.001, 50.0])
def test_extreme_spacing_warns(tmp_path, spacing):
    path = save_nifti(tmp_path / "odd.nii", BLOB, np.diag([spacing, spacing, spacing, 1.0]))
    with pytest.warns(InputWarning, match="outside 0.05-20.0 mm"):
        volume = read_volume(path)
    if spacing < 1:  # a 4 um structure cannot be seen on a 2 mm model grid: refused, not silently empty
        with pytest.raises(InputError, match="smaller than one 2 mm model voxel"):
            crop_label(volume.data, volume.affine, None, grid=16, spacing=2.0)
    sheet = np.zeros((40, 40, 40), np.uint8)
    sheet[20, 5:35, 5:35] = 1  # 900 voxels of 1 mm, but one voxel thick: said so, not "smaller than a voxel"
    with pytest.raises(InputError, match="only 1 mm thick along array axis 0, thinner than one 2 mm model voxel"):
        crop_label(sheet, np.eye(4), None, grid=16, spacing=2.0)


def test_anisotropic_spacing_is_resampled(tmp_path):
    data = np.zeros((64, 64, 8), np.uint8)
    data[16:48, 16:48, 2:6] = 1  # 32 x 32 x 4 voxels at 0.5 x 0.5 x 4 mm = 16 x 16 x 16 mm
    crop, _ = crop_label(data, np.diag([0.5, 0.5, 4.0, 1.0]), None, grid=16, spacing=2.0)
    extent = [np.ptp(np.nonzero(crop)[i]) + 1 for i in range(3)]
    assert all(7 <= e <= 9 for e in extent), extent  # 16 mm / 2 mm = 8 model voxels along every axis


# --- masks: labels, probabilities, empty, border ------------------------------------------------------


def test_mask_values_other_than_0_1():
    labels = np.zeros((16, 16, 16), np.int16)
    labels[2:7, 3:9, 3:9], labels[9:14, 3:9, 3:9] = 20, 21
    with pytest.warns(InputWarning, match=r"holds 2 labels \(20, 21\).*--label"):
        crop_label(labels, np.diag([4.0, 4, 4, 1]), None, grid=16, spacing=4.0)
    with pytest.raises(InputError, match=r"label 5 not found in the volume; labels present: \[20, 21\]"):
        crop_label(labels, np.diag([4.0, 4, 4, 1]), 5, grid=16, spacing=4.0)
    probs = np.zeros((16, 16, 16), np.float32)
    probs[4:12, 4:12, 4:12] = 0.8
    probs[1, 1, 1] = 0.2
    with pytest.warns(InputWarning, match="thresholded at 0.5 .512 voxels kept"):
        crop, _ = crop_label(probs, np.diag([4.0, 4, 4, 1]), None, grid=16, spacing=4.0)
    assert crop.sum() == 512


def test_empty_mask_and_border_contact():
    with pytest.raises(InputError, match="no foreground voxels"):
        crop_label(np.zeros((8, 8, 8), np.uint8), np.eye(4), None, grid=8, spacing=1.0)
    touching = np.zeros((12, 12, 12), np.uint8)
    touching[0:5, 3:8, 3:8] = 1
    with pytest.warns(InputWarning, match=r"touches the volume border along axis \[0\]"):
        crop, _ = crop_label(touching, np.eye(4), None, grid=16, spacing=1.0)
    assert crop.sum() >= touching.sum()  # padded with background, nothing lost
    big = np.ones((40, 10, 10), np.uint8)
    with pytest.warns(InputWarning) as record:
        crop_label(big, np.eye(4), None, grid=16, spacing=1.0)
    messages = " | ".join(str(w.message) for w in record)
    assert "touches the volume border along axis [0, 1, 2]" in messages
    assert "reaches 20 mm from the crop centre, beyond the model's field of view (+-8 mm)" in messages


def test_a_model_frame_too_small_for_a_vertebra_is_refused_by_name():
    """A converted 16^3 model at the default 1 mm: its phantom offset was NaN, then numpy's 'Expected homogeneous
    transformation matrix' from deep inside the crop (found running the README's convert command)."""
    from lsdebm.data.frame import centroid_offset_world

    with pytest.raises(InputError, match=r"the model grid \(16\^3 at 1 mm, 16 mm across\) cannot hold a vertebra"):
        centroid_offset_world(None, 16, 1.0)
    assert np.all(np.isfinite(centroid_offset_world(None, 32, 2.0)))  # 64 mm: the smallest sensible view works


def test_api_callers_get_the_same_checks():
    """Arrays handed to crop_label directly (plugin layers, the explorer) are checked like files."""
    with pytest.raises(InputError, match="NaN or infinite"):
        crop_label(np.where(BLOB, np.nan, 0.0), np.eye(4), None, grid=8, spacing=1.0)
    with pytest.raises(InputError, match=r"last row .* expected \[0, 0, 0, 1\]"):
        crop_label(BLOB, np.eye(4) * 4, None, grid=8, spacing=1.0)
    with pytest.raises(InputError, match="singular"):
        crop_label(BLOB, np.diag([1.0, 0.0, 1.0, 1.0]), None, grid=8, spacing=1.0)


def test_paste_back_refuses_nan_and_wrong_base():
    crop, info = crop_label(BLOB, np.eye(4), None, grid=8, spacing=1.0)
    with pytest.raises(InputError, match="NaN"):
        paste_back(np.full(crop.shape, np.nan), info)
    with pytest.raises(InputError, match="base volume has shape"):
        paste_back(crop, info, base=np.zeros((3, 3, 3)))


def test_reconstruct_mask_problems_write_nothing(tmp_path, tiny_ckpts, capsys):
    ck = ["--checkpoint", str(tiny_ckpts["vae"]), "--no-reconnet"]
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    empty = save_nifti(tmp_path / "empty_mask.nii", np.zeros((16, 16, 16), np.uint8), affine)
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[3:7, 4:10, 4:10], labels[9:13, 4:10, 4:10] = 1, 2
    label_map = save_nifti(tmp_path / "labels.nii", labels, affine)
    out = tmp_path / "out"
    assert main(["reconstruct", str(empty), "-o", str(out / "a.nii"), *ck]) == 2
    assert "no foreground" in _one_line_error(capsys)
    assert main(["reconstruct", str(label_map), "-o", str(out / "b.nii"), "--label", "7", *ck]) == 2
    assert "label 7 not found in the volume; labels present: [1, 2]" in _one_line_error(capsys)
    probs = save_nifti(tmp_path / "probs.nii", (labels > 0) * np.float32(0.7), affine)
    assert main(["reconstruct", str(probs), "-o", str(out / "p.nii"), *ck]) == 2
    assert "non-integer values" in _one_line_error(capsys)
    assert not out.exists()
    # An existing output is never replaced without --overwrite.
    out.mkdir()
    (out / "c.nii").write_bytes(b"precious")
    assert main(["reconstruct", str(label_map), "-o", str(out / "c.nii"), *ck]) == 2
    assert "--overwrite" in _one_line_error(capsys) and (out / "c.nii").read_bytes() == b"precious"


def test_reconstruct_border_mask_warns_and_succeeds(tmp_path, tiny_ckpts, capsys):
    mask = np.zeros((16, 16, 16), np.uint8)
    mask[0:6, 4:10, 4:10] = 1
    path = save_nifti(tmp_path / "edge.nii", mask, np.diag([8.0, 8.0, 8.0, 1.0]))
    out = tmp_path / "edge_out.nii"
    assert main(["reconstruct", str(path), "-o", str(out), "--checkpoint", str(tiny_ckpts["vae"]),
                 "--no-reconnet"]) == 0
    err = capsys.readouterr().err
    assert "lsdebm: warning:" in err and "touches the volume border" in err and "Traceback" not in err
    assert read_volume(out).data.shape == mask.shape


# --- writers -----------------------------------------------------------------------------------------


def test_writers_refuse_and_leave_nothing(tmp_path):
    target = tmp_path / "out.nii.gz"
    with pytest.raises(InputError, match="3D"):
        write_volume(target, np.zeros((4, 4)), np.eye(4))
    with pytest.raises(InputError, match="singular"):
        write_volume(target, BLOB, np.diag([1.0, 1.0, 0.0, 1.0]))
    nan = BLOB.astype(np.float32)
    nan[0, 0, 0] = np.nan  # written before, then refused by read_volume
    with pytest.raises(InputError, match="1 NaN and 0 infinite"):
        write_volume(target, nan, np.eye(4))
    (tmp_path / "file").write_text("x")
    with pytest.raises(LsdebmError, match="is a file, not a directory"):
        write_volume(tmp_path / "file" / "out.nii", BLOB, np.eye(4))
    assert listing(tmp_path) == ["file"]
    labels = (np.arange(512).reshape(8, 8, 8) * 7).astype(np.int64)  # napari Labels are int64
    assert np.array_equal(read_volume(write_volume(target, labels, np.eye(4))).data, labels)


def test_plugin_writer_refuses_non_3d_layer(tmp_path):
    from napari_lsdebm.io.nifti import write_labels

    with pytest.raises(InputError, match="only 3D label layers"):
        write_labels(str(tmp_path / "x.nii.gz"), np.zeros((4, 4), np.int32), {"name": "slice", "scale": (1, 1)})
    assert listing(tmp_path) == []


# --- checkpoints -------------------------------------------------------------------------------------


@pytest.fixture()
def marker(tmp_path):
    path = tmp_path / "PWNED"
    yield path
    assert not path.exists(), "a planted pickle was unpickled"


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".pkl", ".safetensors"])
def test_pickles_never_unpickled_python_api(tmp_path, marker, suffix):
    evil = plant_pickle(tmp_path / f"model{suffix}", marker)
    with pytest.raises(CheckpointError, match="never loaded" if suffix != ".safetensors" else "not a readable"):
        load_checkpoint(evil)
    with pytest.raises(CheckpointError):
        read_metadata(evil)


def test_pickles_never_unpickled_by_any_command(tmp_path, marker, tiny_ckpts, tiny_pair, capsys):
    lq = write_volume(tmp_path / "lq.nii.gz", tiny_pair[1], np.diag([8.0, 8.0, 8.0, 1.0]))
    evil = {s: plant_pickle(tmp_path / f"evil{s}", marker) for s in (".pt", ".pth", ".pkl")}
    out = tmp_path / "out"
    commands = [
        ["reconstruct", str(lq), "-o", str(out / "r.nii.gz"), "--checkpoint", str(evil[".pt"]), "--no-reconnet"],
        ["reconstruct", str(lq), "-o", str(out / "r.nii.gz"), "--checkpoint", str(tiny_ckpts["lsdebm"]),
         "--reconnet-checkpoint", str(evil[".pth"])],
        ["checkpoints", str(evil[".pkl"])],
        ["convert", "--kind", "vae", "--model", str(evil[".pt"]), "--out", str(out / "c.safetensors")],
        ["convert", "--kind", "lsdebm", "--encoder", str(evil[".pth"]), "--decoder", str(evil[".pth"]),
         "--energy", str(evil[".pth"]), "--out", str(out / "c.safetensors")],
        ["train", "--model", "vae", "--preset", "tiny", "--phantoms", "2", "--val-phantoms", "0", "--epochs", "1",
         "--out", str(out / "t.safetensors"), "--resume", str(evil[".pt"])],
        ["teach", "generate", "--model", str(evil[".pkl"]), "--out", str(out / "g.png")],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        _one_line_error(capsys)
    assert not out.exists()


def test_checkpoint_problems(tmp_path, tiny_ckpts):
    good = tiny_ckpts["vae"]
    raw = good.read_bytes()
    (tmp_path / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    (tmp_path / "stub.safetensors").write_bytes(raw[:10])
    (tmp_path / "folder.safetensors").mkdir()
    cases = [
        (tmp_path / "truncated.safetensors", "truncated|not a readable"),
        (tmp_path / "stub.safetensors", "empty or truncated"),
        (tmp_path / "folder.safetensors", "is a directory"),
        (edit_metadata(good, tmp_path / "newer.safetensors", format_version="2"),
         "format version 2 is newer than supported"),
        (edit_metadata(good, tmp_path / "foreign.safetensors", format="something-else"), "without lsdebm metadata"),
        (edit_config(good, tmp_path / "mismatch.safetensors", "model", "latent_dim", 9),
         "tensors do not match its config"),
        # A 4096^3 grid in a small file: refused from the header, the model is never allocated.
        (edit_config(good, tmp_path / "huge.safetensors", "model", "grid", 4096),
         r"model grid 4096\^3 with 4 channels needs 1.0 TiB of memory"),
        (edit_config(good, tmp_path / "badcfg.safetensors", "model", "channels", [4]), "config is missing or invalid"),
    ]
    for path, fragment in cases:
        with pytest.raises(CheckpointError, match=fragment) as info:
            load_checkpoint(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), path.name
    with pytest.raises(CheckpointError, match="holds a vae model, expected lsdebm"):
        load_checkpoint(good, expect_kind="lsdebm")


def test_checkpoint_bit_flip_and_nan_weights_are_refused(tmp_path, tiny_cfg):
    torch.manual_seed(0)
    model = build_model("vae", tiny_cfg)
    good = save_checkpoint(model, tmp_path / "good.safetensors")
    header, data = read_header(good)
    flipped = bytearray(data)
    flipped[len(flipped) // 3] ^= 0x04  # a silent change of one weight
    write_header(tmp_path / "flip.safetensors", header, bytes(flipped))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(tmp_path / "flip.safetensors")
    edited = edit_metadata(good, tmp_path / "edited.safetensors",
                           info=json.dumps({"description": "edited after saving"}))
    with pytest.raises(CheckpointError, match="do not match the checksum"):
        load_checkpoint(edited)
    with torch.no_grad():
        next(model.parameters())[0] = float("nan")
    nan = save_checkpoint(model, tmp_path / "nan.safetensors")
    with pytest.raises(CheckpointError, match="NaN or infinite"):
        load_checkpoint(nan)


def test_checkpoint_from_another_kind_or_grid_via_cli(tmp_path, tiny_ckpts, tiny_cfg, tiny_pair, capsys):
    lq = write_volume(tmp_path / "lq.nii.gz", tiny_pair[1], np.diag([8.0, 8.0, 8.0, 1.0]))
    other = save_checkpoint(build_model("reconnet", tiny_cfg.replace(**{"model.grid": 32, "model.spacing": 4.0})),
                            tmp_path / "reconnet32.safetensors")
    out = tmp_path / "out"
    assert main(["reconstruct", str(lq), "-o", str(out / "a.nii"), "--method", "vae",
                 "--checkpoint", str(tiny_ckpts["lsdebm"]), "--no-reconnet"]) == 2
    assert "holds a lsdebm model, expected vae" in _one_line_error(capsys)
    assert main(["reconstruct", str(lq), "-o", str(out / "a.nii"), "--checkpoint", str(tiny_ckpts["vae"]),
                 "--reconnet-checkpoint", str(other)]) == 2
    assert "does not match" in _one_line_error(capsys, other)
    assert not out.exists()
    # a ReconNet file given alone is the ReconNet stage (no longer refused as "not a refinement method")
    assert main(["reconstruct", str(lq), "-o", str(tmp_path / "r.nii"), "--checkpoint", str(tiny_ckpts["reconnet"]),
                 "--native-grid"]) == 0
    assert json.loads((tmp_path / "r.provenance.json").read_text())["method"] == "reconnet"


# --- trajectories ------------------------------------------------------------------------------------


def _trajectory(tmp_path, sha="a" * 64):
    rng = np.random.default_rng(0)
    traj = Trajectory(rng.normal(size=(1, 3, 4)).astype(np.float32), rng.normal(size=(1, 2, 5, 4)).astype(np.float32),
                      rng.normal(size=(1, 2, 5)).astype(np.float32), rng.random((1, 2, 5)).astype(np.float32),
                      np.arange(1, 6), np.linspace(1, 0.5, 5), {"checkpoint_sha256": sha})
    return traj.save(tmp_path / "traj.npz")


def test_trajectory_problems(tmp_path):
    good = _trajectory(tmp_path)
    raw = good.read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[: len(raw) * 2 // 3])
    with pytest.raises(InputError, match="trunc.npz: not a readable trajectory"):
        Trajectory.load(tmp_path / "trunc.npz")
    with pytest.raises(InputError, match="recorded with checkpoint aaaaaaaaaaaa…, not the loaded one"):
        Trajectory.load(good, expect_checkpoint="b" * 64)
    assert Trajectory.load(good, expect_checkpoint="a" * 64).depth == 2
    np.savez(tmp_path / "foreign.npz", metadata=np.array(json.dumps({"format": "x"})))
    with pytest.raises(InputError, match="not an lsdebm trajectory"):
        Trajectory.load(tmp_path / "foreign.npz")
    with np.load(good) as data:
        arrays = {k: data[k] for k in data.files}
    meta = json.loads(str(arrays["metadata"]))
    for name, change, fragment in (
            ("newer", {"metadata": np.array(json.dumps({**meta, "format_version": 9}))}, "newer"),
            ("listmeta", {"metadata": np.array("[1, 2]")}, "metadata missing or corrupt"),
            ("shapes", {"energy": np.zeros((1, 2, 4), np.float32)}, "inconsistent trajectory array shapes"),
            ("strings", {"k_values": np.array(["a", "b", "c", "d", "e"])}, "wrong type or rank"),
            ("extra", {"unrelated": np.zeros(3)}, None)):
        np.savez(tmp_path / f"{name}.npz", **{**arrays, **change})
        if fragment is None:
            assert Trajectory.load(tmp_path / f"{name}.npz").n_k == 5
        else:
            with pytest.raises(InputError, match=fragment):
                Trajectory.load(tmp_path / f"{name}.npz")
    anonymous = Trajectory.load(good)
    anonymous.metadata.pop("checkpoint_sha256")
    anonymous.save(tmp_path / "anon.npz")
    with pytest.warns(InputWarning, match="does not record which checkpoint"):
        Trajectory.load(tmp_path / "anon.npz", expect_checkpoint="b" * 64)


def test_trajectory_that_would_decompress_past_the_memory_limit(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.npz"
    np.savez_compressed(bomb, forward=np.zeros((1, 2, 2_500_000), np.float32))  # 20 MB of zeros, ~20 kB on disk
    assert bomb.stat().st_size < 200_000
    monkeypatch.setenv("LSDEBM_MAX_MEMORY_GB", "0.01")
    with pytest.raises(InputError, match="bomb.npz: the trajectory needs 19.1 MiB of memory"):
        Trajectory.load(bomb)


def test_existing_outputs_are_never_replaced_without_overwrite(tmp_path, tiny_cfg):
    traj = _trajectory(tmp_path)
    before = traj.read_bytes()
    with pytest.raises(LsdebmError, match="--overwrite"):
        Trajectory.load(traj).save(traj)
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"precious")
    with pytest.raises(LsdebmError, match="--overwrite"):
        save_checkpoint(build_model("vae", tiny_cfg), ckpt)
    assert traj.read_bytes() == before and ckpt.read_bytes() == b"precious"
    assert listing(tmp_path) == ["m.safetensors", "traj.npz"]  # no temporary files left


# --- napari: the reader and the checkpoint panel ------------------------------------------------------


@pytest.mark.gui
def test_napari_reader_and_checkpoint_panel_refuse_bad_files(make_napari_viewer, tmp_path, marker, tiny_ckpts):
    pytest.importorskip("napari")
    from napari_lsdebm._ui.checkpoint_panel import CheckpointPanel

    viewer = make_napari_viewer()
    corrupt = tmp_path / "corrupt.nii.gz"
    corrupt.write_bytes(gzip.compress(b"not a nifti at all" * 40))
    with pytest.raises(Exception, match="corrupt.nii.gz: cannot read as NIfTI") as info:
        viewer.open(str(corrupt), plugin="napari-lsdebm")
    assert "Traceback" not in str(info.value)
    assert len(viewer.layers) == 0
    panel = CheckpointPanel()
    raw = tiny_ckpts["vae"].read_bytes()
    (tmp_path / "half.safetensors").write_bytes(raw[: len(raw) // 2])
    for bad, fragment in ((plant_pickle(tmp_path / "evil.pt", marker), "never loaded"),
                          (tmp_path / "half.safetensors", "half.safetensors")):
        assert panel.load(bad) is None
        assert panel.error.text().startswith("Not loaded:") and fragment in panel.error.text()
        assert "\n" not in panel.error.text()
    assert panel.load(tiny_ckpts["vae"]) is not None and panel.error.text() == ""


@pytest.mark.parametrize("argv, what", [
    (["phantoms", "--out", "OUT", "--n", "1", "--size", "6000"], "6000^3 phantom needs"),
    (["train", "--model", "vae", "--preset", "tiny", "--phantoms", "2", "--out", "OUT/m.safetensors",
      "--set", "model.grid=100000"], "model grid 100000^3"),
])
def test_huge_phantom_and_model_grid_refused_with_memory_needed(argv, what, tmp_path, capsys):
    argv = [a.replace("OUT", str(tmp_path / "out")) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert what in err and "limit" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.*"))


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04garbage", b"not a zip at all"])
def test_view_refuses_bad_trajectory_in_one_line(content, tmp_path, capsys, monkeypatch):
    import lsdebm.cli.view as view

    monkeypatch.setattr(view, "has_display", lambda: True)
    bad = tmp_path / "run.npz"
    bad.write_bytes(content)
    assert main(["view", str(bad)]) == 2
    _one_line_error(capsys, "run.npz")
    from napari_lsdebm.io.trajectory import get_trajectory_reader
    assert get_trajectory_reader(str(bad)) is not None  # the plugin claims it and explains, too


def test_view_refuses_a_file_no_napari_reader_opens_before_a_window_opens(tmp_path, capsys, monkeypatch):
    """`lsdebm view notes.txt` opened the window, then ended in napari's NoAvailableReaderError traceback."""
    import napari

    import lsdebm.cli.view as view

    monkeypatch.setattr(view, "has_display", lambda: True)
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: pytest.fail("a window opened"))
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert main(["view", str(notes)]) == 2
    _one_line_error(capsys, "notes.txt: no napari reader opens this file", "expected a NIfTI mask")


def test_view_refuses_a_2d_teaching_checkpoint_before_a_window_opens(capsys, monkeypatch):
    """`lsdebm view --checkpoint lsdebm-digits16.safetensors` loaded a 2D model into the 3D explorer, exit 0."""
    import napari

    import lsdebm.cli.view as view
    from lsdebm.teach.checkpoints import bundled_teach_path

    monkeypatch.setattr(view, "has_display", lambda: True)
    monkeypatch.setattr(napari, "Viewer", lambda *a, **k: pytest.fail("a window opened"))
    assert main(["view", "--checkpoint", str(bundled_teach_path("lsdebm"))]) == 2
    _one_line_error(capsys, "lsdebm-digits16.safetensors: a 2D lsdebm model", "the explorer needs a 3D one")


def test_nan_volume_on_the_model_grid_is_refused_by_explorer_and_compare(tiny_cfg):
    from lsdebm.explore.record import prepare_input
    from lsdebm.review.compare import compare_events

    g = tiny_cfg.model.grid
    x = np.zeros((g,) * 3, np.float32)
    x[4:10, 4:10, 4:10] = 1
    x[0, 0, 0] = np.nan
    affine = np.diag([tiny_cfg.model.spacing] * 3 + [1.0])
    with pytest.raises(InputError, match="NaN or infinite"):
        prepare_input(x, affine, g, tiny_cfg.model.spacing)
    with pytest.raises(InputError, match="NaN or infinite"):
        next(iter(compare_events(x, affine, {})))


def test_bad_slab_and_recording_options_write_nothing(tmp_path, tiny_ckpts, capsys):
    """--slice-thickness beyond the volume and --record-every 0 with a trajectory used to end in a traceback,
    the second after writing the mask without its sidecar: now one line, exit 2, nothing written."""
    from lsdebm.data.nifti import write_volume

    mask = np.zeros((40, 40, 6), np.uint8)
    mask[5:35, 5:35, 1:5] = 1  # 18 cm3 in 30 mm along the slab axis
    src = write_volume(tmp_path / "thick.nii.gz", mask, np.diag([1.0, 1.0, 5.0, 1.0]))
    out = tmp_path / "out"
    for extra, fragment in ((["--slice-thickness", "120"], "--slice-thickness 120: expected a slab thickness"),
                            (["--slice-thickness", "16"], "leaves fewer than two slabs in the input's 30 mm"),
                            (["--record-every", "0", "--trajectory", str(out / "t.npz")],
                             "--record-every 0 must be >= 1")):
        argv = ["reconstruct", str(src), "-o", str(out / "r.nii.gz"), "--checkpoint", str(tiny_ckpts["lsdebm"]),
                "--no-reconnet", "--threads", "1", *extra]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert fragment in err and len(err.splitlines()) == 1, err
        assert not out.exists() or not any(out.iterdir())


def test_with_several_inputs_errors_and_warnings_name_the_file(tmp_path, tiny_ckpts, capsys):
    """Eight files, one of them bad: the message says which (it used to say only 'label 1 is 0.40 cm3')."""
    from lsdebm.data.nifti import write_volume

    affine = np.diag([1.0, 1.0, 5.0, 1.0])
    good = np.zeros((40, 40, 6), np.uint8)
    good[5:35, 5:35, 1:5] = 1
    border = np.roll(good, 5, axis=0)  # touches the volume's edge along axis 0
    tiny = np.zeros_like(good)
    tiny[10:12, 10:12, 2] = 1
    paths = [write_volume(tmp_path / name, data, affine)
             for name, data in (("a.nii.gz", good), ("edge.nii.gz", border), ("tiny.nii.gz", tiny))]
    base = ["reconstruct", "-o", str(tmp_path / "out"), "--checkpoint", str(tiny_ckpts["lsdebm"]), "--no-reconnet",
            "--threads", "1"]
    assert main([*base[:1], *map(str, paths), *base[1:]]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"lsdebm: error: {paths[2]}: no vertebra to refine") and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
    assert main([*base[:1], *map(str, paths[:2]), *base[1:], "--steps", "1", "--langevin-steps", "2"]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("lsdebm: warning:")]
    assert warned == [f"lsdebm: warning: {paths[1]}: label 1 touches the volume border along axis [0]; it may be "
                      "cut off (the crop is padded with background)"]


def test_small_reconstruct_option_gaps(tmp_path, tiny_ckpts, capsys):
    """-o out/ for one input is a folder (as the README writes it), a --slice-axis across thin voxels of a
    thick-slice grid is warned about (with or without --slice-thickness), and a non-finite --step-size is refused."""
    from lsdebm.data.nifti import write_volume

    mask = np.zeros((40, 8, 40), np.uint8)
    mask[5:35, 1:7, 5:35] = 1
    src = write_volume(tmp_path / "thick.nii.gz", mask, np.diag([1.0, 5.0, 1.0, 1.0]))
    base = ["reconstruct", str(src), "--checkpoint", str(tiny_ckpts["vae"]), "--no-reconnet", "--threads", "1"]
    assert main([*base, "-o", f"{tmp_path / 'fresh'}/"]) == 0
    assert (tmp_path / "fresh" / "thick.nii.gz").is_file()
    capsys.readouterr()
    assert main([*base, "-o", str(tmp_path / "axis0.nii.gz"), "--slice-axis", "0"]) == 0
    err = capsys.readouterr().err
    assert "--slice-axis 0: its slabs are taken as thin as its 1 mm voxels" in err and "axis 1 has 5 mm" in err
    args = ["-o", str(tmp_path / "axis0t.nii.gz"), "--slice-axis", "0", "--slice-thickness", "5"]
    assert main([*base, *args]) == 0  # refined as declared, with a word on the likely mix-up
    err = capsys.readouterr().err
    assert "--slice-axis 0: 5 mm slabs declared along axis 0 (1 mm voxels), but axis 1 has 5 mm" in err
    assert main([*base, "-o", str(tmp_path / "axis1t.nii.gz"), "--slice-axis", "1", "--slice-thickness", "5"]) == 0
    assert "--slice-axis" not in capsys.readouterr().err  # declared along the thick axis: nothing to say
    for bad in ("inf", "nan"):
        assert main([*base, "-o", str(tmp_path / "s.nii.gz"), "--method", "lsdebm", "--step-size", bad]) == 2
        assert "--step-size" in capsys.readouterr().err
