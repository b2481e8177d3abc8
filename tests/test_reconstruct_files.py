"""`lsdebm reconstruct`'s files: inputs are never replaced, an input's outputs are written all or none, and
labels carried over onto a finer output grid keep the input's outer half voxel (fresh-eyes QA, session 20)."""
from __future__ import annotations

import numpy as np
import pytest

import lsdebm.cli.reconstruct as cli_reconstruct
from lsdebm.cli.main import main
from lsdebm.data.boxes import resample
from lsdebm.data.grids import output_grid
from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.errors import LsdebmError
from lsdebm.tasks.reconstruct import resample_labels

pytestmark = pytest.mark.usefixtures("single_thread")

# Oblique, anisotropic, off-centre: voxel axes permuted and flipped, 5/6/4 mm spacing (as tests/test_reconstruct.py).
AFFINE = np.array([[0.0, 0.0, -5.0, 30.0], [6.0, 0.0, 0.0, -12.0], [0.0, 4.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]])


def _ck(tiny_ckpts):
    return ["--checkpoint", str(tiny_ckpts["vae"]), "--no-reconnet"]


def _files(folder):
    return sorted(p.name for p in folder.rglob("*")) if folder.exists() else []


def test_overwrite_never_replaces_an_input(tmp_path, tiny_pair, tiny_ckpts, capsys):
    """`-o in/ --overwrite` replaced every input by its reconstruction; `-o X --like X --overwrite` the image."""
    folder = tmp_path / "in"
    inputs = [write_volume(folder / f"case{i}.nii.gz", tiny_pair[1], AFFINE) for i in range(2)]
    like = write_volume(tmp_path / "t1.nii.gz", np.zeros((20, 20, 20), np.int16), AFFINE)
    probs = write_volume(folder / "r_probs.nii.gz", tiny_pair[1], AFFINE)  # what --save-probs of -o in/r.nii.gz writes
    inputs.append(probs)
    before = {p: p.read_bytes() for p in inputs}
    runs = [[*map(str, inputs[:2]), "-o", f"{folder}/"], [str(inputs[0]), "-o", str(inputs[0])],
            [str(probs), "-o", str(folder / "r.nii.gz"), "--save-probs"],
            [str(inputs[0]), "-o", str(like), "--like", str(like)]]
    for argv in runs:
        assert main(["reconstruct", *argv, "--overwrite", *_ck(tiny_ckpts)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "this run reads that file" in err, err
    assert {p: p.read_bytes() for p in inputs} == before
    assert _files(folder) == ["case0.nii.gz", "case1.nii.gz", "r_probs.nii.gz"]
    assert not read_volume(like).data.any()


def test_several_inputs_and_a_file_name_are_refused(tmp_path, tiny_pair, tiny_ckpts, capsys):
    """Two inputs with `-o out.nii.gz` made a directory named out.nii.gz; `-o out.nii.gz/` still asks for one."""
    inputs = [str(write_volume(tmp_path / f"c{i}.nii.gz", tiny_pair[1], AFFINE)) for i in range(2)]
    assert main(["reconstruct", *inputs, "-o", str(tmp_path / "out.nii.gz"), *_ck(tiny_ckpts)]) == 2
    err = capsys.readouterr().err.strip()
    assert "2 inputs need an output directory" in err and not (tmp_path / "out.nii.gz").exists()


@pytest.mark.parametrize("failure", [LsdebmError("cannot write x.stl: No space left on device"), KeyboardInterrupt()])
def test_a_failing_mesh_takes_the_inputs_other_outputs_along(tmp_path, tiny_pair, tiny_ckpts, monkeypatch, capsys,
                                                               failure):
    """An unwritable --mesh (e.g. under /proc) failed after the NIfTI was written: a mask without its mesh and
    provenance sidecar, exit 2, and a rerun refused with 'already exists'."""
    src = write_volume(tmp_path / "lq.nii.gz", tiny_pair[1], AFFINE)
    out = tmp_path / "out"

    def write_stl(*args, **kwargs):
        raise failure

    monkeypatch.setattr(cli_reconstruct, "_result_mesh", lambda result, path: object())  # untrained: empty result
    monkeypatch.setattr(cli_reconstruct, "write_stl", write_stl)
    argv = ["reconstruct", str(src), "-o", str(out / "r.nii.gz"), "--save-probs", "--mesh", str(out / "r.stl"),
            *_ck(tiny_ckpts)]
    assert main(argv) == (130 if isinstance(failure, KeyboardInterrupt) else 2)
    capsys.readouterr()
    assert _files(out) == []


def test_a_mesh_path_under_a_file_is_refused_before_the_run(tmp_path, tiny_pair, capsys):
    src = write_volume(tmp_path / "lq.nii.gz", tiny_pair[1], AFFINE)
    (tmp_path / "afile").write_text("x")
    argv = ["reconstruct", str(src), "-o", str(tmp_path / "r.nii.gz"), "--mesh", str(tmp_path / "afile" / "r.stl"),
            "--checkpoint", str(tmp_path / "no-such.safetensors")]  # checked first: no model is loaded
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "afile is a file, not a directory" in err and not (tmp_path / "r.nii.gz").exists()


def test_nearest_resampling_keeps_the_outer_half_voxel():
    """An isotropic output grid keeps the input's outer voxel edges, so its first and last centres lie half an
    output voxel inside them, outside the input's first and last centres: SciPy's 'constant' mode read 0 there,
    and every label carried over (and the observation the output step projects onto) lost its outer slices."""
    data = np.zeros((4, 5, 3), np.int16)
    data[:, :, 0] = 7
    data[:, :, -1] = -2
    affine = np.diag([1.0, 1.0, 4.0, 1.0])
    shape, out_affine = output_grid(data.shape, affine, None, None)
    assert shape == (4, 5, 12)
    carried = resample_labels(data, affine, shape, out_affine)
    assert (carried[:, :, :4] == 7).all() and (carried[:, :, -4:] == -2).all() and not carried[:, :, 4:8].any()
    assert not resample(data, (4, 5, 14), out_affine @ _shift(-1), affine, order=0)[:, :, 0].any()  # beyond: 0


def _shift(k: float) -> np.ndarray:
    move = np.eye(4)
    move[2, 3] = k
    return move


def test_labels_carried_over_keep_the_field_of_views_edges(tmp_path, tiny_pair, tiny_ckpts, capsys):
    """A label map whose other structures touch the field of view's faces, on a 5/6/4 mm grid written at 4 mm:
    the carried-over label fills the output's faces as it fills the input's."""
    data = tiny_pair[1].astype(np.int16)
    faces = np.zeros(data.shape, bool)
    for axis in range(3):
        faces[(slice(None),) * axis + (0,)] = faces[(slice(None),) * axis + (-1,)] = True
    data[faces & (data == 0)] = 99
    src = write_volume(tmp_path / "map.nii.gz", data, AFFINE)
    out = tmp_path / "r.nii.gz"
    assert main(["reconstruct", str(src), "-o", str(out), "--label", "1", *_ck(tiny_ckpts)]) == 0
    capsys.readouterr()
    result = read_volume(out).data
    assert result.shape != data.shape  # written on the isotropic grid
    for axis in range(3):
        for end in (0, -1):
            face = np.take(result, end, axis=axis)
            assert (face == 99).mean() > 0.9, (axis, end, (face == 99).mean())
