"""Sampler settings, trajectory files and teaching samples from Python: a wrong type, range, size or file name is
one InputError naming it and what is expected, never a deep TypeError, an allocator failure or an empty file."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lsdebm
from lsdebm.cli.main import main
from lsdebm.errors import InputError
from lsdebm.limits import ENV_VAR
from lsdebm.methods import RunSettings, run
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.runtime.loading import load_models
from lsdebm.sampling.trajectory import Trajectory
from lsdebm.teach.checkpoints import load_teach
from lsdebm.teach.generate import sample_images

AFFINE = np.diag([8.0, 8.0, 8.0, 1.0])


def _trajectory() -> Trajectory:
    """Two chains, forward frames z_0..z_2 and two reverse steps of three recorded iterations (5 frames)."""
    rng = np.random.default_rng(0)
    r, t, k, d = 2, 2, 3, 4
    return Trajectory(rng.normal(size=(r, t + 1, d)).astype(np.float32),
                      rng.normal(size=(r, t, k, d)).astype(np.float32),
                      np.zeros((r, t, k), np.float32), np.zeros((r, t, k), np.float32), np.arange(1, k + 1),
                      np.linspace(1.0, 0.5, t + 1))


def listing(folder) -> list[str]:
    """Every file under ``folder``, hidden temporaries included."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_trajectory_save_writes_the_exact_npz_name_or_refuses_the_name(tmp_path):
    """`save("run.NPZ")` left an empty run.NPZ and a stray .run.NPZ.*.tmp.NPZ.npz (numpy appended .npz); "out/run"
    and "run.json" likewise, and load then failed with BadZipFile."""
    traj = _trajectory()
    assert traj.save(tmp_path / "run.NPZ") == tmp_path / "run.NPZ"
    assert listing(tmp_path) == ["run.NPZ"]
    np.testing.assert_array_equal(Trajectory.load(tmp_path / "run.NPZ").reverse, traj.reverse)
    traj.save(tmp_path / "run.NPZ", overwrite=True)  # replacing it kept a 0-byte file
    np.testing.assert_array_equal(Trajectory.load(tmp_path / "run.NPZ").forward, traj.forward)
    (tmp_path / "run.json").write_text("{}")
    for name in ("out/run", "run.json", "run.npz.tmp"):
        with pytest.raises(InputError, match=r"expected a file name ending in \.npz"):
            traj.save(tmp_path / name, overwrite=True)
    assert listing(tmp_path) == ["run.NPZ", "run.json"]
    assert (tmp_path / "run.json").read_text() == "{}"  # a refused name is never replaced by anything


def test_teach_generate_writes_an_upper_case_npy_name(tmp_path, capsys, single_thread):
    """`--out d.NPY` left an empty d.NPY and a stray .d.NPY.*.tmp.NPY.npy beside it (np.save appended .npy)."""
    out = tmp_path / "d.NPY"
    assert main(["teach", "generate", "--model", "lebm", "--n", "2", "--out", str(out)]) == 0
    capsys.readouterr()
    assert listing(tmp_path) == ["d.NPY"]
    images = np.load(out)
    assert images.shape == (2, 16, 16) and images.dtype == np.float32


def test_trajectory_latent_takes_negative_indices_and_names_the_range():
    """`latent(-1)` / `latent(99)` were bare IndexErrors; decode_frame counts negative frames from the end."""
    traj = _trajectory()
    np.testing.assert_array_equal(traj.latent(-1), traj.latent(traj.n_frames - 1))
    np.testing.assert_array_equal(traj.latent(-1, -1, -1), traj.reverse[1, 0, 2])
    assert traj.frame_info(-1) == traj.frame_info(4) == ("reverse", 0)
    for call, fragment in ((lambda: traj.latent(99), r"frame=99 is outside the trajectory's 5 frames; expected a "
                            r"whole number in -5\.\.4"),
                           (lambda: traj.latent(-6), r"frame=-6 .* in -5\.\.4"),
                           (lambda: traj.latent(4, 3), r"k_index=3 .* 3 recorded Langevin iterations"),
                           (lambda: traj.latent(0, repeat=2), r"repeat=2 .* 2 chains"),
                           (lambda: traj.latent(1.5), r"frame=1\.5 .* whole number"),
                           (lambda: traj.frame_info(5), r"frame=5 is outside")):
        with pytest.raises(InputError, match=fragment):
            call()


