"""Teaching mode core: digits data, generation, the toy landscape, the DFD metric, CLI."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

import lsdebm.teach.checkpoints
import lsdebm.teach.compare
import lsdebm.teach.generate
import lsdebm.teach.toy
import lsdebm.teach.train2d
from lsdebm.cli.main import main
from lsdebm.data.digits import digit_mosaic, load_digits, load_mnist, read_idx
from lsdebm.errors import CheckpointError, InputError
from lsdebm.methods import RunSettings
from lsdebm.sampling.reverse import conditional_energy
from lsdebm.teach.checkpoints import TEACH_DIR, load_teach
from lsdebm.teach.explain import TEXTS, explain, landscape_text
from lsdebm.teach.fid import DigitsClassifier, classifier_config, digits_frechet_distance, frechet_distance
from lsdebm.teach.generate import record_generation, sample_images
from lsdebm.teach.toy import ToyModel, energy_grid, mixture_of_gaussians, run_particles, toy_config, train_toy
from lsdebm.teach.train2d import build_teach_model, digits_config, train_digits

FAST = {"langevin.K": 3, "schedule.T": 3, "lebm.prior_steps": 3, "lebm.posterior_steps": 2,
        "train.train_K": 2, "train.batch_size": 4}


def tiny(kind: str):
    torch.manual_seed(0)
    return build_teach_model(kind, digits_config(kind).replace(**FAST)).eval()


# ---------------------------------------------------------------- data
@pytest.mark.parametrize("size", [16, 32])
def test_digits_shapes_range_and_split(size):
    train, test = load_digits(size, "train"), load_digits(size, "test")
    assert train.images.shape[1:] == (size, size) and train.images.dtype == np.float32
    assert len(train) + len(test) == 1797 and len(test) == 359
    assert 0.0 <= train.images.min() and train.images.max() <= 1.0 and train.images.max() > 0.9
    border = train.images[:, 0, :].max(), train.images[:, :, -1].max()
    assert max(border) == 0.0  # the digit is centred with an empty frame, like MNIST
    assert set(np.unique(train.labels)) == set(range(10))


def test_digits_bad_size_and_split():
    with pytest.raises(InputError, match="digit size 20"):
        load_digits(20)
    with pytest.raises(InputError, match="split 'val'"):
        load_digits(16, "val")


def _write_idx(path, array, gz=False):
    code = {np.uint8: 0x08}[array.dtype.type]
    raw = bytes([0, 0, code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape) + array.tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:  # closed: Python 3.12's GzipFile buffers writes
        f.write(raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_roundtrip(tmp_path, gz):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    labels = np.array([7, 2, 1], np.uint8)
    suffix = ".gz" if gz else ""
    ip = _write_idx(tmp_path / f"imgs-idx3-ubyte{suffix}", images, gz)
    lp = _write_idx(tmp_path / f"labels-idx1-ubyte{suffix}", labels, gz)
    assert np.array_equal(read_idx(ip), images)
    ds = load_mnist(ip, lp, size=16)
    assert ds.images.shape == (3, 16, 16) and ds.labels.tolist() == [7, 2, 1]
    assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0


def test_idx_errors_name_the_file(tmp_path):
    bad = tmp_path / "bad.idx"
    bad.write_bytes(b"\x89PNG not idx at all")
    with pytest.raises(InputError, match="bad.idx.*magic"):
        read_idx(bad)
    short = tmp_path / "short.idx"
    short.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + b"\x00" * 3)
    with pytest.raises(InputError, match="short.idx.*expected 10"):
        read_idx(short)
    with pytest.raises(InputError, match="not found"):
        read_idx(tmp_path / "missing")


def test_mosaic_layout():
    imgs = np.arange(5 * 4, dtype=float).reshape(5, 2, 2)
    m = digit_mosaic(imgs, cols=3, gap=1)
    assert m.shape == (2 * 3 - 1, 3 * 3 - 1)
    assert np.array_equal(m[3:5, 0:2], imgs[3])


# ---------------------------------------------------------------- generation
@pytest.mark.parametrize("kind,n_t", [("lsdebm", 3), ("lebm", 1), ("ebm", 1)])
def test_generation_frames_shapes_and_ranges(kind, n_t):
    model = tiny(kind)
    frames = record_generation(model, 2, RunSettings(seed=1), every=2)
    assert frames.images.shape == (n_t, 2, 2, 16, 16)  # k recorded at 2 and 3 (the last)
    assert frames.k_values.tolist() == [2, 3] and frames.t_values.tolist() == list(range(n_t))
    assert frames.energy.shape == (n_t, 2, 2) and np.isfinite(frames.energy).all()
    assert frames.images.min() >= 0.0 and frames.images.max() <= 1.0
    final = sample_images(model, 2, RunSettings(seed=1))
    assert final.shape == (2, 16, 16) and final.dtype == np.float32
    np.testing.assert_allclose(frames.samples, final, atol=1e-5)  # same seed, same chain


def test_generation_rejects_bad_input():
    with pytest.raises(InputError, match="n=0"):
        sample_images(tiny("lebm"), 0)
    with pytest.raises(InputError, match="cannot generate"):
        record_generation(ToyModel(toy_config()), 2)


@pytest.mark.parametrize("kind", ["lsdebm", "lebm", "ebm"])
def test_training_steps_are_finite_and_change_weights(kind):
    images = load_digits(16, "train").images[:8]
    cfg = digits_config(kind).replace(**FAST)
    torch.manual_seed(0)
    before = {k: v.clone() for k, v in build_teach_model(kind, cfg).state_dict().items()}
    result = train_digits(kind, images, iterations=2, seed=0, cfg=cfg)
    assert all(np.isfinite(v) for v in result.last.values()) and result.iterations == 2
    after = result.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before if before[k].is_floating_point())
    with pytest.raises(InputError, match="do not match"):
        train_digits(kind, np.zeros((4, 8, 8), np.float32), iterations=1, cfg=cfg)


# ---------------------------------------------------------------- toy landscape
@pytest.fixture(scope="module")
def toy():
    torch.manual_seed(0)
    return ToyModel(toy_config().replace(**{"langevin.K": 4})).eval()


def test_toy_contour_values_equal_direct_energy(toy):
    z_next, t, sigma = np.array([0.3, -0.7]), 2, 0.25
    grid = energy_grid(toy, z_next, t, sigma, "both", extent=(-1, 1, -2, 2), n=7)
    gx, gy = np.meshgrid(grid.xs, grid.ys)
    pts = torch.tensor(np.stack([gx.ravel(), gy.ravel()], 1), dtype=torch.float32)
    U = conditional_energy(toy.energy, torch.tensor(z_next, dtype=torch.float32).repeat(len(pts), 1), t, sigma)
    with torch.no_grad():
        direct = U(pts).double().numpy().reshape(7, 7)
    np.testing.assert_allclose(grid.values, direct, rtol=1e-6, atol=1e-6)
    # one point by hand: E(y, t) + ||y - z||^2 / (2 sigma^2) at row 1 (y = ys[1]), column 4 (x = xs[4])
    y = torch.tensor([[grid.xs[4], grid.ys[1]]], dtype=torch.float32)
    with torch.no_grad():
        e = toy.energy(y, torch.tensor([t])).item()
    quad = ((grid.xs[4] - 0.3) ** 2 + (grid.ys[1] + 0.7) ** 2) / (2 * sigma ** 2)
    assert grid.values[1, 4] == pytest.approx(e + quad, rel=1e-5)


def test_toy_terms_toggle(toy):
    args = (np.array([0.5, 0.5]), 1, 0.4)
    box = (-1.0, 1.0, -1.0, 1.0)
    both, learned, quad = (energy_grid(toy, *args, terms=k, extent=box, n=9).values
                           for k in ("both", "learned", "quadratic"))
    np.testing.assert_allclose(learned + quad, both, rtol=1e-5, atol=1e-5)
    g = energy_grid(toy, *args, terms="quadratic", extent=box, n=9)
    assert np.unravel_index(np.argmin(g.values), g.values.shape) == (6, 6)  # xs[6] = ys[6] = 0.5
    with pytest.raises(InputError, match="terms='energy'"):
        energy_grid(toy, *args, terms="energy")


def test_toy_particles_follow_the_chain(toy):
    run = run_particles(toy, n=5, settings=RunSettings(seed=3))
    T, K = toy.cfg.schedule.T, toy.cfg.langevin.K
    assert run.y.shape == (T, K + 1, 5, 2) and run.z_next.shape == (T, 5, 2) and run.energy.shape == (T, K + 1, 5)
    np.testing.assert_array_equal(run.y[:, 0], run.z_next)  # each walk starts at z_{t+1}
    # z_{t} handed to the next step is y / a_{t+1}
    np.testing.assert_allclose(run.z_next[:-1], run.y[1:, -1] / run.a[1:, None, None], rtol=1e-5, atol=1e-6)
    t, k = 4, 2
    U = conditional_energy(toy.energy, torch.as_tensor(run.z_next[t]), t, float(run.sigma[t]))
    with torch.no_grad():
        np.testing.assert_allclose(run.energy[t, k], U(torch.as_tensor(run.y[t, k])).numpy(), rtol=1e-5)


def test_toy_training_lowers_energy_of_data():
    model, seconds = train_toy(iterations=60, seed=0)
    data = torch.as_tensor(mixture_of_gaussians(200, seed=5))
    far = torch.as_tensor(np.random.default_rng(0).uniform(-2.5, 2.5, (200, 2)), dtype=torch.float32)
    t = torch.zeros(200, dtype=torch.long)
    with torch.no_grad():
        assert model.energy(data, t).mean() < model.energy(far, t).mean()
    assert seconds > 0


# ---------------------------------------------------------------- Fréchet distance
def test_frechet_distance_closed_form():
    # 1-D Gaussians: (m1 - m2)^2 + (s1 - s2)^2
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[1.0]])) == \
        pytest.approx(4.0 + 1.0)
    a = np.diag([1.0, 4.0])
    assert frechet_distance(np.zeros(2), a, np.zeros(2), a) == pytest.approx(0.0, abs=1e-12)
    singular = np.diag([1.0, 0.0])  # dead feature: still exact
    assert frechet_distance(np.zeros(2), singular, np.ones(2), np.diag([4.0, 0.0])) == pytest.approx(2.0 + 1.0)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    return DigitsClassifier(classifier_config(16)).eval()


def test_dfd_self_zero_and_grows_with_noise(classifier):
    real = load_digits(16, "test").images
    assert digits_frechet_distance(classifier, real, real) == pytest.approx(0.0, abs=1e-6)
    rng = np.random.default_rng(0)
    scores = [digits_frechet_distance(classifier, np.clip(real + s * rng.standard_normal(real.shape), 0, 1), real)
              for s in (0.05, 0.2, 0.5)]
    assert 0 < scores[0] < scores[1] < scores[2]
    with pytest.raises(InputError, match="at least 2"):
        digits_frechet_distance(classifier, real[:1], real)
    with pytest.raises(InputError, match="16x16"):
        digits_frechet_distance(classifier, np.zeros((3, 8, 8)), real)


# ---------------------------------------------------------------- explanations
def test_explanations_name_the_equations():
    assert "eq. (2)" in explain("landscape") and "eq. (3)" in explain("landscape") and "eq. (4)" in explain("landscape")
    assert "Algorithm 3" in explain("lsdebm") and "eq. (24)" in explain("dfd") and "NOT" in explain("dfd")
    assert all(len(text.split()) < 120 for text in TEXTS.values())  # short
    text = landscape_text(3, 10, 0.279, "quadratic", k=5, K=30)
    assert "sigma_4 = 0.279" in text and "k = 5 of 30" in text and TEXTS["quadratic"] in text
    with pytest.raises(KeyError, match="known views"):
        explain("nope")


# ---------------------------------------------------------------- bundled checkpoints and CLI
BUNDLED = sorted(TEACH_DIR.glob("*.safetensors"))


def test_bundled_teaching_checkpoints_are_small_and_load():
    assert {p.stem for p in BUNDLED} >= {"lsdebm-digits16", "lebm-digits16", "ebm-digits16",
                                         "digits-classifier16", "toy-mog"}
    assert sum(p.stat().st_size for p in BUNDLED) <= 5 * 1024 * 1024
    kinds = {role: load_teach(role).kind for role in ("lsdebm", "lebm", "ebm", "classifier", "toy")}
    assert kinds == {"lsdebm": "lsdebm", "lebm": "lebm", "ebm": "pixel_ebm", "classifier": "digits_classifier",
                     "toy": "toy"}
    assert load_teach("lsdebm").config.model.spatial_dims == 2
    assert load_teach("classifier").info["test_accuracy"] >= 0.9


def test_load_teach_errors(tmp_path):
    with pytest.raises(CheckpointError, match="pickle"):
        load_teach(tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="expected lebm"):
        load_teach("toy", expect_kind="lebm")
    with pytest.raises(CheckpointError, match="missing.safetensors: no such checkpoint"):
        load_teach(tmp_path / "missing.safetensors")


def test_cli_generate_png_and_refuse_overwrite(tmp_path, capsys):
    out = tmp_path / "s.png"
    assert main(["teach", "generate", "--model", "ebm", "--n", "4", "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["teach", "generate", "--model", "ebm", "--n", "4", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["teach", "generate", "--model", "ebm", "--n", "4", "--out", str(tmp_path / "s.jpg")]) == 2


def test_cli_generate_refuses_a_3d_checkpoint_or_a_3d_bundled_name_in_one_line(tmp_path, capsys, tiny_ckpts):
    """A 3D LSD-EBM generated volumes and then failed in the PNG writer with a traceback (exit 1), and an
    unknown name was answered with the 3D bundled names (lsdebm-default, ...), which then did exactly that."""
    out = tmp_path / "s.png"
    assert main(["teach", "generate", "--model", str(tiny_ckpts["lsdebm"]), "--n", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "3D lsdebm model cannot generate teaching digits" in err and "Traceback" not in err
    assert main(["teach", "generate", "--model", "lsdebm-default", "--n", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "no such teaching checkpoint" in err and "lsdebm-digits16" in err and "vae-default" not in err
    assert main(["teach", "generate", "--model", str(tmp_path / "gone.safetensors"), "--out", str(out)]) == 2
    err = capsys.readouterr().err  # a missing file was answered with the 3D bundled names too
    assert "gone.safetensors: no such checkpoint file" in err and "lsdebm-digits16" in err and "vae-default" not in err
    assert not out.exists()
    with pytest.raises(InputError, match="3D lsdebm model"):
        sample_images(load_teach(tiny_ckpts["lsdebm"]).model, 2)


def test_cli_refuses_existing_outputs_before_the_run(tmp_path, capsys, monkeypatch):
    import lsdebm.teach.checkpoints
    import lsdebm.teach.compare  # noqa: F401 -- imported before the patch, so it keeps the real functions

    out = tmp_path / "rows.json"
    out.write_text("[]")
    monkeypatch.setattr(lsdebm.teach.checkpoints, "load_teach", lambda *a, **k: pytest.fail("ran first"))
    assert main(["teach", "compare", "--n", "4", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    png = tmp_path / "s.png"
    png.write_bytes(b"x")
    assert main(["teach", "generate", "--model", "ebm", "--n", "4", "--out", str(png)]) == 2
    assert "already exists" in capsys.readouterr().err and png.read_bytes() == b"x"


def test_cli_train_toy_writes_loadable_checkpoint(tmp_path):
    assert main(["teach", "train", "--model", "toy", "--iterations", "3", "--out", str(tmp_path)]) == 0
    loaded = load_teach(tmp_path / "toy-mog.safetensors", expect_kind="toy")
    assert loaded.info["iterations"] == 3 and loaded.info["cpu_seconds"] >= 0
    assert main(["teach", "train", "--model", "toy", "--iterations", "3", "--out", str(tmp_path)]) == 2


def test_cli_compare_prints_table(tmp_path, capsys):
    js = tmp_path / "rows.json"
    assert main(["teach", "compare", "--n", "12", "--json", str(js)]) == 0
    out = capsys.readouterr().out
    assert "Digits Fréchet Distance (DFD)" in out
    for row in ("EBM (pixel space)", "LEBM (latent prior)", "LSD-EBM (latent diffusion)", "floor"):
        assert row in out
    assert js.is_file()


def test_generation_stops_when_asked():
    seen = []
    frames = record_generation(tiny("lsdebm"), 2, RunSettings(seed=0), progress=seen.append,
                               should_stop=lambda: len(seen) >= 4)
    assert len(seen) == 4 and frames.images.shape[0] == 1  # stopped inside the first reverse step


def test_teaching_core_imports_without_qt():
    import subprocess
    import sys

    code = ("import sys, lsdebm.teach.generate, lsdebm.teach.toy, lsdebm.teach.compare, lsdebm.teach.explain, "
            "lsdebm.cli.teach, lsdebm.data.digits\n"
            "print(','.join(sorted(m for m in sys.modules if m.split('.')[0].startswith("
            "('PyQt', 'PySide', 'qtpy', 'napari', 'magicgui', 'vispy')))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_edited_teaching_checkpoint_is_refused(tmp_path):
    """A teaching-only kind (toy energy) gets the same checksum check as the 3D models."""
    from lsdebm.errors import CheckpointError
    from lsdebm.teach.checkpoints import bundled_teach_path, load_teach

    src = bundled_teach_path("toy")
    data = bytearray(src.read_bytes())
    data[-3] ^= 0x40  # flip one bit inside the last tensor
    bad = tmp_path / "toy-edited.safetensors"
    bad.write_bytes(bytes(data))
    load_teach(src)  # the intact file loads
    with pytest.raises(CheckpointError, match="checksum"):
        load_teach(bad)


@pytest.mark.parametrize("argv, fragment", [
    (["train", "--model", "toy", "--iterations", "0"], "--iterations 0 must be >= 1"),  # trained the default 3000
    (["train", "--model", "lebm", "--iterations", "-1"], "--iterations -1 must be >= 1"),  # untrained file, exit 0
    (["train", "--model", "toy", "--threads", "0"], "--threads 0 must be >= 1"),
    (["train", "--model", "toy", "--seed", "-1"], "--seed -1: seeds must be >= 0"),
    (["generate", "--seed", str(2**64), "--out", "OUT.png"], f"--seed {2**64}: seeds must be >= 0 and < 2**63"),
    (["generate", "--n", "100000000", "--out", "OUT.png"], "--n 100000000: 100000000 generated 16x16 digits needs"),
    (["compare", "--n", "-1"], "--n -1 must be >= 2"),
    (["compare", "--threads", "-2"], "--threads -2 must be >= 1"),
    (["compare", "--seed", "-1"], "--seed -1: seeds must be >= 0"),
])
def test_cli_bad_numbers_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, argv, fragment):
    """They were torch/numpy tracebacks, a silent full-length or untrained run, or hours of sampling."""
    for module, name in ((lsdebm.teach.toy, "train_toy"), (lsdebm.teach.train2d, "train_digits"),
                         (lsdebm.teach.generate, "sample_images")):
        monkeypatch.setattr(module, name, lambda *a, **k: pytest.fail("ran"))
    argv = [a.replace("OUT", str(tmp_path / "s")) for a in argv]
    out = [] if argv[0] != "train" else ["--out", str(tmp_path / "ck")]
    assert main(["teach", *argv, *out]) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("action", ["train", "generate", "compare"])
def test_cli_unwritable_output_is_refused_before_the_run(tmp_path, capsys, monkeypatch, action):
    """An --out under a file (train) or in /proc (generate, compare --json) was found after training or sampling."""
    monkeypatch.setattr(lsdebm.teach.toy, "train_toy", lambda *a, **k: pytest.fail("trained first"))
    monkeypatch.setattr(lsdebm.teach.generate, "sample_images", lambda *a, **k: pytest.fail("sampled first"))
    monkeypatch.setattr(lsdebm.teach.compare, "compare_methods", lambda *a, **k: pytest.fail("compared first"))
    (tmp_path / "afile").write_text("x")
    argv = {"train": ["--model", "toy", "--out", str(tmp_path / "afile")],
            "generate": ["--n", "2", "--out", "/proc/lsdebm-teach.png"],
            "compare": ["--n", "4", "--json", "/proc/lsdebm-teach.json"]}[action]
    assert main(["teach", action, *argv]) == 2
    err = capsys.readouterr().err
    assert "cannot write" in err and "Traceback" not in err
    assert (tmp_path / "afile").read_text() == "x"


def test_cli_compare_never_writes_its_json_over_a_checkpoint_it_reads(tmp_path, capsys, monkeypatch):
    """`compare --json .../digits-classifier16.safetensors --overwrite` replaced the bundled classifier with JSON."""
    checkpoints = lsdebm.teach.checkpoints
    (teach := tmp_path / "teach").mkdir()
    for stem in checkpoints.TEACH_NAMES.values():
        (teach / f"{stem}.safetensors").write_bytes((checkpoints.TEACH_DIR / f"{stem}.safetensors").read_bytes())
    monkeypatch.setattr(checkpoints, "TEACH_DIR", teach)
    monkeypatch.setattr(lsdebm.teach.compare, "compare_methods", lambda *a, **k: pytest.fail("compared first"))
    target = teach / "digits-classifier16.safetensors"
    before = target.read_bytes()
    assert main(["teach", "compare", "--n", "4", "--json", str(target), "--overwrite"]) == 2
    assert "this run reads that file (the classifier checkpoint)" in capsys.readouterr().err
    assert target.read_bytes() == before
