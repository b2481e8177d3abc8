"""`lsdebm reconstruct` and the pipeline API on tiny checkpoints (16^3 at 8 mm)."""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.data.nifti import read_volume, write_volume
from lsdebm.errors import InputError
from lsdebm.methods import RunSettings
from lsdebm.runtime.loading import Models, load_models
from lsdebm.sampling import Trajectory
from lsdebm.tasks.reconstruct import dist_rank, reconstruct_volume, shard, structure_labels

pytestmark = pytest.mark.usefixtures("single_thread")

# Oblique, anisotropic, off-centre: voxel axes permuted and flipped, 5/6/4 mm spacing.
AFFINE = np.array([[0.0, 0.0, -5.0, 30.0], [6.0, 0.0, 0.0, -12.0], [0.0, 4.0, 0.0, 7.0], [0.0, 0.0, 0.0, 1.0]])


@pytest.fixture()
def lq_file(tmp_path, tiny_pair):
    path = tmp_path / "lq.nii.gz"
    write_volume(path, tiny_pair[1], AFFINE)
    return path


def _ckpt_args(tiny_ckpts, kind="lsdebm"):
    return ["--checkpoint", str(tiny_ckpts[kind]), "--reconnet-checkpoint", str(tiny_ckpts["reconnet"])]


def test_reconstruct_keeps_grid_affine_and_writes_provenance(tmp_path, lq_file, tiny_ckpts, capsys):
    out, traj = tmp_path / "out" / "refined.nii.gz", tmp_path / "traj.npz"
    argv = ["reconstruct", str(lq_file), "-o", str(out), *_ckpt_args(tiny_ckpts), "--native-grid", "--repeats", "2",
            "--seed", "5", "--save-probs", "--trajectory", str(traj), "--langevin-steps", "3"]
    assert main(argv) == 0
    src, res = nib.load(lq_file), nib.load(out)
    assert res.shape == src.shape and np.allclose(res.affine, AFFINE)
    assert set(np.unique(np.asarray(res.dataobj))) <= {0, 1}
    probs = np.asarray(nib.load(tmp_path / "out" / "refined_probs.nii.gz").dataobj)
    assert probs.shape == src.shape and probs.min() >= 0 and probs.max() <= 1
    prov = json.loads((tmp_path / "out" / "refined.provenance.json").read_text())
    kinds = {c["role"]: c for c in prov["checkpoints"]}
    assert kinds["method"]["kind"] == "lsdebm" and kinds["reconnet"]["kind"] == "reconnet"
    assert len(kinds["method"]["sha256"]) == 64 and prov["seed"] == 5
    assert prov["settings"]["K"] == 3 and prov["settings"]["repeats"] == 2 and prov["settings"]["steps"] == 2
    assert {"lsdebm", "torch", "numpy"} <= set(prov["versions"]) and "reconstruct" in prov["command"]
    assert prov["created_utc"] and str(out) in prov["outputs"] and prov["reconnet"] is True
    trajectory = Trajectory.load(traj, expect_checkpoint=kinds["method"]["sha256"])
    assert trajectory.repeats == 2 and trajectory.depth == 2 and list(trajectory.k_values) == [1, 2, 3]
    # Same seed -> same result; the existing output is refused without --overwrite.
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err
    again = tmp_path / "again.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(again), *_ckpt_args(tiny_ckpts), "--native-grid",
                 "--repeats", "2",
                 "--seed", "5", "--langevin-steps", "3"]) == 0
    assert np.array_equal(np.asarray(nib.load(again).dataobj), np.asarray(res.dataobj))


