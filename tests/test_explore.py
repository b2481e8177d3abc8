"""Qt-free explorer core: lazy trajectory volumes, recorded runs with cancel, inputs, plots, PNGs."""
import os
import threading
import time

import numpy as np
import pytest

from lsdebm.errors import CheckpointError, InputError
from lsdebm.explore import (
    RunCancelled,
    TrajectoryVolumes,
    count_events,
    drain,
    find_checkpoint,
    make_decoder,
    make_settings,
    prepare_input,
    record_run,
    run_metadata,
)
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.sampling import Trajectory


def small_traj(repeats=1, depth=2, nk=3, dim=4) -> Trajectory:
    rng = np.random.default_rng(0)
    return Trajectory(forward=rng.normal(size=(repeats, depth + 1, dim)).astype(np.float32),
                      reverse=rng.normal(size=(repeats, depth, nk, dim)).astype(np.float32),
                      energy=rng.normal(size=(repeats, depth, nk)).astype(np.float32),
                      grad_norm=rng.random((repeats, depth, nk)).astype(np.float32),
                      k_values=np.arange(1, nk + 1), a_cum=np.array([1.0, 0.9, 0.7]), metadata={})


class CountingDecoder:
    """Decodes a latent to a volume filled with its first coordinate; counts latents decoded."""

    def __init__(self, shape=(4, 5, 6), delay=0.0):
        self.shape, self.delay, self.calls, self.latents = shape, delay, 0, 0

    def __call__(self, z):
        time.sleep(self.delay)
        self.calls += 1
        self.latents += len(z)
        return np.stack([np.full(self.shape, zi[0], np.float32) for zi in z])


def test_volumes_shape_indexing_and_cache():
    traj, dec = small_traj(), CountingDecoder()
    vol = TrajectoryVolumes(traj, dec, dec.shape, prefetch=False)
    assert vol.shape == (5, 3, 4, 5, 6) and vol.ndim == 5 and vol.dtype == np.float32
    frame = vol[3, 1]
    assert frame.shape == (4, 5, 6) and frame[0, 0, 0] == pytest.approx(traj.latent(3, 1)[0], rel=1e-3)
    assert vol[3, 1, 2].shape == (5, 6) and vol[3, 1, :, 0, :].shape == (4, 6)
    assert dec.latents == 1  # the slices above hit the cache
    vol[0, 0], vol[0, 2]  # forward frames have no Langevin axis: one decode serves every k
    assert dec.latents == 2
    assert vol[1:3, 0].shape == (2, 4, 5, 6)
    assert vol[-1, -1][0, 0, 0] == pytest.approx(traj.latent(4, 2)[0], rel=1e-3)


def test_volumes_clean_and_repeat_are_separate_frames():
    traj, dec = small_traj(repeats=2), CountingDecoder()
    vol = TrajectoryVolumes(traj, dec, dec.shape, prefetch=False)
    plain = vol[1, 0][0, 0, 0]
    vol.clean = True
    assert vol[1, 0][0, 0, 0] == pytest.approx(plain / 0.9, rel=1e-3)
    vol.clean, vol.repeat = False, 1
    assert vol[1, 0][0, 0, 0] == pytest.approx(traj.forward[1, 1, 0], rel=1e-3)
    assert dec.latents == 3


def test_trajectories_sharing_a_cache_keep_their_own_frames():
    from lsdebm.explore.decode_cache import DecodeCache

    cache, dec = DecodeCache(2 ** 20), CountingDecoder()
    a = TrajectoryVolumes(small_traj(), dec, dec.shape, cache=cache, prefetch=False)
    b_traj = small_traj()
    b_traj.forward = b_traj.forward + 5
    b = TrajectoryVolumes(b_traj, dec, dec.shape, cache=cache, prefetch=False)
    assert a[0, 0][0, 0, 0] + 5 == pytest.approx(b[0, 0][0, 0, 0], rel=1e-3)
    assert len(cache) == 2


def test_volumes_refuse_out_of_range_and_huge_reads():
    vol = TrajectoryVolumes(small_traj(depth=4, nk=5), CountingDecoder(), (4, 5, 6), prefetch=False)
    with pytest.raises(IndexError):
        vol[9, 0]
    with pytest.raises(InputError, match="not loaded into memory"):
        np.asarray(vol)
    with pytest.raises(InputError, match="at most 16"):
        vol[:, :]


