"""Measurement-aware LSD-EBM: the data-consistency term, its events, its trajectory record."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsdebm.data.acquisition import find_acquisition
from lsdebm.data.boxes import BoxedVolume
from lsdebm.data.frame import crop_to_model, resample
from lsdebm.data.real import degrade, isotropic, load_real_masks
from lsdebm.data.thickslice import ThickSliceParams
from lsdebm.methods import RunSettings, run_events, sampling_schedule
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.runtime.loading import Models
from lsdebm.sampling.events import LangevinEvent, ResultEvent
from lsdebm.sampling.guidance import build_observation
from lsdebm.tasks.reconstruct import make_recorder, reconstruct_volume


@pytest.fixture(scope="module")
def case():
    torch.set_num_threads(1)
    m = load_real_masks(split="val", levels=("L3",))[0]
    truth, affine = isotropic(m.mask, m.affine, 1.0, 10.0)
    params = ThickSliceParams(plane="axial", thickness=5.0, gap=0.0, offset=2.0, inplane_blur=0.7,
                              noise_amplitude=0.2, noise_smoothness=3.0)
    lq = degrade(truth, affine, params, np.random.default_rng(1))
    ck = load_checkpoint("lsdebm-default")
    crop, info = crop_to_model(lq, affine, None, ck.config.model.grid, ck.config.model.spacing, ck.config.model)
    acq = find_acquisition(lq, affine)
    obs = build_observation(lq, affine, acq, info.crop_affine, ck.config.model.grid, ck.config.model.spacing)
    hq = resample(truth.astype(np.float32), crop.shape, info.crop_affine, affine, 1)
    return {"truth": truth, "affine": affine, "lq": lq, "crop": crop, "info": info, "acq": acq, "obs": obs,
            "hq": hq, "ck": ck}


def test_observation_prefers_the_truth(case):
    obs = case["obs"]
    assert obs is not None and obs.columns > 500
    as_tensor = lambda a: torch.as_tensor(np.asarray(a, np.float32))[None, None]  # noqa: E731
    truth_e = float(obs.energy(as_tensor(case["hq"])))
    empty_e = float(obs.energy(as_tensor(np.zeros_like(case["hq"]))))
    shifted_e = float(obs.energy(as_tensor(np.roll(case["hq"], 4, axis=1))))
    assert truth_e < 0.1 * empty_e and truth_e < 0.5 * shifted_e
    # observed foreground columns: most of the truth's slab means are above one half
    means = obs.slab_means(as_tensor(case["hq"]))
    fg = obs.observed > 0
    assert float((means[fg] >= 0.5).float().mean()) > 0.8


def test_observation_from_a_box_is_the_one_from_the_whole_grid(case):
    """A vertebra of a whole-body map is observed on its box: the same columns and values, to the bit, as
    from a whole-grid copy."""
    lq, affine, ck, info, acq = case["lq"], case["affine"], case["ck"], case["info"], case["acq"]
    grid, spacing = ck.config.model.grid, ck.config.model.spacing
    whole = build_observation(lq, affine, acq, info.crop_affine, grid, spacing)
    boxed = build_observation(BoxedVolume.around(lq, 1), affine, acq, info.crop_affine, grid, spacing)
    assert whole is not None and boxed is not None and whole.columns > 500
    assert torch.equal(whole.observed, boxed.observed) and torch.equal(whole.grid, boxed.grid)


def test_guided_events_split_prior_and_data_and_lower_the_data_term(case):
    ck = case["ck"]
    model = ck.model
    original = model.cfg
    model.cfg = original.replace(**{"consistency.weight": 5.0, "consistency.steps": 4,
                                    "consistency.noise_scale": 0.0, "consistency.step_size": 0.02})
    try:
        x = torch.as_tensor(case["crop"], dtype=torch.float32)[None, None]
        events = list(run_events(model, x, RunSettings(seed=0), observations=[case["obs"]]))
    finally:
        model.cfg = original
    guided = [e for e in events if isinstance(e, LangevinEvent) and e.phase == "consistency"]
    assert [e.k for e in guided] == [1, 2, 3, 4]
    assert all(e.data_energy is not None and float(e.data_energy[0]) >= 0 for e in guided)
    assert all(float(e.data_energy[0]) <= float(e.energy[0]) + abs(float(e.energy[0])) + 1e-6 for e in guided)
    assert float(guided[-1].data_energy[0]) < float(guided[0].data_energy[0])
    a1 = float(sampling_schedule(model).a[1])  # the result decodes the last guided latent, y / a_1
    assert isinstance(events[-1], ResultEvent) and torch.allclose(events[-1].z, guided[-1].z / a1)


def test_weight_zero_is_the_papers_sampler_bit_for_bit(case):
    model = case["ck"].model
    x = torch.as_tensor(case["crop"], dtype=torch.float32)[None, None]
    plain = list(run_events(model, x, RunSettings(seed=3)))
    with_obs = list(run_events(model, x, RunSettings(seed=3, consistency_weight=0.0), observations=[case["obs"]]))
    assert len(plain) == len(with_obs)
    assert torch.equal(plain[-1].probs, with_obs[-1].probs)
    assert not any(isinstance(e, LangevinEvent) and e.phase == "consistency" for e in with_obs)


def test_recorder_keeps_the_guided_iterations(case, tmp_path):
    ck = case["ck"]
    settings = RunSettings(seed=0, consistency_weight=2.0, consistency_steps=3)
    rec = make_recorder(ck.model, settings)
    x = torch.as_tensor(case["crop"], dtype=torch.float32)[None, None]
    for ev in run_events(ck.model, x, settings, observations=[case["obs"]]):
        rec(ev)
    traj = rec.trajectory()
    assert traj.guided.shape == (1, 3, ck.config.model.latent_dim)
    assert traj.guided_energy.shape == (1, 3, 2) and np.all(traj.guided_energy[..., 1] >= 0)
    path = traj.save(tmp_path / "t.npz")
    back = type(traj).load(path)
    assert np.array_equal(back.guided, traj.guided) and np.array_equal(back.guided_energy, traj.guided_energy)


def test_reconstruct_records_acquisition_and_guidance(case):
    models = Models(case["ck"], None)
    out = reconstruct_volume(models, case["lq"], case["affine"],
                             settings=RunSettings(consistency_weight=1.0, consistency_steps=2, projection=1.0))
    prov = out.provenance
    assert prov["acquisition"]["source"] == "staircase" and abs(prov["acquisition"]["thickness_mm"] - 5.0) < 0.3
    assert prov["guided"] is True and prov["projection"][0].startswith("projected")
    unguided = reconstruct_volume(models, case["lq"], case["affine"], acquisition=None)
    assert unguided.provenance["acquisition"] is None and unguided.provenance["guided"] is False


def test_energy_plot_splits_prior_and_data(case):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from lsdebm.explore.plots import draw_langevin

    ck = case["ck"]
    settings = RunSettings(seed=0, consistency_weight=2.0, consistency_steps=3)
    rec = make_recorder(ck.model, settings, every=50)
    x = torch.as_tensor(case["crop"], dtype=torch.float32)[None, None]
    for ev in run_events(ck.model, x, settings, observations=[case["obs"]]):
        rec(ev)
    traj = rec.trajectory()
    ax_e, ax_g = Figure().subplots(1, 2)
    draw_langevin(ax_e, ax_g, traj, traj.n_frames - 1)  # the last reverse step, t = 0
    labels = [line.get_label() for line in ax_e.get_lines()]
    assert {"total (guided)", "prior E", "data λ·D"} <= set(labels)
    data_line = next(line for line in ax_e.get_lines() if line.get_label() == "data λ·D")
    assert np.allclose(data_line.get_ydata(), traj.guided_energy[0, :, 1])
    assert ax_e.get_xlim()[1] > traj.k_values[-1] + 2  # the guided iterations follow the chain
    (inset,) = ax_e.child_axes  # ... and are magnified, the split readable beside hundreds of chain iterations
    assert [len(line.get_xdata()) for line in inset.get_lines()] == [3, 3, 3]
    assert np.allclose(inset.get_lines()[2].get_ydata(), traj.guided_energy[0, :, 1])
    # neither the inset nor the legend covers a curve (on a real vertebra the inset hid the chain's noise wherever
    # it reached a quarter of the axes' height): a guided total just above a chain that spans the axes
    spread = float(np.ptp(traj.energy[0, 0]))
    traj.guided_energy[..., 1] = np.nanmax(traj.energy[0, 0]) + 0.2 * spread - traj.guided_energy[..., 0]
    fig = Figure(figsize=(9.3, 2.4), layout="constrained")
    ax_e, ax_g = fig.subplots(1, 3, width_ratios=(2, 1, 1))[1:]
    draw_langevin(ax_e, ax_g, traj, traj.n_frames - 1)
    (inset,) = ax_e.child_axes
    fig.canvas.draw()
    boxes = [inset.get_window_extent(), ax_e.get_legend().get_window_extent()]
    for line in ax_e.get_lines():
        if line.get_transform() is not ax_e.transData:  # the cursor spans the axes by design
            continue
        ends = ax_e.transData.transform(np.column_stack([line.get_xdata(), line.get_ydata()]))
        points = np.concatenate([a + np.linspace(0, 1, 20)[:, None] * (b - a) for a, b in zip(ends[:-1], ends[1:])])
        for box in boxes:  # the drawn segments, not only the recorded points
            assert not any(box.contains(x, y) for x, y in points), line.get_label()