def test_label_map_with_label_choice(tmp_path, tiny_ckpts):
    data = np.zeros((20, 18, 16), np.int16)
    data[2:8, 3:9, 3:9] = 5
    data[12:18, 9:15, 8:14] = 7
    src = tmp_path / "labels.nii.gz"
    write_volume(src, data, AFFINE)
    out = tmp_path / "one.nii.gz"
    assert main(["reconstruct", str(src), "-o", str(out), "--checkpoint", str(tiny_ckpts["vae"]),
                 "--no-reconnet", "--label", "7", "--native-grid"]) == 0
    result = np.asarray(nib.load(out).dataobj)
    assert result.dtype == np.int16 and np.allclose(nib.load(out).affine, AFFINE)
    assert set(np.unique(result)) <= {0, 5, 7}
    kept = (data == 5) & (result != 7)  # label 5 is untouched wherever label 7's result did not land
    assert np.array_equal(result[kept], data[kept]) and not ((result == 5) & (data != 5)).any()
    prov = json.loads((tmp_path / "one.provenance.json").read_text())
    assert prov["labels"] == [7] and prov["method"] == "vae" and prov["reconnet"] is False
    # Without --label every label is refined; several inputs go to a directory.
    outdir = tmp_path / "many"
    assert main(["reconstruct", str(src), str(tmp_path / "one.nii.gz"), "-o", str(outdir), "--checkpoint",
                 str(tiny_ckpts["lebm"]), "--no-reconnet"]) == 0
    assert json.loads((outdir / "labels.provenance.json").read_text())["labels"] == [5, 7]
    assert (outdir / "one.nii.gz").is_file()


def test_a_label_map_stored_with_a_scl_slope_is_written_as_integer_label_ids(tmp_path, tiny_ckpts):
    """A uint8 map stored with scl_slope 2 (label ids 2 and 4) was read as float64 and written as a float64 file."""
    stored = np.zeros((20, 18, 16), np.uint8)
    stored[2:8, 3:9, 3:9], stored[12:18, 9:15, 8:14] = 1, 2
    image = nib.Nifti1Image(stored, AFFINE)
    image.header.set_slope_inter(2.0, 0.0)
    src, out = tmp_path / "scaled.nii", tmp_path / "out.nii"
    nib.save(image, str(src))
    assert main(["reconstruct", str(src), "-o", str(out), "--checkpoint", str(tiny_ckpts["vae"]), "--no-reconnet",
                 "--label", "4", "--native-grid"]) == 0
    with out.open("rb") as f:  # the header as stored: nib.load moves the scaling into the data proxy
        header = nib.Nifti1Header.from_fileobj(f)
    assert header.get_data_dtype() == np.uint8 and header.get_slope_inter() in ((None, None), (1.0, 0.0))
    result = np.asarray(nib.load(out).dataobj)
    assert result.dtype == np.uint8 and set(np.unique(result)) <= {0, 2, 4}
    kept = (stored == 1) & (result != 4)  # label 2 is carried over as id 2 wherever label 4's result did not land
    assert kept.any() and (result[kept] == 2).all() and not ((result == 2) & (stored != 1)).any()


def test_pipeline_api_reconnet_stage_and_batching(tiny_ckpts, tiny_pair):
    models = load_models("lsdebm", str(tiny_ckpts["lsdebm"]), reconnet_checkpoint=str(tiny_ckpts["reconnet"]))
    assert models.reconnet is not None and models.grid == 16
    lq = tiny_pair[1]
    one = reconstruct_volume(models, lq, np.diag([8.0, 8.0, 8.0, 1.0]), settings=RunSettings(repeats=3), batch_size=1)
    assert one.refinement.stage1.shape == (1, 16, 16, 16) and one.mask.shape == lq.shape
    assert one.refinement.probs.shape == (1, 16, 16, 16) and one.trajectory is None
    assert one.provenance["settings"]["repeats"] == 3 and one.provenance["method"] == "lsdebm"
    no_stage = load_models(None, str(tiny_ckpts["vae"]), reconnet=False)
    assert no_stage.method.kind == "vae" and no_stage.reconnet is None
    assert isinstance(no_stage, Models)