@pytest.mark.parametrize("field, value, message", [
    ("K", 2.5, "K=2.5 must be a whole number >= 1 (or None: the checkpoint's value)"),  # TypeError in kernels/mlp.py
    ("K", "5", "K='5' must be a whole number >= 1"),  # TypeError in config/schema.py
    ("K", True, "K=True must be a whole number >= 1"),
    ("K", 0, "K=0 must be >= 1"),
    ("steps", 1.5, "steps=1.5 must be a whole number >= 0 (or None: the checkpoint's value)"),
    ("steps", "3", "steps='3' must be a whole number >= 0"),
    ("repeats", 2.5, "repeats=2.5 must be a whole number >= 1"),  # TypeError in methods/__init__.py
    ("repeats", "2", "repeats='2' must be a whole number >= 1"),
    ("repeats", None, "repeats=None must be a whole number >= 1"),
    ("seed", None, "seed=None must be a whole number in 0..9223372036854775807 (2**63 - 1)"),  # TypeError
    ("seed", 2**64, f"seed={2**64} must be in 0..9223372036854775807"),  # "Overflow when unpacking long long"
    ("seed", 1.5, "seed=1.5 must be a whole number in 0.."),  # ran as seed 1
    ("seed", -1, "seed=-1 must be in 0.."),  # accepted
    ("seed", "1", "seed='1' must be a whole number in 0.."),  # accepted
    ("step_size", float("nan"), "step_size=nan must be a finite number > 0 (or None: the checkpoint's value)"),
    ("step_size", 0.0, "step_size=0.0 must be > 0"),
    ("noise_scale", "1", "noise_scale='1' must be a finite number >= 0"),
    ("consistency_steps", 2.5, "consistency_steps=2.5 must be a whole number >= 0"),
    ("projection", 1.5, "projection=1.5 must be in [0, 1]"),
    ("init", "zeros", "init='zeros' must be one of 'z_tilde', 'random' (or None: the checkpoint's value)"),
    ("use_mean", None, "use_mean=None must be True or False"),
])
def test_run_settings_refuse_a_wrong_type_or_range_by_name(field, value, message):
    with pytest.raises(InputError) as err:
        RunSettings(**{field: value})
    assert str(err.value).startswith(f"RunSettings.{message}") and len(str(err.value).splitlines()) == 1


def test_run_settings_take_numpy_numbers_and_none_for_the_checkpoint_default(tiny_ckpts, single_thread):
    defaults = RunSettings()
    assert (defaults.steps, defaults.K, defaults.step_size, defaults.repeats, defaults.seed) == (None, None, None, 1, 0)
    s = RunSettings(K=np.int64(2), steps=np.int32(1), step_size=np.float32(0.5), seed=np.uint64(3),
                    repeats=np.int64(2), use_mean=np.bool_(False))
    assert (s.K, s.steps, s.seed, s.repeats, s.use_mean) == (2, 1, 3, 2, False)
    assert type(s.K) is int and type(s.seed) is int and type(s.step_size) is float
    model = load_checkpoint(str(tiny_ckpts["lsdebm"])).model
    x = torch.zeros(1, 1, 16, 16, 16)
    np.testing.assert_array_equal(run(model, x, s).probs, run(model, x, RunSettings(K=2, steps=1, step_size=0.5,
                                                                                    seed=3, repeats=2,
                                                                                    use_mean=False)).probs)


def test_repeats_that_cannot_fit_in_memory_are_refused_before_the_run(tiny_ckpts, monkeypatch):
    """`repeats=10**6` failed with RuntimeError "DefaultCPUAllocator: can't allocate memory"."""
    monkeypatch.setenv(ENV_VAR, "1")
    cube = np.zeros((16, 16, 16), np.uint8)
    cube[6:11, 6:11, 6:11] = 1  # 64 cm3 at 8 mm: vertebra-sized
    models = load_models(checkpoint=str(tiny_ckpts["lsdebm"]), reconnet=False)
    with pytest.raises(InputError, match=r"repeats=1000000: 1000000 chains .* on the 16\^3 model grid needs "
                                         r"[\d.]+ GiB of memory, more than the 1\.0 GiB limit"):
        lsdebm.reconstruct(cube, AFFINE, models=models, settings=RunSettings(K=2, steps=1, repeats=10**6))
    with pytest.raises(InputError, match=r"repeats=5000: 15000 chains \(3 input\(s\) x 5000 repeats\)"):
        run(models.method.model, torch.zeros(3, 1, 16, 16, 16), RunSettings(K=2, steps=1, repeats=5000))  # one fits


def test_generate_events_refuses_a_bad_count_or_one_that_cannot_fit(tiny_ckpts, monkeypatch):
    """``generate_events(model, 2.5)`` failed deep inside torch, and ``n`` had no memory check."""
    from lsdebm.methods import generate_events

    model = load_checkpoint(str(tiny_ckpts["lsdebm"])).model
    for n in (2.5, "2", True, 0):
        with pytest.raises(InputError, match="the number of samples must be a whole number >= 1"):
            next(generate_events(model, n))
    monkeypatch.setenv(ENV_VAR, "1")
    with pytest.raises(InputError, match=r"n=10000000: 10000000 chains .* more than the 1\.0 GiB limit"):
        next(generate_events(model, 10**7))
    assert next(generate_events(model, np.int64(2))) is not None  # numpy counts are counts


def test_sample_images_refuses_a_bad_count_before_sampling(monkeypatch):
    """n=1.5 or "2" were TypeErrors; n=10**7 sampled batch after batch with no memory check (only the CLI had one)."""
    model = load_teach("lebm").model
    for n in (1.5, "2", True, 0):
        with pytest.raises(InputError, match=f"number of samples n={n!r} must be a whole number >= 1"):
            sample_images(model, n)
    monkeypatch.setenv(ENV_VAR, "1")
    with pytest.raises(InputError, match=r"n=10000000: 10000000 generated 16x16 digits needs [\d.]+ GiB of memory"):
        sample_images(model, 10**7)


def test_sample_images_takes_numpy_counts_and_the_largest_seed(single_thread):
    model = load_teach("lebm").model
    images = sample_images(model, np.int64(3), RunSettings(seed=2**63 - 1), batch=2)  # batch 2 wraps to seed 0
    assert images.shape == (3, 16, 16) and np.isfinite(images).all()
