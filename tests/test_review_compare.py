import numpy as np
import pytest
import torch

from lsdebm.errors import CheckpointError, InputError, LsdebmError
from lsdebm.evaluation.metrics import compute_metrics
from lsdebm.methods import RunSettings, make_generator, run
from lsdebm.review.compare import LABELS, compare_events, compare_methods, load_compare_checkpoints, summary
from lsdebm.review.uncertainty import input_grid_uncertainty, repeated_runs
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.runtime.loading import bundled_slab
from lsdebm.tasks.progress import Progress, drain


@pytest.fixture(scope="module")
def models(tiny_ckpts):
    return load_compare_checkpoints({k: str(p) for k, p in tiny_ckpts.items()})


@pytest.fixture(scope="module")
def case(tiny_pair):
    hq, _, parts = tiny_pair
    lq = hq.copy()
    lq[:, :, ::3] = 0  # thick-slice-like gaps
    from lsdebm.data.phantoms import grid_affine

    return lq, hq, grid_affine(16, 8.0)


def test_compare_runs_every_method_in_display_order(models, case):
    lq, hq, affine = case
    progress = []
    comparison = drain(compare_events(lq, affine, models, RunSettings(seed=3), reference=hq), progress.append)
    assert progress and all(isinstance(e, Progress) for e in progress)
    fractions = [e.fraction for e in progress]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    keys = [r.key for r in comparison.results]
    assert keys == ["input", "reconnet", "vae", "lebm", "lsdebm"]
    assert [r.label for r in comparison.results] == [LABELS[k] for k in keys]
    for r in comparison.results:
        assert r.mask.shape == lq.shape and r.mask.dtype == np.uint8
        assert r.metrics == pytest.approx(compute_metrics(r.mask, hq, 8.0))
    assert np.array_equal(comparison.results[0].mask, lq != 0)
    lsd = comparison.by_key()["lsdebm"]
    shas = {c["role"]: c["sha256"] for c in lsd.provenance["checkpoints"]}
    assert shas == {"reconnet": models["reconnet"].sha256, "method": models["lsdebm"].sha256,
                    "slab interpolation": bundled_slab().sha256}
    assert lsd.provenance["seed"] == 3 and lsd.provenance["settings"]["K"] == models["lsdebm"].config.langevin.K
    # ReconNet output is what the methods refine
    stage1 = (run(models["reconnet"].model, torch.as_tensor(lq, dtype=torch.float32)).probs[0, 0] >= 0.5).numpy()
    assert np.array_equal(comparison.by_key()["reconnet"].mask, stage1)
    assert [row["method"] for row in summary(comparison)] == [LABELS[k] for k in keys]


def test_compare_is_reproducible_and_seed_dependent(models, case):
    lq, _, affine = case
    a = compare_methods(lq, affine, models, RunSettings(seed=5))
    b = compare_methods(lq, affine, models, RunSettings(seed=5))
    for ra, rb in zip(a.results, b.results):
        assert np.array_equal(ra.probs, rb.probs) if ra.probs is not None else True
        assert ra.metrics is None
    c = compare_methods(lq, affine, models, RunSettings(seed=6))
    assert not np.array_equal(a.by_key()["lebm"].probs, c.by_key()["lebm"].probs)


def test_compare_off_grid_input_is_cropped_and_pasted_back(models):
    from lsdebm.data.phantoms import make_vertebra

    p = make_vertebra("L4", 2, 20, 12.0)
    comparison = compare_methods(p.mask, p.affine, models, reference=p.mask)
    assert all(r.mask.shape == p.mask.shape for r in comparison.results)
    assert comparison.by_key()["lsdebm"].provenance["cropped_to_model_grid"] is True
    assert comparison.spacing == (12.0, 12.0, 12.0)


def test_compare_errors(models, case, tiny_ckpts):
    lq, hq, affine = case
    with pytest.raises(InputError, match="non-empty"):
        compare_methods(np.zeros_like(lq), affine, models)
    with pytest.raises(InputError, match="missing checkpoints for LEBM"):
        compare_methods(lq, affine, {k: v for k, v in models.items() if k != "lebm"})
    with pytest.raises(InputError, match="reference shape"):
        compare_methods(lq, affine, models, reference=hq[:8])
    with pytest.raises(CheckpointError, match="holds a vae"):
        load_compare_checkpoints({**{k: str(p) for k, p in tiny_ckpts.items()}, "lebm": str(tiny_ckpts["vae"])})