def test_sharding_is_a_partition():
    items = [f"case{i}" for i in range(11)]
    shares = [shard(items, r, 3) for r in range(3)]
    assert sorted(sum(shares, [])) == sorted(items) and [len(s) for s in shares] == [4, 4, 3]
    assert shard(items, 0, 1) == items
    assert dist_rank({}) == (0, 1) and dist_rank({"RANK": "2", "WORLD_SIZE": "4"}) == (2, 4)
    for env in ({"RANK": "4", "WORLD_SIZE": "4"}, {"RANK": "x", "WORLD_SIZE": "2"}):
        with pytest.raises(InputError):
            dist_rank(env)
    with pytest.raises(InputError):
        shard(items, 3, 3)


def test_ranks_write_only_their_share(tmp_path, lq_file, tiny_ckpts, monkeypatch):
    inputs = []
    for i in range(3):
        inputs.append(tmp_path / f"in{i}.nii.gz")
        inputs[-1].write_bytes(lq_file.read_bytes())
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert main(["reconstruct", *map(str, inputs), "-o", str(tmp_path / "o"), "--checkpoint",
                 str(tiny_ckpts["vae"]), "--no-reconnet"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").glob("*.nii.gz")) == ["in1.nii.gz"]
    assert json.loads((tmp_path / "o" / "in1.provenance.json").read_text())["world_size"] == 2


def test_structure_labels():
    assert structure_labels(np.array([[[0, 3], [3, 9]]])) == [3, 9]
    assert structure_labels(np.array([[[0, 1.0]]], np.float32)) == [1]
    with pytest.raises(InputError, match="non-integer"):
        structure_labels(np.array([[[0, 0.4]]], np.float32))
    with pytest.raises(InputError, match="no foreground"):
        structure_labels(np.zeros((2, 2, 2)))


@pytest.mark.parametrize("extra, needle", [
    (["--label", "9"], "label 9 not found"),
    (["--repeats", "0"], "--repeats 0"),
    (["--checkpoint", "weights.pth"], "pickle checkpoints"),
    (["--checkpoint", "missing.safetensors"], "missing.safetensors"),
    (["--method", "lsdebm", "--checkpoint", "VAE"], "expected lsdebm"),
    (["--reconnet", "--reconnet-checkpoint", "LSDEBM"], "expected reconnet"),
])
def test_bad_inputs_exit_2_without_output(tmp_path, lq_file, tiny_ckpts, capsys, extra, needle):
    extra = [{"VAE": str(tiny_ckpts["vae"]), "LSDEBM": str(tiny_ckpts["lsdebm"])}.get(a, a) for a in extra]
    if "--checkpoint" not in extra:
        extra = ["--checkpoint", str(tiny_ckpts["lsdebm"]), *extra]
    out = tmp_path / "res.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsdebm: error:") and err.count("\n") == 0 and needle in err, err
    assert not list(tmp_path.glob("res*"))


def test_bad_input_files(tmp_path, lq_file, tiny_ckpts, capsys):
    ck = ["--checkpoint", str(tiny_ckpts["vae"]), "--no-reconnet"]
    bad = tmp_path / "probs.nii.gz"
    write_volume(bad, np.full((4, 4, 4), 0.3, np.float32), np.eye(4))
    cases = [([str(tmp_path / "nope.nii.gz")], "file not found"), ([str(bad)], "non-integer"),
             ([str(lq_file), str(tmp_path / "nope.nii.gz")], "file not found"),
             ([str(lq_file), str(lq_file)], "collide")]
    plain = tmp_path / (lq_file.name.removesuffix(".gz"))  # the same name, uncompressed: one sidecar for both
    write_volume(plain, read_volume(lq_file).data, read_volume(lq_file).affine)
    cases.append(([str(lq_file), str(plain)], f"({lq_file}, {plain}); their outputs would collide"))
    for inputs, needle in cases:
        out = tmp_path / ("o.nii.gz" if len(inputs) == 1 else "odir")
        assert main(["reconstruct", *inputs, "-o", str(out), *ck]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and needle in err, err
        assert not out.exists()
    assert read_volume(lq_file).data.any()


def test_crop_puts_the_centroid_where_training_phantoms_have_it():
    from lsdebm.data.frame import crop_label, crop_to_model, model_offset_mm
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.evaluation.metrics import dice

    phantom = make_vertebra("L2", 11, 32, 4.0)  # 128 mm field of view, like the default preset
    offset = np.asarray(model_offset_mm(32, 4.0))
    assert 8 < offset[1] < 18 and abs(offset[0]) < 3 and abs(offset[2]) < 3  # ~13 mm anterior
    centred, _ = crop_label(phantom.mask, phantom.affine, None, 32, 4.0)
    placed, info = crop_to_model(phantom.mask, phantom.affine, None, 32, 4.0)
    # The residual shift (this subject's pose vs the mean) stays inside the training augmentation
    # (+-2 voxels); centring the centroid instead moves the vertebra ~3 voxels (12 mm) posteriorly.
    ref = np.argwhere(phantom.mask).mean(0)
    assert np.abs(np.argwhere(placed).mean(0) - ref).max() < 2.0
    assert np.argwhere(centred).mean(0)[1] - ref[1] > 2.5
    assert dice(placed, phantom.mask) > dice(centred, phantom.mask) + 0.25
    assert np.allclose(info.centroid_mm, phantom.affine[:3, :3] @ np.argwhere(phantom.mask).mean(0)
                       + phantom.affine[:3, 3])


def test_default_method_is_the_reconnet_stage(tmp_path, lq_file, tiny_ckpts, capsys, monkeypatch):
    """Without --method the ReconNet stage runs alone (best on the real validation subjects)."""
    import shutil

    from lsdebm.runtime import checkpoint as checkpoint_module
    from lsdebm.runtime.loading import DEFAULT_METHOD

    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for kind in ("reconnet", "lsdebm"):
        shutil.copy(tiny_ckpts[kind], bundled / f"{kind}-default.safetensors")
    monkeypatch.setattr(checkpoint_module, "BUNDLED_DIR", bundled)
    assert DEFAULT_METHOD == "reconnet"
    models = load_models()
    assert models.method is None and models.reconnet.kind == "reconnet"
    assert load_models("lsdebm").method.kind == "lsdebm"
    alone = load_models(checkpoint=str(tiny_ckpts["reconnet"]))  # a ReconNet file given alone
    assert alone.method is None and alone.reconnet.kind == "reconnet"
    out = tmp_path / "r.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(out), "--native-grid"]) == 0
    prov = json.loads((tmp_path / "r.provenance.json").read_text())
    roles = [c["role"] for c in prov["checkpoints"]]
    assert prov["method"] == "reconnet" and roles == ["reconnet", "slab interpolation"]  # + bundled SlabNet
    capsys.readouterr()
    bad = tmp_path / "t.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(bad), "--trajectory", str(tmp_path / "t.npz")]) == 2
    assert "--method lsdebm" in capsys.readouterr().err and not bad.exists()
    with pytest.raises(InputError, match="--no-reconnet"):
        load_models("reconnet", reconnet=False)


def test_unguided_turns_every_consistency_step_off(tmp_path, lq_file, tiny_ckpts):
    out = tmp_path / "u.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(out), *_ckpt_args(tiny_ckpts), "--native-grid",
                 "--unguided"]) == 0
    used = json.loads((tmp_path / "u.provenance.json").read_text())["settings"]["consistency"]
    assert used["weight"] == 0 and used["projection"] == 0 and used["interpolation"] == 0
    assert main(["reconstruct", str(lq_file), "-o", str(tmp_path / "x.nii.gz"), *_ckpt_args(tiny_ckpts),
                 "--unguided", "--projection", "1"]) == 2