def test_prefetch_decodes_neighbours_in_one_background_batch():
    traj, dec = small_traj(depth=3, nk=4), CountingDecoder()
    vol = TrajectoryVolumes(traj, dec, dec.shape)
    vol[5, 1]
    assert vol.jobs.wait_idle(10)
    assert {vol.key(4, 1), vol.key(6, 1), vol.key(5, 0), vol.key(5, 2)} <= set(vol.cache._items)
    assert dec.calls == 2 and dec.latents == 5  # the frame itself, then its four neighbours together
    before = dec.latents
    vol[6, 1]  # now cached: no decode on the calling thread
    assert dec.latents == before or vol.jobs.wait_idle(10)


def test_delayed_prefetch_waits_but_a_request_goes_first():
    from lsdebm.explore.background import JobQueue

    jobs, ran = JobQueue(), []
    start = time.monotonic()
    jobs.submit(lambda: ran.append(("prefetch", time.monotonic() - start)), replace="prefetch", delay=0.3)
    jobs.submit(lambda: ran.append(("request", time.monotonic() - start)), urgent=True)
    jobs.submit(lambda: ran.append(("prefetch", time.monotonic() - start)), replace="prefetch", delay=0.3)
    assert jobs.wait_idle(10)
    assert [name for name, _ in ran] == ["request", "prefetch"] and ran[0][1] < 0.25 <= ran[1][1]
    traj, dec = small_traj(depth=3, nk=4), CountingDecoder()
    vol = TrajectoryVolumes(traj, dec, dec.shape)
    vol.prefetch_delay_s = 0.3
    vol[5, 1]
    assert dec.latents == 1 and not vol.jobs.idle()  # the neighbours wait, queued
    assert vol.jobs.wait_idle(10) and dec.latents == 5
    jobs.close()


def test_nonblocking_returns_placeholder_then_notifies():
    traj, dec = small_traj(), CountingDecoder(delay=0.2)
    vol = TrajectoryVolumes(traj, dec, dec.shape, nonblocking=True, prefetch=False)
    ready = []
    done = threading.Event()
    vol.on_ready = lambda key: (ready.append(key), done.set())
    first = vol[3, 2]
    assert np.all(first == 0)  # nothing decoded yet: a blank placeholder, immediately
    assert done.wait(10) and ready == [vol.key(3, 2)] and vol.wanted == vol.key(3, 2)
    real = vol[3, 2]
    assert real[0, 0, 0] == pytest.approx(traj.latent(3, 2)[0], rel=1e-3)
    done.clear()
    assert np.array_equal(vol[4, 2], real)  # the last real frame stands in while the next decodes
    assert done.wait(10)
    vol.wait_s = 10.0  # a decode that finishes within wait_s is handed over at once
    assert vol[2, 0][0, 0, 0] == pytest.approx(traj.latent(2, 0)[0], rel=1e-3)
    assert vol.last_key == vol.key(2, 0)


def test_record_run_progress_result_and_metadata(tiny_ckpts, tiny_pair):
    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    settings = make_settings("lsdebm", depth=2, K=4, seed=1, repeats=2)
    meta = run_metadata(ckpt, settings, input_name="lq")
    gen = record_run(ckpt, tiny_pair[1], settings, metadata=meta)
    seen = []
    out = drain(gen, seen.append)
    assert len(seen) == count_events(ckpt.model, settings) == 1 + 2 + 2 * 5 + 1
    assert [p.done for p in seen] == list(range(1, len(seen) + 1)) and seen[-1].done == seen[-1].total
    traj = out.trajectory
    assert traj.forward.shape == (2, 3, 8) and traj.reverse.shape == (2, 2, 4, 8) and traj.n_frames == 5
    assert out.probs.shape == (2, 16, 16, 16) and out.mask.dtype == np.uint8
    assert traj.metadata["checkpoint_sha256"] == ckpt.sha256 and traj.metadata["settings"]["K"] == 4
    langevin = [p for p in seen if p.stage == "reverse" and p.payload.k]
    assert langevin and all(p.payload.z.shape == (2, 8) and p.payload.energy is not None for p in langevin)


