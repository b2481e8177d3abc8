"""Trajectory recorder: axes, variance, file round trip, bounded lazy decode cache."""
import numpy as np
import pytest
import torch

from lsdebm.errors import InputError
from lsdebm.explore.decode_cache import DecodeCache
from lsdebm.methods import RunSettings, decode, iterations, run_events, sampling_schedule
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.sampling import Trajectory, TrajectoryRecorder


def record(ckpt, x, every=2, repeats=2):
    model = load_checkpoint(ckpt).model
    sch = sampling_schedule(model)
    rec = TrajectoryRecorder(iterations(model), sch.a, sch.a_cum, every=every,
                             metadata={"seed": 0, "checkpoint_sha256": "abc"})
    result = rec.consume(run_events(model, x, RunSettings(repeats=repeats)))
    return model, rec.trajectory(), result


def test_axes_and_variance(tiny_ckpts, tiny_pair):
    model, traj, result = record(tiny_ckpts["lsdebm"], torch.as_tensor(tiny_pair[1]).float())
    depth, K, d = model.cfg.langevin.recon_steps, model.cfg.langevin.K, model.cfg.model.latent_dim
    assert traj.forward.shape == (2, depth + 1, d)
    assert list(traj.k_values) == sorted(set(range(2, K + 1, 2)) | {K})
    assert traj.reverse.shape == (2, depth, len(traj.k_values), d)
    assert traj.energy.shape == traj.grad_norm.shape == (2, depth, len(traj.k_values))
    assert traj.n_frames == 2 * depth + 1
    np.testing.assert_allclose(traj.process_variance()[:, 0], np.var(traj.forward[:, 0], axis=1), rtol=1e-6)
    # the last frame is the final z_0 that was decoded
    np.testing.assert_allclose(traj.latent(traj.n_frames - 1, repeat=1), result.z[1].numpy(), rtol=1e-5, atol=1e-6)
    assert traj.frame_info(depth + 1) == ("reverse", depth - 1)


def test_file_round_trip_and_checks(tmp_path, tiny_ckpts, tiny_pair):
    _, traj, _ = record(tiny_ckpts["lsdebm"], torch.as_tensor(tiny_pair[1]).float())
    path = traj.save(tmp_path / "t.npz")
    back = Trajectory.load(path, expect_checkpoint="abc")
    assert back.metadata["seed"] == 0
    for name in ("forward", "reverse", "energy", "grad_norm", "k_values", "a_cum"):
        np.testing.assert_array_equal(getattr(back, name), getattr(traj, name))
    with pytest.raises(InputError, match="not the loaded one"):
        Trajectory.load(path, expect_checkpoint="def")
    trunc = tmp_path / "trunc.npz"
    trunc.write_bytes(path.read_bytes()[:100])
    with pytest.raises(InputError, match="trunc.npz"):
        Trajectory.load(trunc)


def test_lebm_posterior_trajectory(tiny_ckpts, tiny_pair):
    model, traj, _ = record(tiny_ckpts["lebm"], torch.as_tensor(tiny_pair[1]).float(), every=1, repeats=1)
    assert traj.reverse.shape[1] == 1 and traj.n_k == model.cfg.lebm.posterior_steps


def test_decode_cache_is_bounded_and_decodes_once(tiny_ckpts, tiny_pair):
    model, traj, _ = record(tiny_ckpts["lsdebm"], torch.as_tensor(tiny_pair[1]).float(), every=1)
    one = 16 ** 3 * 2  # float16 bytes per frame
    cache = DecodeCache(max_bytes=5 * one)
    calls = []

    def make(s, k):
        calls.append((s, k))
        return decode(model, torch.as_tensor(traj.latent(s, k))[None])[0, 0].numpy()

    for s in range(traj.n_frames):
        for k in range(traj.n_k):
            cache.get((s, k), lambda: make(s, k))
            assert cache.nbytes <= cache.max_bytes
    n = len(calls)
    last = (traj.n_frames - 1, traj.n_k - 1)
    cache.get(last, lambda: make(*last))
    assert len(calls) == n and len(cache) == 5