def test_the_command_line_reads_and_selects_once_and_records_why_a_label_was_skipped(tmp_path, tiny_ckpts, monkeypatch):
    """The input is read and its structures chosen once (a census of a whole-body map costs a pass over it), and
    the provenance gives each skipped label's real reason, not "not named with --label"."""
    import lsdebm.data.labelmaps as labelmaps
    import lsdebm.data.nifti as nifti

    data = np.zeros((20, 18, 16), np.int16)
    data[2:8, 3:9, 3:9] = 5
    data[15, 15, 12] = 9  # one voxel: far from a vertebra's size
    src = tmp_path / "labels.nii.gz"
    write_volume(src, data, AFFINE)
    calls = []
    original = labelmaps.select_structures
    monkeypatch.setattr(labelmaps, "select_structures", lambda *a, **k: calls.append(1) or original(*a, **k))
    reads, read = [], nifti.read_volume
    monkeypatch.setattr(nifti, "read_volume", lambda path, *a, **k: reads.append(str(path)) or read(path, *a, **k))
    out = tmp_path / "out.nii.gz"
    assert main(["reconstruct", str(src), "-o", str(out), "--checkpoint", str(tiny_ckpts["vae"]), "--no-reconnet",
                 "--native-grid"]) == 0
    assert len(calls) == 1
    assert reads == [str(src)]  # a single input is read once (a whole-body .nii.gz takes half a second)
    prov = json.loads((tmp_path / "out.provenance.json").read_text())
    assert prov["labels"] == [5]
    (skipped,) = prov["skipped"]
    assert skipped["label"] == 9 and "far from a vertebra" in skipped["reason"]


