"""The learned slab interpolation: its input channels, the network, the interpolator, training, loading."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from lsdebm.config import get_preset
from lsdebm.data.acquisition import Acquisition
from lsdebm.data.frame import resample
from lsdebm.data.slab_features import CHANNELS, slab_box, slab_features
from lsdebm.data.slab_projection import consistent_probabilities, interpolate_slabs, slab_ids
from lsdebm.errors import CheckpointError, InputError
from lsdebm.methods.slab import SlabInterpolator, one_mm_grid
from lsdebm.nn.slabnet import SlabNet
from lsdebm.runtime.checkpoint import save_checkpoint, with_sampling_settings
from lsdebm.runtime.loading import load_slab_model

THICK = 4  # slab thickness in voxels (mm on the 1 mm grid)


def _staircase(shape=(40, 36, 32), axis=0, seed=0):
    """A smooth blob, its nearest-slab observation on the same 1 mm grid, and the acquisition."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), 4)
    zz, yy, xx = np.indices(shape)
    centre = np.array(shape)[:, None, None, None] / 2
    r = np.sqrt(((np.stack([zz, yy, xx]) - centre) ** 2).sum(0))
    truth = (r + 60 * field) < 11
    n = shape[axis]
    slab = np.arange(n) // THICK
    mids = np.array([np.flatnonzero(slab == s)[len(np.flatnonzero(slab == s)) // 2] for s in slab])
    observed = np.take(truth, mids, axis=axis)
    return truth, observed.astype(np.uint8), Acquisition(axis, float(THICK), 0.0, "options")


def test_features_hold_the_observation_the_classical_interpolation_and_the_slab_position():
    _, observed, acq = _staircase(axis=1)
    affine = np.eye(4)
    f = slab_features(observed, acq, affine, affine, axis=1)
    assert f.shape == (CHANNELS, observed.shape[1], observed.shape[0], observed.shape[2]) and f.dtype == np.float32
    obs_first = np.moveaxis(observed, 1, 0)
    assert np.array_equal(f[0] > 0, obs_first > 0) and set(np.unique(f[0])) <= {-1.0, 1.0}
    ids = slab_ids(acq, affine, observed.shape, affine, 1)
    classical = interpolate_slabs(observed, ids, 1, (1.0, 1.0, 1.0))
    assert np.array_equal(f[1] > 0, np.moveaxis(classical, 1, 0) > 0.5)
    pos = f[2, :, 0, 0]
    assert pos.min() >= -0.5 and pos.max() <= 0.5
    for s in np.unique(ids):
        assert abs(pos[ids == s].mean()) < 1e-6  # centred within each slab
    assert np.allclose(f[3], THICK / 10.0)


def test_slab_box_grows_the_foreground_and_refuses_nothing_silently():
    mask = np.zeros((20, 20, 20), np.uint8)
    mask[8:10, 9, 5:7] = 1
    assert slab_box(mask, margin=3) == (slice(5, 13), slice(6, 13), slice(2, 10))
    assert slab_box(np.zeros((4, 4, 4))) is None


def test_an_untrained_slabnet_is_the_classical_interpolation():
    torch.manual_seed(0)
    net = SlabNet(get_preset("default")).eval()
    _, observed, acq = _staircase(shape=(37, 30, 29))  # sizes that are not multiples of 8
    f = slab_features(observed, acq, np.eye(4), np.eye(4), axis=0)
    logits = net.logits(torch.from_numpy(f)).numpy()
    assert logits.shape == observed.shape
    np.testing.assert_allclose(logits, f[1] * 4.0, atol=1e-5)


def test_the_head_is_the_convolutions_it_is_defined_by():
    """The 1 mm head runs as products over channels, part of it at 2 mm: the same function as the plain layers."""
    import torch.nn.functional as F

    from lsdebm.data.slab_features import BASE_SCALE

    torch.manual_seed(0)
    net = SlabNet().eval()
    for layer in (net.h1, net.h2):
        torch.nn.init.normal_(layer.weight, std=0.3)
        torch.nn.init.normal_(layer.bias, std=0.3)
    x = torch.randn(1, CHANNELS, 16, 24, 8)

    def plain(x):  # the head as the layers define it: upsample, concatenate, two 1x1x1 convolutions
        a = net.trunk(x)
        up = F.interpolate(a, size=x.shape[2:], mode="trilinear")
        return x[:, 1:2] * BASE_SCALE + net.h2(F.silu(net.h1(torch.cat([up, x], 1))))

    with torch.no_grad():
        expected = plain(x)
        assert float((expected - x[:, 1:2] * BASE_SCALE).abs().mean()) > 0.1  # the head does contribute
        torch.testing.assert_close(net(x), expected, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(net.logits(x[0]), expected[0, 0], atol=1e-5, rtol=1e-5)


def test_the_interpolator_resamples_other_spacings_to_its_1mm_grid():
    torch.manual_seed(0)
    interp = SlabInterpolator(SlabNet(get_preset("default")).eval(), "untrained")
    _, observed, acq = _staircase()
    one = interp(observed, np.eye(4), np.eye(4), acq, 0) > 0
    fine = np.diag([0.5, 0.5, 0.5, 1.0])
    fine[:3, 3] = -0.25  # same field of view, half the spacing
    shape, aff = one_mm_grid(tuple(2 * n for n in observed.shape), fine)
    assert shape == observed.shape and np.allclose(aff, np.eye(4))
    zoomed = np.repeat(np.repeat(np.repeat(observed, 2, 0), 2, 1), 2, 2)
    half = interp(zoomed, fine, fine, Acquisition(0, float(THICK), 0.0, "options"), 0) > 0
    assert half.shape == zoomed.shape
    back = half[::2, ::2, ::2]
    dice = 2 * (back & one).sum() / (back.sum() + one.sum())
    assert dice > 0.95


class _Recorder(torch.nn.Module):
    """Stands in for SlabNet: records the features it is given and returns the classical logit."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen = []

    def logits(self, x):
        self.seen.append(x.numpy().copy())
        return x[1] * 4.0


def _random_slabs():
    """Native 5 mm slabs along axis 0, a different random in-plane mask in each, and their affine."""
    rng = np.random.default_rng(1)
    native = np.zeros((9, 40, 40), np.uint8)
    native[1:8, 8:32, 8:32] = rng.random((7, 24, 24)) < 0.6
    return native, np.diag([5.0, 1.0, 1.0, 1.0])


def _one_mask_per_slab(observed, grid, in_affine, acq, source):
    """SlabNet's observation channel (slab axis 0) split into slabs, each checked to show one mask.

    A slab starts where the position channel resets."""
    model = _Recorder()
    SlabInterpolator(model, "recorder")(observed, grid, in_affine, acq, 0, source=source)
    features = model.seen[0]
    blocks = np.split(features[0], np.flatnonzero(np.diff(features[2, :, 0, 0]) < 0) + 1)
    assert len(blocks) >= 7
    for block in blocks:
        assert all(np.array_equal(block[0], sl) for sl in block[1:])
    return blocks


@pytest.mark.parametrize("spacing, shift", [(0.8, 0.61), (1.5, 0.37)])
def test_on_another_grid_each_1mm_slice_shows_the_slab_it_lies_in(spacing, shift):
    # native slabs reconstructed on a 0.8 or 1.5 mm grid: SlabNet's 1 mm observation must change
    # only where its slab changes (resampled through the output grid, slices near slab edges took
    # the neighbour's mask: 8 and 6 such slices here before)
    native, in_affine = _random_slabs()
    acq = Acquisition(0, 5.0, 0.0, "spacing")
    out_affine = np.diag([spacing, spacing, spacing, 1.0])
    out_affine[:3, 3] = -0.5 * np.array([5.0, 1.0, 1.0]) + spacing / 2 + shift
    shape = (int(45 / spacing), int(40 / spacing), int(40 / spacing))
    _one_mask_per_slab(resample(native, shape, out_affine, in_affine, order=0), out_affine, in_affine, acq, native)


def test_a_staircase_on_a_1_5mm_grid_gives_each_slab_its_own_mask():
    # the truth form on a 1.5 mm grid: the input itself is the slabs resampled once (nearest), and
    # SlabNet's 1 mm grid resamples it again; each slab must still show one mask, its own
    native, native_affine = _random_slabs()
    grid = np.diag([1.5, 1.0, 1.0, 1.0])
    grid[0, 3] = -2.5 + 0.75 + 0.4  # a grid edge 0.4 mm past the slabs' first edge
    staircase = resample(native, (29, 40, 40), grid, native_affine, order=0)
    acq = Acquisition(0, 5.0, (-2.5 - (grid[0, 3] - 0.75)) % 5.0, "staircase")
    blocks = _one_mask_per_slab(staircase, grid, grid, acq, staircase)
    shown = [next((k for k in range(9) if np.array_equal(b[0] > 0, native[k] > 0)), None) for b in blocks]
    assert [k for k in shown if k not in (0, 8)] == list(range(1, 8))  # every slab once, in order, itself


def test_consistent_probabilities_uses_the_learned_interpolator_when_given():
    truth, observed, acq = _staircase(seed=3)
    calls = []

    def interpolator(seen, grid_affine, in_affine, a, axis, source=None):
        calls.append((seen.shape, axis))
        # the input mask travels with the resampled box, kept on its own box (not the whole input grid)
        assert source.shape == observed.shape and source.values.size < observed.size
        np.testing.assert_array_equal(source.full(), observed)
        return np.where(seen > 0, 6.0, -6.0).astype(np.float32)

    interpolator.name = "stub"
    probs = np.full(observed.shape, 0.5, np.float32)
    out, note = consistent_probabilities(probs, observed, np.eye(4), acq, observed.shape, np.eye(4), 0.0, 0.02,
                                         1.0, interpolator)
    assert calls and calls[0][1] == 0 and "learned interpolation stub" in note
    inside = observed > 0
    assert out[inside].min() > 0.99 and out[~inside].max() < 0.01
    _, classical = consistent_probabilities(probs, observed, np.eye(4), acq, observed.shape, np.eye(4), 0.0, 0.02, 1.0)
    assert "shape interpolation" in classical


def _tiny_training(tmp_path, *extra):
    from lsdebm.cli.main import main

    out = tmp_path / "slab.safetensors"
    argv = ["train", "--model", "slabnet", "--data", "bundled", "--pairs", "2", "--real-fraction", "1.0",
            "--val-phantoms", "1", "--epochs", "1", "--batch-size", "1", "--threads", "1", "--out", str(out), *extra]
    assert main(argv) == 0
    return out


def test_train_slabnet_writes_a_loadable_checkpoint_and_resumes(tmp_path):
    out = _tiny_training(tmp_path)
    assert out.is_file() and out.with_name("slab.csv").is_file() and out.with_name("slab.optim.safetensors").is_file()
    loaded = load_slab_model(out)
    assert loaded.kind == "slabnet" and loaded.info["epochs"] == 1 and loaded.info["final_val_dsc"] is not None
    assert loaded.config.consistency.interpolation == 1.0
    _tiny_training(tmp_path, "--resume", str(out), "--epochs", "2")
    again = load_slab_model(out)
    assert again.info["epochs"] == 2 and again.info["steps"] == 4
    weights = with_sampling_settings(out, tmp_path / "w.safetensors", {"consistency.interpolation": 1.5},
                                     "test", extra_kinds={"slabnet": SlabNet})
    assert load_slab_model(weights).config.consistency.interpolation == 1.5


def test_a_refinement_block_starts_as_the_slabnet_it_is_fine_tuned_from(tmp_path, capsys):
    """--set model.slab_refine=N --init-from CKPT: the new 1 mm block starts at zero, so the new SlabNet
    starts as CKPT; the block is stored with the weights and refused where it does not fit."""
    from lsdebm.cli.main import main

    source = _tiny_training(tmp_path)
    plain = load_slab_model(source).model
    refined = SlabNet(get_preset("default").replace(**{"model.slab_refine": 4}))
    assert refined.refine is not None and plain.refine is None
    out = tmp_path / "refined.safetensors"
    argv = ["train", "--model", "slabnet", "--data", "bundled", "--pairs", "2", "--real-fraction", "1.0",
            "--val-phantoms", "1", "--epochs", "1", "--batch-size", "1", "--threads", "1", "--lr", "1e-12",
            "--set", "model.slab_refine=4", "--init-from", str(source), "--out", str(out)]
    assert main(argv) == 0
    loaded = load_slab_model(out)
    assert loaded.config.model.slab_refine == 4 and loaded.model.refine is not None
    x = torch.randn(1, CHANNELS, 16, 16, 16)
    with torch.no_grad():  # lr 1e-12: one step moves nothing measurable; the zero block adds nothing
        assert torch.allclose(loaded.model(x), plain(x), atol=1e-4)
    capsys.readouterr()
    assert main([*argv[:-6], "--init-from", str(source), "--resume", str(out), "--out", str(out)]) != 0
    assert "--init-from starts a new run" in capsys.readouterr().err
    assert main([*argv[:-4], "--resume", str(out), "--out", str(out)]) != 0
    assert "drop --set model.slab_refine" in capsys.readouterr().err
    back = tmp_path / "back.safetensors"  # a SlabNet without the block cannot start from one with it
    assert main([*argv[:-6], "--init-from", str(out), "--out", str(back)]) != 0
    assert "do not fit this SlabNet" in capsys.readouterr().err and not back.exists()
    vae = tmp_path / "vae.safetensors"  # a VAE run does not start from a SlabNet
    assert main(["train", "--model", "vae", "--phantoms", "2", "--init-from", str(source), "--out", str(vae)]) != 0
    assert str(source) in capsys.readouterr().err and not vae.exists()


@pytest.mark.parametrize("extra, message", [(["--phantoms", "3"], "--phantoms"),
                                            (["--set", "train.lr=1e-3"], "fixed architecture")])
def test_train_slabnet_refuses_options_that_do_not_apply(tmp_path, extra, message):
    from lsdebm.train.loop import TrainOptions
    from lsdebm.train.slab import train_slab

    opts = TrainOptions(model="slabnet", out=tmp_path / "x.safetensors", data="bundled")
    if extra[0] == "--phantoms":
        opts.phantoms = 3
    else:
        opts.overrides = {"train.lr": 1e-3}
    with pytest.raises(InputError, match=message):
        train_slab(opts)
    assert not (tmp_path / "x.safetensors").exists()


def test_load_slab_model_choices(tmp_path, monkeypatch):
    import lsdebm.runtime.loading as loading

    assert load_slab_model("none") is None and load_slab_model(None) is None
    monkeypatch.setattr(loading, "SLAB_DIR", tmp_path)
    assert load_slab_model("default") is None  # not installed: the classical interpolation
    with pytest.raises(CheckpointError, match="not installed"):
        load_slab_model("slabnet-default")
    torch.manual_seed(0)
    save_checkpoint(SlabNet(get_preset("default")), tmp_path / "slabnet-default.safetensors")
    assert load_slab_model("default").kind == "slabnet"
    from lsdebm.runtime.checkpoint import load_checkpoint

    # given where a refinement or ReconNet is read, it was "unknown model kind 'slabnet'": say what it is and where
    with pytest.raises(CheckpointError, match=r"holds a slabnet model \(the output step's slab interpolation: pass it "
                                              r"as --slab-model\); expected one of lsdebm, vae, lebm, reconnet"):
        load_checkpoint(tmp_path / "slabnet-default.safetensors")
    with pytest.raises(CheckpointError, match="reconnet"):
        load_slab_model("reconnet-default")
    with pytest.raises(CheckpointError, match="no such file; expected 'default'.*'none'"):
        load_slab_model(tmp_path / "missing.safetensors")


def test_output_step_takes_the_weight_stored_with_the_slab_model(tmp_path):
    from lsdebm.methods import RunSettings
    from lsdebm.runtime.checkpoint import LoadedCheckpoint
    from lsdebm.runtime.loading import output_step

    cfg = get_preset("default")
    method = SlabNet(cfg.replace(**{"consistency.interpolation": 2.0, "consistency.projection": 1.0}))
    slab = LoadedCheckpoint(SlabNet(cfg), cfg.replace(**{"consistency.interpolation": 1.5}), "slabnet")
    ccfg, interp = output_step(method, slab)
    assert ccfg.interpolation == 1.5 and ccfg.projection == 1.0 and isinstance(interp, SlabInterpolator)
    assert output_step(method, slab, RunSettings(interpolation=0.7))[0].interpolation == 0.7
    assert output_step(method, slab, RunSettings(interpolation=0.0))[1] is None  # unguided: no slab model
    ccfg, interp = output_step(method, None)
    assert ccfg.interpolation == 2.0 and interp is None
    unset = LoadedCheckpoint(SlabNet(cfg), cfg, "slabnet")  # a slab model that stores no weight
    assert output_step(method, unset)[0].interpolation == 2.0


def test_checkpoints_command_describes_a_slab_model(tmp_path, capsys):
    from lsdebm.cli.main import main

    path = save_checkpoint(SlabNet(get_preset("default")), tmp_path / "mine.safetensors",
                           info={"description": "a test slab model"})
    assert main(["checkpoints", str(path)]) == 0
    text = capsys.readouterr().out
    assert "mine  [slabnet" in text and "a test slab model" in text


def test_the_bundled_slab_model_improves_unseen_real_vertebrae_over_the_classical_interpolation():
    """The shipped SlabNet, on the 5 mm validation cases of subjects it never saw (22 cases)."""
    from lsdebm.evaluation.metrics import dice
    from lsdebm.evaluation.real import predict, real_cases
    from lsdebm.runtime.loading import load_models

    learned = load_models("reconnet")
    assert learned.slab is not None and learned.slab.path.stem == "slabnet-default"
    classical = load_models("reconnet", slab="none")
    cases = real_cases(None, "val", ("sagittal", "axial"), (5.0,), seed=0)
    scores = np.array([[dice(predict(c, None), c.truth), dice(predict(c, classical), c.truth),
                        dice(predict(c, learned), c.truth)] for c in cases])
    raw, classic, slab = scores.mean(0)
    assert slab > classic > raw
    assert np.all(scores[:, 2] > scores[:, 0])  # better than the input on every case


def test_a_training_step_in_channels_last_is_the_plain_step():
    """The training layout (channels-last, for oneDNN's fast paths) changes the speed, not the step."""
    import copy

    from lsdebm.nn.slabnet import LAYOUT
    from lsdebm.train.slab import loss_of, train_step

    torch.manual_seed(0)
    plain = SlabNet()
    torch.nn.init.normal_(plain.h2.weight, std=0.1)  # a residual head that is not zero, so every layer learns
    fast = copy.deepcopy(plain).to(memory_format=LAYOUT)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, CHANNELS, 16, 16, 16)).astype(np.float32)
    y = (rng.random((2, 1, 16, 16, 16)) < 0.5).astype(np.float32)
    opt_plain, opt_fast = (torch.optim.AdamW(m.parameters(), lr=1e-3) for m in (plain, fast))
    loss = loss_of(plain(torch.from_numpy(x)), torch.from_numpy(y))
    loss.backward()
    opt_plain.step()
    assert train_step(fast, opt_fast, x, y, torch.device("cpu")) == pytest.approx(float(loss), abs=1e-5)
    assert fast.e1a.weight.is_contiguous(memory_format=LAYOUT)
    for a, b in zip(plain.parameters(), fast.parameters()):
        assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("offset", [0.0, 0.37, 2.9])
def test_the_1mm_grid_on_another_grid_is_moved_so_no_slice_straddles_a_slab_boundary(offset):
    from lsdebm.methods.slab import align_to_slabs

    grid = np.diag([1.5, 1.5, 1.5, 1.0])
    grid[:3, 3] = [3.3, -1.0, 2.0]
    in_affine = grid  # a staircase on the 1.5 mm grid itself, 5 mm slabs along axis 1
    acq = Acquisition(1, 5.0, offset, "staircase")
    shape, affine = one_mm_grid((20, 30, 20), grid)
    grown, moved = align_to_slabs(shape, affine, in_affine, acq, 1)
    assert grown == (shape[0], shape[1] + 1, shape[2])
    lo_edge = np.linalg.inv(in_affine) @ moved @ np.array([0.0, -0.5, 0.0, 1.0])
    hi_edge = np.linalg.inv(in_affine) @ moved @ np.array([0.0, grown[1] - 0.5, 0.0, 1.0])
    old_lo = np.linalg.inv(in_affine) @ affine @ np.array([0.0, -0.5, 0.0, 1.0])
    old_hi = np.linalg.inv(in_affine) @ affine @ np.array([0.0, shape[1] - 0.5, 0.0, 1.0])
    assert lo_edge[1] <= old_lo[1] + 1e-9 and hi_edge[1] >= old_hi[1] - 1e-9  # still covers the box
    edges_mm = (lo_edge[1] + 0.5) * 1.5 + np.arange(grown[1] + 1)  # every 1 mm slice edge, as Acquisition counts
    phase = np.mod(edges_mm - offset, 5.0)
    assert np.min(np.minimum(phase, 5.0 - phase)) < 1e-6  # slab boundaries fall on slice edges
    ids = slab_ids(acq, in_affine, grown, moved, 1)
    assert np.all(np.bincount(ids - ids.min())[1:-1] == 5)  # whole slabs of five 1 mm slices


def test_on_a_1_5mm_grid_the_result_does_not_jump_with_a_tenth_of_a_millimetre_of_offset():
    # a real L2, 5 mm sagittal slabs resampled (staircase) onto its 1.5 mm grid; the slab offset
    # declared 0.05 mm apart on either side of where, before the 1 mm grid was aligned to the
    # slabs, every slab's edge slice changed slab at once and Dice jumped by 0.010
    import zlib

    from lsdebm.data.real import isotropic, load_real_masks, slab_axis
    from lsdebm.evaluation.metrics import dice
    from lsdebm.evaluation.second_simulator import SecondSimulator
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    m = next(x for x in load_real_masks(split="val", levels=("L2",)) if x.subject == "verse009")
    truth, affine = isotropic(m.mask, m.affine, spacing=1.5, pad_mm=10.0)
    axis = slab_axis(affine, "sagittal")
    rng = np.random.default_rng(zlib.crc32(b"L2_verse009sagittal"))
    lq, native, native_affine = SecondSimulator().degrade(truth, affine, axis, 5.0, rng)
    centre = (np.linalg.inv(affine) @ native_affine[:, 3])[axis]
    offset = ((centre + 0.5) * 1.5 - 2.5) % 5.0
    models = load_models("reconnet")
    declared = [Acquisition(axis, 5.0, offset + d, "options") for d in (-0.05, -0.10)]
    scores = [dice(reconstruct_volume(models, lq, affine, acquisition=a).mask, truth) for a in declared]
    assert abs(scores[0] - scores[1]) < 0.003
    assert min(scores) > dice(lq, truth) + 0.015


def test_train_slabnet_on_a_plain_folder_validates_on_phantoms(tmp_path):
    """A folder without a 'val' split failed after drawing the bank ('no real masks match split=val');
    like the other models, SlabNet now validates on phantoms there."""
    import shutil

    from lsdebm.cli.main import main
    from lsdebm.data.real import bundled_manifest

    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copy(bundled_manifest().parent / "verse" / "L3_verse004.nii.gz", folder / "L3_verse004.nii.gz")
    out = tmp_path / "slab.safetensors"
    assert main(["train", "--model", "slabnet", "--data", str(folder), "--pairs", "2", "--real-fraction", "1.0",
                 "--val-phantoms", "1", "--epochs", "1", "--batch-size", "1", "--threads", "1", "--out", str(out)]) == 0
    assert load_slab_model(out).info["final_val_dsc"] is not None


def test_a_time_capped_slabnet_epoch_is_run_again_once_on_resume(tmp_path):
    """A run stopped by --max-minutes inside an epoch saved that epoch's cut row; --resume ran the epoch again
    and the CSV held it twice."""
    import csv

    out = _tiny_training(tmp_path, "--max-minutes", "0.001")  # 60 ms: stops after the first of two steps
    with open(out.with_name("slab.csv"), newline="") as handle:
        assert [(r["epoch"], r["steps"]) for r in csv.DictReader(handle)] == [("1", "1")]
    _tiny_training(tmp_path, "--resume", str(out))
    with open(out.with_name("slab.csv"), newline="") as handle:
        assert [(r["epoch"], r["steps"]) for r in csv.DictReader(handle)] == [("1", "2")]
