"""Every model in 2D and 3D: shapes, dtypes, config validation, a short training run."""
import pytest
import torch

from lsdebm.config import ConfigError, get_preset
from lsdebm.methods import RunSettings, generate_events, run
from lsdebm.methods.losses import lebm_loss, lsdebm_loss, reconnet_loss, vae_loss
from lsdebm.nn import build_model
from lsdebm.sampling import make_schedule


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["lsdebm", "vae", "lebm", "reconnet"])
def test_shapes_and_dtypes(kind, dims):
    cfg = get_preset("tiny").replace(**{"model.spatial_dims": dims})
    model = build_model(kind, cfg).eval()
    x = (torch.rand((2, 1) + (16,) * dims) > 0.5).float()
    res = run(model, x, RunSettings(repeats=2))
    assert res.probs.shape == (4, 1) + (16,) * dims and res.probs.dtype == torch.float32
    assert torch.all((res.probs >= 0) & (res.probs <= 1))
    if kind in ("lsdebm", "vae", "lebm"):
        assert res.z.shape == (4, cfg.model.latent_dim)
        gen = list(generate_events(model, 3))[-1]
        assert gen.probs.shape == (3, 1) + (16,) * dims


def test_separate_vs_shared_heads():
    cfg = get_preset("tiny")
    enc = build_model("vae", cfg).encoder
    assert enc.logvar is not None
    shared = build_model("vae", cfg.replace(**{"model.shared_head": True})).encoder
    mu, logvar = shared(torch.zeros(1, 1, 16, 16, 16))
    assert shared.logvar is None and torch.allclose(logvar, torch.nn.functional.softplus(mu) + 1e-6)


def test_config_errors_name_allowed_values():
    with pytest.raises(ConfigError, match="expected one of 'z_tilde', 'random'"):
        get_preset("tiny").replace(**{"langevin.init": "zeros"})
    with pytest.raises(ConfigError, match="unknown preset"):
        get_preset("huge")
    with pytest.raises(ConfigError, match="multiple of"):
        get_preset("tiny").replace(**{"model.grid": 17})
    with pytest.raises(ConfigError, match="unknown langevin option"):
        get_preset("tiny").replace(**{"langevin.KK": 3})


@pytest.mark.parametrize("kind", ["vae", "lsdebm", "lebm", "reconnet"])
def test_short_training_lowers_loss(kind, tiny_pair):
    torch.manual_seed(0)
    cfg = get_preset("tiny")
    model = build_model(kind, cfg).train()
    hq = torch.as_tensor(tiny_pair[0]).float()[None, None].repeat(2, 1, 1, 1, 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    sch = make_schedule(cfg.schedule)
    z = torch.zeros(2, cfg.model.latent_dim)

    def loss():
        if kind == "vae":
            return vae_loss(model, hq, g)
        if kind == "lsdebm":
            return lsdebm_loss(model, hq, sch, 3, g)
        if kind == "lebm":
            return lebm_loss(model, hq, z, g)
        return reconnet_loss(model, hq, hq)

    first = last = None
    for _ in range(40):
        out = loss()
        total = out["loss_g"] + out.get("loss_e", 0.0)
        opt.zero_grad()
        total.backward()
        opt.step()
        first = first if first is not None else float(out["loss_g"])
        last = float(out["loss_g"])
    assert last < 0.7 * first


def test_lebm_chains_start_from_the_reference_distribution():
    """prior_sigma widens N(0, s^2 I) for every LEBM chain start; s = 1 is plain N(0, I) bit for bit."""
    from lsdebm.methods import run_events
    from lsdebm.nn.lebm import reference_latents

    cfg = get_preset("tiny").replace(**{"model.latent_dim": 64})
    z1 = reference_latents(cfg, 200, torch.Generator().manual_seed(3))
    assert torch.equal(z1, torch.randn((200, 64), generator=torch.Generator().manual_seed(3)))
    wide = cfg.replace(**{"lebm.prior_sigma": 8.0})
    z8 = reference_latents(wide, 200, torch.Generator().manual_seed(3))
    assert torch.allclose(z8, 8.0 * z1) and 7.5 < float(z8.std()) < 8.5
    model = build_model("lebm", wide).eval()
    x = (torch.rand((4, 1, 16, 16, 16)) > 0.5).float()
    start = next(iter(run_events(model, x, RunSettings(steps=1))))
    assert start.phase == "encode" and 5.0 < float(start.z.std()) < 11.0  # posterior inference starts wide
    gen = list(generate_events(model, 64, RunSettings(steps=1)))
    assert float(gen[0].z.std()) > 5.0  # so does generation from the prior


def test_inference_prior_sigma_tempers_test_time_inference_only():
    from lsdebm.methods import posterior_energy, run_events

    cfg = get_preset("tiny").replace(**{"model.latent_dim": 64, "lebm.inference_prior_sigma": 8.0})
    model = build_model("lebm", cfg).eval()
    x = (torch.rand((4, 1, 16, 16, 16)) > 0.5).float()
    start = next(iter(run_events(model, x, RunSettings(steps=1))))
    assert 5.0 < float(start.z.std()) < 11.0  # test-time chains start from N(0, 8^2 I)
    gen = next(iter(generate_events(model, 64, RunSettings(steps=1))))
    assert float(gen.z.std()) < 2.0  # generation keeps the trained reference N(0, I)
    z = torch.full((4, 64), 3.0)
    gap = posterior_energy(model, x)(z) - posterior_energy(model, x, 8.0)(z)
    assert torch.allclose(gap, torch.full((4,), 64 * 9.0 / 2 * (1 - 1 / 64)))  # ||z||^2/2 * (1 - 1/8^2)
    with pytest.raises(ConfigError, match="inference_prior_sigma"):
        get_preset("tiny").replace(**{"lebm.inference_prior_sigma": 0.0})
    with pytest.raises(ConfigError, match="must be a finite number"):
        get_preset("tiny").replace(**{"lebm.inference_prior_sigma": "abc"})