def test_load_refuses_models_on_different_grids(tmp_path, tiny_ckpts, tiny_cfg):
    from lsdebm.nn import build_model
    from lsdebm.runtime.checkpoint import save_checkpoint

    other = save_checkpoint(build_model("vae", tiny_cfg.replace(**{"model.spacing": 4.0})),
                            tmp_path / "vae.safetensors")
    with pytest.raises(CheckpointError, match="do not share one model grid"):
        load_compare_checkpoints({**{k: str(p) for k, p in tiny_ckpts.items()}, "vae": str(other)})


def test_uncertainty_mean_and_variance_match_the_runs(tiny_ckpts, case):
    lq, _, _ = case
    model = load_checkpoint(tiny_ckpts["lsdebm"]).model
    s = RunSettings(seed=11)
    u = repeated_runs(model, lq, 4, s, chunk=4)
    probs = run(model, lq, RunSettings(seed=11, repeats=4), make_generator(11, "cpu")).probs[:, 0].double().numpy()
    np.testing.assert_allclose(u.mean, probs.mean(0), atol=1e-6)
    np.testing.assert_allclose(u.variance, probs.var(0), atol=1e-6)
    assert u.n == 4 and u.variance.max() > 0  # Langevin noise makes chains differ
    frac = (probs >= 0.5).mean(0)
    np.testing.assert_allclose(u.mask_variance, frac * (1 - frac), atol=1e-6)
    small = repeated_runs(model, lq, 5, s, chunk=2)  # chunking changes nothing but the batch
    assert small.n == 5 and small.mean.shape == lq.shape


def test_uncertainty_progress_cancel_and_errors(tiny_ckpts, case):
    lq, _, affine = case
    vae = load_checkpoint(tiny_ckpts["vae"]).model
    seen = []
    u = input_grid_uncertainty(vae, lq, affine, 3, RunSettings(use_mean=False), chunk=2,
                               progress=lambda i, n: seen.append((i, n)))
    assert seen == [(2, 3), (3, 3)] and u.variance.max() > 0
    deterministic = repeated_runs(vae, lq, 2, RunSettings(use_mean=True))
    assert deterministic.variance.max() == 0.0
    calls = []
    stopped = repeated_runs(vae, lq, 6, RunSettings(use_mean=False), chunk=2,
                            should_stop=lambda: calls.append(1) or len(calls) > 1)
    assert stopped.n == 2
    with pytest.raises(LsdebmError, match="cancelled"):
        repeated_runs(vae, lq, 4, should_stop=lambda: True)
    with pytest.raises(InputError, match="at least 2"):
        repeated_runs(vae, lq, 1)


def test_compare_shows_what_reconstruct_writes_on_a_thick_slice_input(tiny_ckpts):
    """With a known acquisition every row goes through its checkpoint's measurement-aware output."""
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.data.real import degrade
    from lsdebm.data.thickslice import ThickSliceParams
    from lsdebm.runtime.loading import Models, bundled_slab
    from lsdebm.tasks.reconstruct import reconstruct_volume

    cfgless = load_compare_checkpoints({k: str(p) for k, p in tiny_ckpts.items()})
    reconnet = cfgless["reconnet"]
    # the tiny checkpoints carry no consistency settings; give every row the bundled default's
    settings = RunSettings(seed=0, projection=1.0, interpolation=2.0)
    p = make_vertebra("L2", seed=3, size=48, spacing=2.0)
    lq = degrade(p.mask, p.affine, ThickSliceParams(plane="sagittal", thickness=6.0), np.random.default_rng(0))
    shown = compare_methods(lq, p.affine, cfgless, settings, reference=p.mask).by_key()["reconnet"].mask
    written = reconstruct_volume(Models(None, reconnet, bundled_slab()), lq, p.affine, settings=settings).mask
    np.testing.assert_array_equal(shown, written)
    raw = compare_methods(lq, p.affine, cfgless, settings, consistency=False).by_key()["reconnet"].mask
    assert not np.array_equal(shown, raw)  # the projection changed the model's output


def test_compare_takes_the_slab_interpolation_of_choice_and_records_it(tiny_ckpts):
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.data.real import degrade
    from lsdebm.data.thickslice import ThickSliceParams
    from lsdebm.runtime.loading import Models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    models = load_compare_checkpoints({k: str(p) for k, p in tiny_ckpts.items()})
    settings = RunSettings(seed=0, projection=1.0, interpolation=2.0)
    p = make_vertebra("L2", seed=3, size=48, spacing=2.0)
    lq = degrade(p.mask, p.affine, ThickSliceParams(plane="sagittal", thickness=6.0), np.random.default_rng(0))
    learned = compare_methods(lq, p.affine, models, settings).by_key()["reconnet"]
    classical = compare_methods(lq, p.affine, models, settings, slab="none").by_key()["reconnet"]
    written = reconstruct_volume(Models(None, models["reconnet"], None), lq, p.affine, settings=settings).mask
    np.testing.assert_array_equal(classical.mask, written)
    assert not np.array_equal(learned.mask, classical.mask)
    roles = [c["role"] for c in learned.provenance["checkpoints"]]
    assert "slab interpolation" in roles
    assert "slab interpolation" not in [c["role"] for c in classical.provenance["checkpoints"]]
    with pytest.raises(CheckpointError, match="expected 'default'"):
        compare_methods(lq, p.affine, models, settings, slab="/nonexistent/slab.safetensors")


