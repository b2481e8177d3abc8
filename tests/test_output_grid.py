"""Output grids (isotropic over a thick-slice input, --like, --native-grid) and --mesh STL files."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.data.grids import is_anisotropic, isotropic_grid, output_grid
from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.errors import InputError
from lsdebm.review.meshfile import read_stl, write_mesh

pytestmark = pytest.mark.usefixtures("single_thread")

# PIR-like: array axes point posterior, inferior, right; the third (through-plane) axis is 4 mm.
PIR = np.array([[0.0, 0.0, 4.0, -40.0], [-1.0, 0.0, 0.0, 25.0], [0.0, -1.0, 0.0, 30.0], [0.0, 0.0, 0.0, 1.0]])
SHAPE = (48, 40, 12)  # 48 x 40 x 48 mm


def _edges(shape, affine):
    """World positions of the two outer voxel-edge corners (index -0.5 and n - 0.5)."""
    affine = np.asarray(affine, float)
    lo, hi = np.full(3, -0.5), np.asarray(shape, float) - 0.5
    return [affine[:3, :3] @ v + affine[:3, 3] for v in (lo, hi)]


@pytest.mark.parametrize("affine", [PIR, PIR @ np.diag([-1.0, 1.0, -1.0, 1.0])], ids=["pir", "flipped"])
def test_isotropic_grid_keeps_field_of_view_and_orientation(affine):
    shape, out = isotropic_grid(SHAPE, affine)
    assert shape == (48, 40, 48)
    np.testing.assert_allclose(np.linalg.norm(out[:3, :3], axis=0), 1.0)
    directions = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    np.testing.assert_allclose(out[:3, :3], directions)  # same axis directions, 1 mm
    for a, b in zip(_edges(SHAPE, affine), _edges(shape, out)):
        np.testing.assert_allclose(a, b, atol=1e-9)
    # first new centre 1.5 mm before the old first centre along the 4 mm axis
    np.testing.assert_allclose(out[:3, 3], affine[:3, 3] - 1.5 * directions[:, 2])


def test_a_float32_header_of_a_rotated_scan_keeps_its_voxel_edges():
    """A real VerSe header (verse007 L3, 1 x 1 x 3 mm, rotated, stored as float32): its 1 mm axes come out
    1.00000003 and 0.99999998 mm long. The 1 mm grid over it keeps the input's outer voxel edges, as for an
    exact header (a strict ceil had made 104 x 65 x 100 voxels, every centre half a voxel off along axis 1)."""
    rotated = np.array([[0.04578, 0.07575, 2.98823, -36.5], [-0.99895, 0.0, 0.13773, -50.9],
                        [0.00348, -0.99713, 0.22700, -120.8], [0.0, 0.0, 0.0, 1.0]])
    directions = rotated[:3, :3] / np.linalg.norm(rotated[:3, :3], axis=0)
    exact = rotated.copy()
    exact[:3, :3] = directions * np.array([1.0, 1.0, 3.0])
    stored = exact.astype(np.float32).astype(float)  # what a NIfTI sform holds
    assert not np.allclose(np.linalg.norm(stored[:3, :3], axis=0), (1.0, 1.0, 3.0), rtol=0, atol=1e-8)
    for affine in (exact, stored):
        shape, out = isotropic_grid((104, 64, 33), affine)
        assert shape == (104, 64, 99)
        for a, b in zip(_edges((104, 64, 33), affine), _edges(shape, out)):
            np.testing.assert_allclose(a, b, atol=1e-4)


def test_grid_rule_and_limits(tmp_path):
    assert is_anisotropic(PIR) and not is_anisotropic(np.diag([1.0, 1.1, 1.0, 1.0]))
    assert output_grid((10, 10, 10), np.eye(4)) is None
    assert output_grid(SHAPE, PIR)[0] == (48, 40, 48)
    assert output_grid(SHAPE, PIR, out_spacing=2.0)[0] == (24, 20, 24)
    for bad in (0, -1, 25, float("nan")):
        with pytest.raises(InputError, match="--out-spacing"):
            output_grid(SHAPE, PIR, out_spacing=bad)
    with pytest.raises(InputError, match="voxels; pass a larger --out-spacing"):
        output_grid((2000, 2000, 200), np.diag([1.0, 1.0, 4.0, 1.0]), out_spacing=0.5)
    like = write_volume(tmp_path / "like.nii.gz", np.zeros((5, 6, 7), np.uint8), np.diag([2.0, 2.0, 2.0, 1.0]))
    shape, affine = output_grid(SHAPE, PIR, out_spacing=1.0, like=like)  # like wins
    assert shape == (5, 6, 7) and np.allclose(affine, np.diag([2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InputError, match="missing.nii"):
        output_grid(SHAPE, PIR, like=tmp_path / "missing.nii")


@pytest.fixture()
def thick(tmp_path):
    """A vertebra-sized blob on a 1 x 1 x 4 mm PIR grid."""
    index = np.indices(SHAPE).astype(float)
    world = np.tensordot(PIR[:3, :3], index, 1) + PIR[:3, 3, None, None, None]
    centre = _edges(SHAPE, PIR)[0] / 2 + _edges(SHAPE, PIR)[1] / 2
    radii = np.array([18.0, 14.0, 12.0])
    mask = (((world - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    return write_volume(tmp_path / "thick.nii.gz", mask.astype(np.uint8), PIR)


def _run(thick, out, tiny_ckpts, *extra, trained=False):
    checkpoint = "vae-default" if trained else str(tiny_ckpts["vae"])  # the untrained tiny VAE gives empty masks
    return main(["reconstruct", str(thick), "-o", str(out), "--checkpoint", checkpoint, "--no-reconnet", *extra])


def _world_bounds(volume):
    index = np.argwhere(volume.data != 0).T.astype(float)
    world = volume.affine[:3, :3] @ index + volume.affine[:3, 3:4]
    return world.min(1), world.max(1)


def test_thick_slices_give_1mm_output_and_mesh(tmp_path, thick, tiny_ckpts, capsys):
    out, mesh = tmp_path / "r.nii.gz", tmp_path / "r.stl"
    assert _run(thick, out, tiny_ckpts, "--mesh", str(mesh), trained=True) == 0
    assert "output grid 48x40x48 at 1x1x1 mm" in capsys.readouterr().err
    result = read_volume(out)
    expected = isotropic_grid(SHAPE, PIR)
    assert result.data.shape == expected[0] and np.allclose(result.affine, expected[1])
    assert np.allclose(result.header.get_zooms(), 1.0)
    prov = json.loads((tmp_path / "r.provenance.json").read_text())
    assert prov["output_grid"]["shape"] == [48, 40, 48] and "anisotropic" in prov["output_grid"]["rule"]
    assert str(mesh) in prov["outputs"]
    triangles = read_stl(mesh)
    assert len(triangles)
    lo, hi = _world_bounds(result)
    np.testing.assert_allclose(triangles.reshape(-1, 3).min(0), lo, atol=2.0)
    np.testing.assert_allclose(triangles.reshape(-1, 3).max(0), hi, atol=2.0)


def test_like_and_native_grid(tmp_path, thick, tiny_ckpts):
    like_affine = np.diag([2.0, 2.0, 2.0, 1.0])
    like_affine[:3, 3] = [-60.0, -40.0, -10.0]
    like = write_volume(tmp_path / "image.nii.gz", np.zeros((40, 40, 30), np.int16), like_affine)
    assert _run(thick, tmp_path / "like.nii.gz", tiny_ckpts, "--like", str(like)) == 0
    result = read_volume(tmp_path / "like.nii.gz")
    assert result.data.shape == (40, 40, 30) and np.allclose(result.affine, like_affine)
    # only the grid is used: a 4D series of the same subject (a DWI, an fMRI run) lends its first three axes
    series = tmp_path / "series.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((40, 40, 30, 3), np.int16), like_affine), series)
    assert _run(thick, tmp_path / "like4d.nii.gz", tiny_ckpts, "--like", str(series)) == 0
    assert np.array_equal(read_volume(tmp_path / "like4d.nii.gz").data, result.data)
    assert _run(thick, tmp_path / "native.nii.gz", tiny_ckpts, "--native-grid") == 0
    native = read_volume(tmp_path / "native.nii.gz")
    assert native.data.shape == SHAPE and np.allclose(native.affine, PIR)


def test_a_like_grid_that_misses_or_cuts_the_structure(tmp_path, thick, tiny_ckpts, capsys):
    """An image of another scan (its grid a metre away) used to give an empty mask and exit 0; half of the
    structure on it, a mask cut in half without a word."""
    far = np.diag([2.0, 2.0, 2.0, 1.0])
    far[:3, 3] = [940.0, -40.0, -10.0]
    far_image = write_volume(tmp_path / "far.nii.gz", np.zeros((40, 40, 30), np.int16), far)
    assert _run(thick, tmp_path / "far_out.nii.gz", tiny_ckpts, "--like", str(far_image)) == 2
    err = capsys.readouterr().err.strip()
    assert "does not hold any of the structures to refine" in err and len(err.splitlines()) == 1
    assert not list(tmp_path.glob("far_out*"))
    lo, hi = _edges(SHAPE, PIR)
    half = np.diag([1.0, 1.0, 1.0, 1.0])
    half[:3, 3] = np.minimum(lo, hi) + 0.5
    half_shape = (int(abs(hi - lo)[0] / 2), int(abs(hi - lo)[1]), int(abs(hi - lo)[2]))  # the lower half along x
    half_image = write_volume(tmp_path / "half.nii.gz", np.zeros(half_shape, np.int16), half)
    assert _run(thick, tmp_path / "half_out.nii.gz", tiny_ckpts, "--like", str(half_image)) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if "warning" in line]
    assert len(warned) == 1 and "% of the structures' voxels lie in its field of view" in warned[0]
    assert 40 <= int(warned[0].split("only ")[1].split("%")[0]) <= 60


@pytest.mark.parametrize("extra, fragment", [
    (["--out-spacing", "0"], "--out-spacing 0 must be > 0"),
    (["--like", "missing.nii.gz"], "missing.nii.gz"),
    (["--mesh", "surface.txt"], "mesh files must end with .stl"),
    (["--mesh", "surface.stl"], "the reconstruction is empty"),  # the untrained tiny VAE
    (["--out-spacing", "1", "--native-grid"], "mutually exclusive"),
])
def test_bad_grid_and_mesh_options_write_nothing(tmp_path, thick, tiny_ckpts, capsys, extra, fragment):
    out = tmp_path / "out"
    extra = [str(tmp_path / e) if e.endswith((".gz", ".txt", ".stl")) else e for e in extra]
    assert _run(thick, out / "r.nii.gz", tiny_ckpts, *extra) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in lines if line.startswith("lsdebm: error:")]  # progress lines may precede it
    assert len(errors) == 1 and errors[0] == lines[-1] and fragment in errors[0]
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["thick.nii.gz"]


def test_write_mesh_multilabel_and_flipped_affine(tmp_path):
    labels = np.zeros((12, 12, 12), np.int16)
    labels[2:5, 2:5, 2:5], labels[7:10, 7:10, 7:10] = 3, 5
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    path = write_mesh(tmp_path / "m.stl", labels, affine)
    tri = read_stl(path).reshape(-1, 3)
    np.testing.assert_allclose(tri.min(0), [-19.0, 3.0, 3.0], atol=1.0)  # both labels in one mesh
    np.testing.assert_allclose(tri.max(0), [-3.0, 19.0, 19.0], atol=1.0)
    with pytest.raises(InputError, match="must end with .stl"):
        write_mesh(tmp_path / "m.ply", labels, affine)
    with pytest.raises(InputError, match="empty"):
        write_mesh(tmp_path / "e.stl", np.zeros((4, 4, 4), np.uint8), affine)


def test_plugin_pastes_anisotropic_input_onto_the_isotropic_grid():
    from types import SimpleNamespace

    pytest.importorskip("qtpy")
    from lsdebm.data.frame import crop_label
    from lsdebm.explore import RunOutput
    from napari_lsdebm._ui.results import pasted_layer

    mask = np.zeros(SHAPE, np.uint8)
    mask[14:34, 10:30, 3:9] = 1
    crop, info = crop_label(mask, PIR, None, grid=16, spacing=4.0)
    output = RunOutput(trajectory=None, probs=crop[None].astype(np.float32), input=crop, seconds=0.0)
    src = SimpleNamespace(scale=(1.0, 1.0, 4.0), translate=(0.0, 0.0, 0.0), metadata={"affine": PIR})
    data, kwargs = pasted_layer(output, info, src)
    shape, affine = isotropic_grid(SHAPE, PIR)
    assert data.shape == shape and kwargs["grid"] == "output grid" and np.allclose(kwargs["metadata"]["affine"], affine)
    np.testing.assert_allclose(kwargs["scale"], (1.0, 1.0, 1.0))
    np.testing.assert_allclose(kwargs["translate"], (0.0, 0.0, -1.5))  # 1.5 mm before the first 4 mm centre
    iso = SimpleNamespace(scale=(4.0,) * 3, translate=(0.0,) * 3, metadata={})
    crop, info = crop_label(mask, np.diag([4.0, 4.0, 4.0, 1.0]), None, grid=16, spacing=4.0)
    data, kwargs = pasted_layer(RunOutput(None, crop[None].astype(np.float32), crop, 0.0), info, iso)
    assert data.shape == SHAPE and kwargs["grid"] == "input grid"


def test_explorer_result_goes_through_the_same_output_step_as_reconstruct():
    """The explorer's pasted reconstruction is measurement-aware, like `lsdebm reconstruct`'s output."""
    from types import SimpleNamespace

    pytest.importorskip("qtpy")
    from lsdebm.data.acquisition import find_acquisition
    from lsdebm.data.frame import crop_label
    from lsdebm.data.slab_projection import measured_output
    from lsdebm.explore import RunOutput
    from lsdebm.methods import RunSettings
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.runtime.loading import bundled_slab, output_step
    from napari_lsdebm._ui.results import pasted_layer

    ckpt = load_checkpoint("reconnet-default")  # bundled: projection 1.0 + interpolation 2.0
    mask = np.zeros(SHAPE, np.uint8)
    mask[14:34, 10:30, 3:9] = 1
    crop, info = crop_label(mask, PIR, None, grid=16, spacing=4.0)
    probs = np.clip(crop.astype(np.float32) * 0.9 + 0.05, 0, 1)  # a soft model output
    output = RunOutput(trajectory=None, probs=probs[None], input=crop, seconds=0.0)
    src = SimpleNamespace(scale=(1.0, 1.0, 4.0), translate=(0.0, 0.0, 0.0), metadata={"affine": PIR}, data=mask)
    shown, kwargs = pasted_layer(output, info, src, ckpt.model)
    shape, affine = isotropic_grid(SHAPE, PIR)
    acq = find_acquisition(mask, PIR)
    assert acq is not None
    ccfg, interpolator = output_step(ckpt.model, bundled_slab(), RunSettings())
    assert interpolator is not None  # the bundled learned slab interpolation, as in reconstruct
    expected, _ = measured_output(probs, info, mask != 0, PIR, acq, ccfg, shape, affine, interpolator)
    np.testing.assert_array_equal(shown, (expected.full() >= 0.5).astype(np.uint8))
    plain, _ = pasted_layer(output, info, src)
    assert not np.array_equal(shown, plain)


def test_the_python_api_writes_where_the_command_line_does(tmp_path, thick, tiny_ckpts):
    """`lsdebm.reconstruct(thick_file)` used to keep the 1 x 1 x 4 mm grid, where the projection onto the
    slabs returns the input unchanged; now it takes the command line's isotropic grid (None: the input's)."""
    import lsdebm
    from lsdebm.runtime.loading import load_models

    models = load_models(checkpoint=str(tiny_ckpts["vae"]), reconnet=False)
    assert _run(thick, tmp_path / "cli.nii.gz", tiny_ckpts) == 0
    cli = read_volume(tmp_path / "cli.nii.gz")
    api = lsdebm.reconstruct(str(thick), models=models)
    assert api.mask.shape == cli.data.shape == (48, 40, 48) and np.allclose(api.affine, cli.affine)
    assert np.array_equal(api.mask, cli.data)
    native = lsdebm.reconstruct(str(thick), models=models, out_grid=None)
    assert native.mask.shape == SHAPE and np.allclose(native.affine, PIR)
    with pytest.raises(InputError, match="out_grid='isotropic'"):
        lsdebm.reconstruct(str(thick), models=models, out_grid="isotropic")
