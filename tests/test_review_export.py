import json

import numpy as np
import pytest

pytest.importorskip("pyvista")
pytest.importorskip("imageio")

from lsdebm.data.nifti import read_volume  # noqa: E402
from lsdebm.data.phantoms import make_vertebra  # noqa: E402
from lsdebm.errors import InputError, LsdebmError  # noqa: E402
from lsdebm.review.animation import export_animation, trajectory_frames, trajectory_order  # noqa: E402
from lsdebm.review.export import export_image, export_mask, export_mesh, world_mesh  # noqa: E402
from lsdebm.review.surface import mask_mesh  # noqa: E402

PROV = {"format": "lsdebm-provenance", "checkpoints": [{"role": "method", "sha256": "ab" * 32}], "seed": 7,
        "settings": {"K": 5}, "outputs": [], "versions": {"lsdebm": "x"}}


@pytest.fixture(scope="module")
def phantom():
    return make_vertebra("L2", 1, 32, 4.0)


def anisotropic_affine():
    a = np.array([[0.0, 0.0, 1.5, 10.0], [0.0, 2.0, 0.0, -20.0], [3.0, 0.0, 0.0, 5.0], [0, 0, 0, 1.0]])
    assert np.linalg.det(a[:3, :3]) < 0
    return a  # axes permuted (odd permutation: det < 0), anisotropic, translated


def test_nifti_export_keeps_affine_and_writes_sidecar(tmp_path, phantom):
    affine = anisotropic_affine()
    path, side = export_mask(tmp_path / "pred.nii.gz", phantom.mask, affine, PROV)
    vol = read_volume(path)
    np.testing.assert_allclose(vol.affine, affine)
    assert np.array_equal(vol.data, phantom.mask)
    record = json.loads(side.read_text())
    assert side.name == "pred.provenance.json"
    assert record["checkpoints"][0]["sha256"] == "ab" * 32 and record["seed"] == 7
    assert record["export"]["kind"] == "mask" and str(path) in record["outputs"]
    assert "pyvista" in record["versions"] and record["versions"]["lsdebm"] == "x"
    with pytest.raises(LsdebmError, match="exists"):
        export_mask(path, phantom.mask, affine, PROV)


def signed_volume(vertices, faces) -> float:
    v = np.asarray(vertices, float)[faces]
    return float(np.einsum("ij,ij->i", v[:, 0], np.cross(v[:, 1], v[:, 2])).sum() / 6)


def test_mesh_exports_load_back_with_pyvista_in_world_mm(tmp_path, phantom):
    import pyvista as pv

    from lsdebm.data.nifti import affine_spacing

    for affine in (phantom.affine, anisotropic_affine()):
        mesh = mask_mesh(phantom.mask, affine_spacing(affine), smooth_iterations=5)
        expected = world_mesh(mesh, affine)
        sub = tmp_path / f"det{np.sign(np.linalg.det(affine[:3, :3])):+.0f}"
        files, side = export_mesh(sub / "v.stl", mesh, affine, PROV, formats=("stl", "ply", "obj", "vtp"))
        assert [f.suffix for f in files] == [".stl", ".ply", ".obj", ".vtp"]
        for f in files:
            back = pv.read(f)
            assert back.n_cells == len(mesh.faces)
            np.testing.assert_allclose(np.array(back.bounds).reshape(3, 2).T,
                                       [expected.vertices.min(0), expected.vertices.max(0)], atol=1e-3)
        stl = pv.read(files[0]).triangulate()
        assert signed_volume(stl.points, np.asarray(stl.faces).reshape(-1, 4)[:, 1:]) > 0  # normals point out
        assert json.loads(side.read_text())["export"]["formats"] == ["stl", "ply", "obj", "vtp"]
    with pytest.raises(InputError, match="mesh formats"):
        export_mesh(tmp_path / "v.xyz", mesh)


def test_image_export(tmp_path):
    import imageio.v3 as iio

    img = np.zeros((10, 12, 3), np.uint8)
    img[2:5, 3:9] = 200
    path, side = export_image(tmp_path / "shot.png", img, None)
    assert np.array_equal(iio.imread(path)[..., :3], img)
    assert json.loads(side.read_text())["export"]["kind"] == "screenshot"


@pytest.fixture(scope="module")
def tiny_trajectory(tiny_ckpts):
    from lsdebm.methods import RunSettings, run_events
    from lsdebm.runtime.checkpoint import load_checkpoint
    from lsdebm.tasks.reconstruct import make_recorder

    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    settings = RunSettings(seed=1)
    recorder = make_recorder(ckpt.model, settings, every=2)
    x = np.zeros((16,) * 3, np.float32)
    x[4:12, 5:11, 3:13] = 1
    recorder.consume(run_events(ckpt.model, x, settings))
    return ckpt, recorder.trajectory()


@pytest.mark.parametrize("suffix", [".gif", ".mp4"])
def test_animation_has_the_expected_frame_count(tmp_path, tiny_trajectory, suffix):
    import imageio.v2 as iio2
    import imageio.v3 as iio
    import torch

    from lsdebm.methods import decode

    ckpt, traj = tiny_trajectory
    n_forward = traj.forward.shape[1]
    expected = {"t": traj.n_frames, "tk": n_forward + traj.depth * traj.n_k, "k": traj.n_k}
    assert traj.n_k > 1 and traj.depth > 0
    for along, n in expected.items():
        assert len(trajectory_order(traj, along, frame=-1)) == n

    def dec(z):
        return decode(ckpt.model, torch.as_tensor(z)[None])[0, 0].numpy()

    frames = list(trajectory_frames(traj, dec, "tk"))
    path, side = export_animation(tmp_path / f"traj{suffix}", frames, fps=10, provenance=PROV, along="tk")
    if suffix == ".gif":
        count = len(iio.imread(path, index=None))
    else:
        with iio2.get_reader(path) as reader:
            count = reader.count_frames()
    assert count == expected["tk"]
    record = json.loads(side.read_text())
    assert record["export"]["frames"] == expected["tk"] and record["export"]["along"] == "tk"


def test_animation_rejects_bad_input(tmp_path):
    with pytest.raises(InputError, match="gif"):
        export_animation(tmp_path / "a.avi", [np.zeros((4, 4, 3), np.uint8)])
    with pytest.raises(InputError, match="no frames"):
        export_animation(tmp_path / "a.gif", [])
    with pytest.raises(InputError, match="differ in size"):
        export_animation(tmp_path / "a.gif", [np.zeros((4, 4, 3), np.uint8), np.zeros((5, 4, 3), np.uint8)])


def test_rgba_and_gray_frames_become_rgb_gif_frames(tmp_path):
    import imageio.v3 as iio

    from lsdebm.review.animation import render_volume, with_progress

    rgb = [with_progress(render_volume(np.full((6, 6, 6), v)), v) for v in (0.2, 0.5, 0.9)]
    h, w = rgb[0].shape[:2]
    rgba = [np.dstack([f, np.full((h, w), 255, np.uint8)]) for f in rgb]
    path, _ = export_animation(tmp_path / "rgba.gif", rgba + [rgb[0][..., 0]], fps=4)
    frames = iio.imread(path, index=None)
    assert frames.shape == (4, h, w, 3)
