"""Every model in 2D and 3D: shapes, dtypes, config validation, a short training run."""
import pytest
import torch

from lsdebm.config import ConfigError, get_preset
from lsdebm.models import build_model
from lsdebm.sampling import RunSettings, generate_events, make_schedule, run
from lsdebm.train.losses import lebm_loss, lsdebm_loss, reconnet_loss, vae_loss


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