@pytest.mark.parametrize("kind,frames", [("vae", 1), ("lebm", 2)])
def test_record_run_baselines(tiny_ckpts, tiny_pair, kind, frames):
    ckpt = load_checkpoint(tiny_ckpts[kind])
    out = drain(record_run(ckpt, tiny_pair[1], make_settings(kind, K=3)))
    assert out.trajectory.n_frames == frames and out.probs.shape == (1, 16, 16, 16)


def test_record_run_with_reconnet_stage_and_wrong_kinds(tiny_ckpts, tiny_pair):
    lsd, rn = load_checkpoint(tiny_ckpts["lsdebm"]), load_checkpoint(tiny_ckpts["reconnet"])
    seen = []
    drain(record_run(lsd, tiny_pair[1], make_settings("lsdebm", K=1), stage1=rn), seen.append)
    assert seen[0].stage == "reconnet"
    with pytest.raises(CheckpointError, match="cannot be explored"):
        next(record_run(rn, tiny_pair[1]))
    with pytest.raises(CheckpointError, match="first stage"):
        next(record_run(lsd, tiny_pair[1], stage1=lsd))


def test_cancel_stops_before_the_next_event(tiny_ckpts, tiny_pair):
    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    cancel = threading.Event()
    gen = record_run(ckpt, tiny_pair[1], make_settings("lsdebm", depth=2, K=20), cancel=cancel)
    for _ in range(5):
        next(gen)
    cancel.set()
    start = time.perf_counter()
    with pytest.raises(RunCancelled):
        next(gen)
    assert time.perf_counter() - start < 1.0


def test_prepare_input_keeps_grid_volumes_and_crops_others(tiny_pair):
    from lsdebm.data.phantoms import make_vertebra

    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    x, crop = prepare_input(tiny_pair[1] * 7, affine, 16, 8.0, label=None)
    assert crop is None and x.dtype == np.uint8 and set(np.unique(x)) == {0, 1}
    phantom = make_vertebra("L2", 0, 32, 4.0)
    x, crop = prepare_input(phantom.mask, phantom.affine, 16, 8.0)
    assert x.shape == (16, 16, 16) and crop is not None and x.sum() > 0
    with pytest.raises(InputError, match="label 9"):
        prepare_input(tiny_pair[1] * 7, affine, 16, 8.0, label=9)
    with pytest.raises(InputError, match="3D"):
        prepare_input(np.zeros((4, 4)), affine, 16, 8.0)


def test_prepare_input_wants_a_label_for_a_map_of_several_structures():
    """One trajectory explores one structure: a spine's label map without a label is refused, naming its labels
    (it used to be cropped as one "vertebra", with only a warning); with a label it is that label's voxels."""
    spine = np.zeros((40, 30, 30), np.int16)
    spine[4:16, 8:22, 8:22], spine[22:34, 8:22, 8:22] = 22, 23
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    with pytest.raises(InputError, match=r"layer 'spine' holds 2 labels \(22, 23\); choose the structure to explore"):
        prepare_input(spine, affine, 16, 8.0, what="layer 'spine'")
    x, crop = prepare_input(spine, affine, 16, 8.0, label=23)
    y, _ = prepare_input((spine == 23).astype(np.uint8), affine, 16, 8.0)
    np.testing.assert_array_equal(x, y)
    assert crop is not None and x.any()


def test_find_checkpoint_by_path_next_to_file_and_sha(tiny_ckpts, tmp_path):
    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    meta = run_metadata(ckpt, make_settings("lsdebm"))
    assert find_checkpoint(meta) == ckpt.path
    moved = tmp_path / ckpt.path.name
    moved.write_bytes(ckpt.path.read_bytes())
    gone = {**meta, "checkpoint_path": str(tmp_path / "elsewhere" / ckpt.path.name)}
    assert find_checkpoint(gone, near=tmp_path / "traj.npz") == moved
    assert find_checkpoint({**gone, "checkpoint_sha256": "0" * 64}, near=tmp_path / "traj.npz") is None