def test_sampler_options_with_reconnet_alone_are_warned_about_and_not_recorded(tmp_path, lq_file, tiny_ckpts, capsys):
    """--steps/--langevin-steps (README) with the default --method reconnet: no sampler runs, so they are ignored
    with a warning, and the provenance does not claim them."""
    out = tmp_path / "r.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(out), "--checkpoint", str(tiny_ckpts["reconnet"]),
                 "--native-grid", "--steps", "6", "--langevin-steps", "300", "--consistency-weight", "7",
                 "--repeats", "3"]) == 0
    err = capsys.readouterr().err
    assert "warning: --steps, --langevin-steps, --consistency-weight, --repeats: only for --method lsdebm" in err
    prov = json.loads((tmp_path / "r.provenance.json").read_text())
    assert prov["method"] == "reconnet"
    used = prov["settings"]
    assert used["steps"] is None and used["K"] is None and used["repeats"] == 1 and used["consistency"]["weight"] != 7
    assert main(["reconstruct", str(lq_file), "-o", str(tmp_path / "q.nii.gz"), "--checkpoint",
                 str(tiny_ckpts["reconnet"]), "--native-grid"]) == 0
    assert "warning" not in capsys.readouterr().err


@pytest.mark.parametrize("kind, options, unused, reads", [
    ("vae", ["--steps", "4", "--langevin-steps", "9"], "--steps, --langevin-steps", "no sampling chain"),
    ("lebm", ["--steps", "2", "--langevin-steps", "9", "--consistency-weight", "3"],
     "--langevin-steps, --consistency-weight", "only --steps, --step-size are read"),
])
def test_sampler_options_a_method_does_not_read_are_warned_about(tmp_path, lq_file, tiny_ckpts, capsys,
                                                                 kind, options, unused, reads):
    """A VAE has no chain and LEBM's posterior chain has no K or data term: those options were silently ignored."""
    out = tmp_path / f"{kind}.nii.gz"
    assert main(["reconstruct", str(lq_file), "-o", str(out), "--checkpoint", str(tiny_ckpts[kind]), "--no-reconnet",
                 "--native-grid", *options]) == 0
    assert f"warning: {unused}: not used by --method {kind} ({reads}); ignored" in capsys.readouterr().err
    assert main(["reconstruct", str(lq_file), "-o", str(tmp_path / "quiet.nii.gz"), "--checkpoint",
                 str(tiny_ckpts["lsdebm"]), "--no-reconnet", "--native-grid", "--steps", "1", "--langevin-steps", "2",
                 "--consistency-weight", "3"]) == 0
    assert "not used by" not in capsys.readouterr().err