def test_the_compared_structure_is_one_label_of_a_map():
    """A spine's label map is compared one vertebra at a time: the input's label, the reference's same label
    (or a binary reference as it is); a map of several labels without a choice is refused in one line."""
    from lsdebm.review.compare import compared_structure

    labels = np.zeros((12, 12, 12), np.int16)
    labels[1:5, 1:5, 1:5] = 20
    labels[7:11, 7:11, 7:11] = 21
    truth = labels.copy()
    truth[7:11, 7:11, 6] = 21
    x, ref = compared_structure(labels, 21, "layer 'spine'", truth)
    np.testing.assert_array_equal(x, labels == 21)
    np.testing.assert_array_equal(ref, truth == 21)
    assert x.dtype == ref.dtype == np.uint8
    _, binary = compared_structure(labels, 20, "layer 'spine'", (truth > 0).astype(np.uint8))
    np.testing.assert_array_equal(binary, truth > 0)  # a binary truth is used as it is
    with pytest.raises(InputError, match=r"layer 'spine' holds 2 labels \(20, 21\); choose the structure"):
        compared_structure(labels, None, "layer 'spine'")
    with pytest.raises(InputError, match=r"label 5 not found in the volume; labels present: \[20, 21\]"):
        compared_structure(labels, 5, "layer 'spine'")
    one, _ = compared_structure((labels == 20).astype(np.float32) * 0.9, None, "layer 'p'")
    np.testing.assert_array_equal(one, labels == 20)  # a probability map: thresholded at one half


def test_a_structure_of_a_large_map_is_compared_on_its_box_with_the_same_result(models):
    """A vertebra of a whole-body map is compared on its box (the structure plus a margin, and the model crop's
    reach): the same masks, DSC and surface distances as on the whole grid, the box's affine placing it in the same
    world position."""
    from lsdebm.data.phantoms import make_vertebra
    from lsdebm.data.real import degrade
    from lsdebm.data.thickslice import ThickSliceParams
    from lsdebm.review.compare import structure_box

    p = make_vertebra("L3", 4, 40, 4.0)  # 4 mm voxels; thick slices of 8 mm
    lq = degrade(p.mask, p.affine, ThickSliceParams(plane="axial", thickness=8.0, offset=3.0, inplane_blur=0.0,
                                                    noise_amplitude=0.0), np.random.default_rng(0))
    body, truth = np.zeros((90, 80, 100), np.uint8), np.zeros((90, 80, 100), np.uint8)
    at = (30, 12, 44)
    where = tuple(slice(a, a + n) for a, n in zip(at, lq.shape))
    body[where], truth[where] = lq, p.mask
    affine = p.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array(at)
    x, ref, box_affine, box = structure_box(body, truth, affine, models)
    assert x.size < body.size / 2 and np.allclose(box_affine[:3, 3], affine[:3, :3] @ [b.start for b in box]
                                                  + affine[:3, 3])
    whole = compare_methods(body, affine, models, reference=truth)
    cut = compare_methods(x, box_affine, models, reference=ref)
    for a, b in zip(whole.results, cut.results):
        assert a.mask.sum() == a.mask[box].sum() and np.array_equal(a.mask[box], b.mask), a.key
        # an empty result's surface distances are the grid's diagonal by convention, so they follow the grid
        for key in ("dsc", "vs", "hd95", "assd") if a.mask.any() else ("dsc", "vs"):
            assert a.metrics[key] == pytest.approx(b.metrics[key]), (a.key, key)
    assert any(r.mask.any() for r in whole.results[1:])
    assert structure_box(np.zeros((5, 5, 5)), None, affine)[3] is None
    with pytest.raises(InputError, match=r"reference shape \(91, 80, 100\) differs from the input shape"):
        structure_box(body, np.pad(truth, ((0, 1), (0, 0), (0, 0))), affine, models)  # not cut to look alike
    from lsdebm.data.phantoms import grid_affine

    on_grid = np.zeros((16, 16, 16), np.uint8)
    on_grid[6:9, 6:9, 6:9] = 1  # a volume on the models' grid runs as it is, so it is not cut
    assert structure_box(on_grid, None, grid_affine(16, 8.0), models)[3] is None