def test_decoder_matches_model_and_plots_draw(tiny_ckpts):
    import torch
    from matplotlib.figure import Figure

    from lsdebm.explore.plots import draw_langevin, draw_variance, frame_labels, update_langevin
    from lsdebm.explore.vocabulary import frame_names
    from lsdebm.methods import decode

    ckpt = load_checkpoint(tiny_ckpts["lsdebm"])
    z = np.random.default_rng(0).normal(size=(2, 8)).astype(np.float32)
    np.testing.assert_allclose(make_decoder(ckpt.model)(z), decode(ckpt.model, torch.as_tensor(z))[:, 0].numpy())
    traj = small_traj(repeats=3)
    assert frame_labels(traj) == ["t=0", "t=1", "t=2", "t=1", "t=0"]  # the diffusion step, forward then reverse
    assert frame_names(traj) == ["forward t=0", "forward t=1", "forward t=2", "reverse t=1", "reverse t=0"]
    ax, ax_e, ax_g = Figure().subplots(1, 3)
    draw_variance(ax, traj)
    assert len(ax.lines) == 3 + 1  # one trace per repeat plus the cursor
    draw_langevin(ax_e, ax_g, traj, 3)
    np.testing.assert_allclose(ax_e.lines[0].get_ydata(), traj.energy[0, 1])
    lines = list(ax_e.lines)
    assert update_langevin(ax_e, ax_g, traj, 4, 3)  # another reverse step: the same lines, new data
    assert list(ax_e.lines) == lines and ax_e.get_title().startswith("reverse t=0")
    np.testing.assert_allclose(ax_e.lines[2].get_ydata(), traj.energy[2, 0])
    np.testing.assert_allclose(ax_g.lines[1].get_ydata(), traj.grad_norm[1, 0])
    assert not update_langevin(ax_e, ax_g, traj, 1, 4)  # a forward frame has no curves: drawn anew


@pytest.mark.parametrize("backend", ["matplotlib", "pyvista"])
def test_render_iso_png_draws_the_mask(tmp_path, backend):
    pytest.importorskip(backend)
    from PIL import Image

    from lsdebm.explore.render import render_iso_png

    prob = np.zeros((16, 16, 16), np.float32)
    prob[4:12, 5:11, 6:10] = 1.0
    assert render_iso_png(prob, 8.0, tmp_path / "a.png", "box", backend=backend) == backend
    img = np.asarray(Image.open(tmp_path / "a.png").convert("L"), dtype=float)
    assert img.std() > 5  # not a blank canvas
    render_iso_png(np.zeros_like(prob), 8.0, tmp_path / "empty.png", backend=backend)
    assert (tmp_path / "empty.png").stat().st_size > 0


def test_headless_pyvista_render_opens_egl_without_an_x_warning(tmp_path, monkeypatch, capfd):
    pytest.importorskip("pyvista")
    import ctypes.util
    import sys

    from PIL import Image

    from lsdebm.explore import render

    if not sys.platform.startswith("linux") or not ctypes.util.find_library("EGL"):
        pytest.skip("needs Linux with libEGL")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.delenv(render.WINDOW_VARIABLE, raising=False)
    assert render.headless_window() == "vtkEGLRenderWindow"
    prob = np.zeros((16, 16, 16), np.float32)
    prob[4:12, 5:11, 6:10] = 1.0
    assert render.render_iso_png(prob, 8.0, tmp_path / "a.png", backend="pyvista") == "pyvista"
    assert "bad X server" not in capfd.readouterr().err
    assert np.asarray(Image.open(tmp_path / "a.png").convert("L"), float).std() > 5
    assert render.WINDOW_VARIABLE not in os.environ  # the process environment is left as it was
    monkeypatch.setenv(render.WINDOW_VARIABLE, "vtkOSOpenGLRenderWindow")
    assert render.headless_window() is None  # the user's choice is kept
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.delenv(render.WINDOW_VARIABLE)
    assert render.headless_window() is None  # a display: VTK's own choice


def test_a_trajectory_without_a_recorded_checkpoint_finds_none():
    """Without a sha256, path or name any bundled checkpoint was taken, and a decoder of another model (an 8-dim
    latent read by a 100-dim one) failed when the reopened file was drawn."""
    from lsdebm.explore import find_checkpoint
    from lsdebm.runtime.checkpoint import bundled_checkpoints

    assert bundled_checkpoints()  # there would be candidates
    assert find_checkpoint({}) is None
    assert find_checkpoint({"checkpoint_name": "lsdebm-default"}) == bundled_checkpoints()["lsdebm-default"]
