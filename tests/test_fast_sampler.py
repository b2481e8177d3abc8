"""Fast paths give the plain path's results under the same seed (to float rounding).

Tolerances: latents |dz| <= 1e-5 * (1 + |z|max), energies and |grad U| relative 1e-4; the
noise is drawn identically, so any larger difference is a bug, not rounding.
"""
import numpy as np
import pytest
import torch

from lsdebm.accel import conv as fast_conv
from lsdebm.accel import convnet as fast_convnet
from lsdebm.config import get_preset
from lsdebm.methods import RunSettings, run, sampling_schedule
from lsdebm.methods.losses import ebm_pairs
from lsdebm.nn import build_model
from lsdebm.nn.energy import TimeEnergy
from lsdebm.sampling import LangevinEvent, reverse_events
from lsdebm.sampling.kernels import mlp as fast
from lsdebm.sampling.kernels import sample as langevin  # the selected kernel (fast where it applies)
from lsdebm.sampling.reverse import conditional_energy
from lsdebm.sampling.schedule import make_schedule


def both(fn):
    """``fn()`` on the fast path and on the plain path."""
    out = fn()
    with fast.disabled():
        return out, fn()


def assert_events_close(a, b):
    assert [type(e) for e in a] == [type(e) for e in b]
    for x, y in zip(a, b):
        assert (x.t, getattr(x, "k", None)) == (y.t, getattr(y, "k", None))
        scale = 1 + y.z.abs().max().item()
        assert (x.z - y.z).abs().max().item() <= 1e-5 * scale
        if isinstance(x, LangevinEvent):
            torch.testing.assert_close(x.energy, y.energy, rtol=1e-4, atol=1e-4)
            torch.testing.assert_close(x.grad_norm, y.grad_norm, rtol=1e-4, atol=1e-4)


def small_model(embedding="sinusoidal", layers=2, **langevin):
    cfg = get_preset("tiny").replace(**{"model.time_embedding": embedding, "model.energy_layers": layers,
                                        "model.latent_dim": 12, "model.energy_hidden": 24,
                                        **{f"langevin.{k}": v for k, v in langevin.items()}})
    torch.manual_seed(0)
    return build_model("lsdebm", cfg).eval()


@pytest.mark.parametrize("embedding,layers", [("sinusoidal", 2), ("raw", 1), ("none", 3)])
def test_reverse_chain_matches_plain_path(embedding, layers):
    model = small_model(embedding, layers, K=40)
    schedule = sampling_schedule(model)
    z = torch.randn(3, 12, generator=torch.Generator().manual_seed(1))

    def chain():
        g = torch.Generator().manual_seed(7)
        return list(reverse_events(model.energy, schedule, z, schedule.T, model.cfg.langevin, g))

    fast_events, plain_events = both(chain)
    assert len(fast_events) == schedule.T * 41
    assert_events_close(fast_events, plain_events)


def test_random_init_and_zero_noise_match():
    for init, noise in (("random", 1.0), ("z_tilde", 0.0)):
        model = small_model(K=15, init=init, noise_scale=noise)
        schedule = sampling_schedule(model)
        z = torch.randn(2, 12)

        def chain():
            return list(reverse_events(model.energy, schedule, z, 3, model.cfg.langevin,
                                       torch.Generator().manual_seed(3)))

        assert_events_close(*both(chain))


def test_default_size_reconstruction_matches():
    """The default preset's 100-1000-1000-1 energy through ``run`` (encode, chain, decode)."""
    cfg = get_preset("default").replace(**{"model.grid": 16, "model.channels": (2, 4), "langevin.K": 40})
    torch.manual_seed(0)
    model = build_model("lsdebm", cfg).eval()
    x = (torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    settings = RunSettings(steps=2, repeats=2, seed=4)
    a, b = both(lambda: run(model, x, settings))
    assert a.z.shape == (2, 100)
    assert (a.z - b.z).abs().max().item() <= 1e-5 * (1 + b.z.abs().max().item())
    torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=1e-5)


def test_training_negatives_with_per_sample_t_match():
    """Algorithm 1's negatives: t and sigma drawn per sample (tensor t, tensor sigma)."""
    model = small_model(layers=2).train()
    schedule = make_schedule(model.cfg.schedule)
    z0 = torch.randn(5, 12)
    t, _, z_next, _, sigma_next = ebm_pairs(schedule, z0, torch.Generator().manual_seed(2))
    U = conditional_energy(model.energy, z_next, t, sigma_next.squeeze(1))
    assert fast.mlp_for(U, z_next) is not None
    a, b = both(lambda: langevin(U, z_next, 25, 0.01, 1.0, torch.Generator().manual_seed(9)))
    assert (a - b).abs().max().item() <= 1e-5 * (1 + b.abs().max().item())
    assert all(p.grad is None for p in model.parameters())


def test_fast_path_falls_back_for_other_energies():
    model = small_model()
    z = torch.zeros(2, 12)
    calls = []
    handle = model.energy.register_forward_hook(lambda *args: calls.append(1))
    U = conditional_energy(model.energy, z, 1, 0.3)
    assert fast.mlp_for(U, z) is None  # hooks must see every call: plain path
    langevin(U, z, 4, 0.01)
    assert len(calls) == 4
    handle.remove()
    assert fast.mlp_for(U, z) is not None
    assert fast.mlp_for(lambda y: (y ** 2).sum(1), z) is None
    assert fast.mlp_for(U, z.double()) is None  # dtype mismatch: plain path raises as before
    with fast.disabled():
        assert fast.mlp_for(U, z) is None


def test_fast_energy_gradient_equals_autograd():
    energy = TimeEnergy(6, 16, 3, "sinusoidal", 4).double()
    y = torch.randn(4, 6, dtype=torch.double)
    z_next = torch.randn(4, 6, dtype=torch.double)
    U = conditional_energy(energy, z_next, 2, 0.2)
    mlp = fast.mlp_for(U, y)
    c = mlp.first_bias(U.t_vec, y.dtype)
    P = torch.zeros(1, 4, 6, dtype=torch.double)
    f = torch.ones(1, 1, dtype=torch.double)
    Y, A, G = mlp.chain(y, c, f, P, alpha=-1.0)  # y - grad E(y): one plain gradient step on E
    energies, grad_norms = mlp.energies_and_grad_norms(Y, A, G, z_next, U.inv)
    yy = y.clone().requires_grad_(True)
    (g_e,) = torch.autograd.grad(energy(yy, U.t_vec).sum(), yy)
    torch.testing.assert_close(Y[1], y - g_e, rtol=1e-12, atol=1e-12)
    yy = y.clone().requires_grad_(True)
    u = U(yy)
    (g_u,) = torch.autograd.grad(u.sum(), yy)
    torch.testing.assert_close(energies[0], u.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_norms[0], g_u.norm(dim=1), rtol=1e-12, atol=1e-12)


def test_blocks_split_long_chains(monkeypatch):
    monkeypatch.setattr(fast, "BLOCK_BYTES", 1)  # one iteration per block
    model = small_model(K=6)
    z = torch.randn(2, 12)
    U = conditional_energy(model.energy, z, 1, 0.3)
    a, b = both(lambda: langevin(U, z, 6, 0.01, generator=torch.Generator().manual_seed(0)))
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)


def test_a_long_chain_hands_back_its_states_in_short_blocks(monkeypatch):
    """A caller (the explorer's Cancel, its progress bar) sees no state while a block runs: however small the
    batch, a block holds at most ``BLOCK_ITERATIONS`` iterations, the blocks are balanced, and the states are the
    plain path's."""
    sizes = []
    chain = fast.MLPEnergy.chain

    def spy(self, y0, c, f, P, alpha):
        sizes.append(P.shape[0])
        return chain(self, y0, c, f, P, alpha)

    monkeypatch.setattr(fast.MLPEnergy, "chain", spy)
    model = small_model(K=600)
    z = torch.randn(1, 12)
    U = conditional_energy(model.energy, z, 1, 0.3)
    a, b = both(lambda: langevin(U, z, 600, 0.01, generator=torch.Generator().manual_seed(0)))
    # uncapped, the memory bound alone allowed one block of 600 (of ~20,000 for the bundled model: 4.6 s unseen);
    # balanced, since a CUDA graph replays a whole block even for a short last one (256 + 256 + 88 would cost 768)
    assert sum(sizes) == 600 and max(sizes) <= 256 and max(sizes) * len(sizes) < 600 + len(sizes)
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-4)


def _randomise_batchnorm(model):
    g = torch.Generator().manual_seed(5)
    for m in model.modules():
        if isinstance(m, (torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(n, generator=g) - 0.5)
    return model


@pytest.mark.parametrize("dims", [2, 3])
def test_fast_networks_compute_the_same_function(dims, monkeypatch):
    """BN folding, upsample+conv as transposed conv, and every timed implementation agree."""
    monkeypatch.setattr(fast_conv, "TUNE", True)  # time implementations, even at this size
    monkeypatch.setattr(fast_conv, "TUNE_MIN_WORK", 0)
    monkeypatch.setattr(fast_conv, "_choices", {})
    cfg = get_preset("tiny").replace(**{"model.spatial_dims": dims, "model.grid": 16, "model.channels": (2, 4, 8)})
    torch.manual_seed(0)
    vae = _randomise_batchnorm(build_model("vae", cfg).eval())
    unet = _randomise_batchnorm(build_model("reconnet", cfg).eval())
    z = torch.randn(3, cfg.model.latent_dim)
    x = (torch.rand(2, 1, *(16,) * dims) > 0.5).float()
    with torch.no_grad():
        for net, inp in ((vae.decoder, z), (vae.encoder, x), (unet, x)):
            quick = fast_convnet.inference(net)
            assert quick is not net and fast_convnet.inference(net) is quick  # cached
            want, got = net(inp), quick(inp)
            want, got = (want[0], got[0]) if isinstance(want, tuple) else (want, got)
            torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
            impls = [m.last_impl for m in quick.modules() if isinstance(m, fast_conv.FastConv)]
            assert impls and all(impls)
            for conv in (m for m in quick.modules() if isinstance(m, fast_conv.FastConv)):
                assert not any(isinstance(c, torch.nn.BatchNorm3d) for c in conv.modules())
    decoder = fast_convnet.inference(vae.decoder)
    assert sum(m.upsample for m in decoder.modules() if isinstance(m, fast_conv.FastConv)) == 2
    assert not any(isinstance(m, (torch.nn.ReLU, torch.nn.Upsample)) for m in decoder.modules())  # fused


@pytest.mark.parametrize("cout", [5, 1])
def test_each_conv_implementation_is_exact(cout):
    torch.manual_seed(1)
    conv = torch.nn.Conv3d(3, cout, 3, padding=1)
    x = torch.randn(2, 3, 6, 7, 8)
    up = torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")
    plain = fast_conv.FastConv(*fast_convnet.fold_batchnorm(conv, None), 1)
    fused = fast_conv.FastConv(*fast_convnet.fold_batchnorm(conv, None), 1, upsample=True)
    with torch.no_grad():
        for layer, inp, want in ((plain, x, conv(x)), (fused, x, conv(up))):
            impls = layer.impls()
            assert len(impls) >= 4 and (cout > 1 or any("depthwise" in name for name in impls))
            for name, fn in impls.items():
                torch.testing.assert_close(fn(inp), want, rtol=1e-5, atol=1e-5, msg=name)


def test_fast_copy_follows_weights_and_mode():
    model = build_model("vae", get_preset("tiny")).eval()
    first = fast_convnet.inference(model.decoder)
    with torch.no_grad():
        model.decoder.linear.weight.mul_(2)
    assert fast_convnet.inference(model.decoder) is not first  # rebuilt after an in-place update
    model.train()
    assert fast_convnet.inference(model.decoder) is model.decoder
    model.eval()
    with fast.disabled():
        assert fast_convnet.inference(model.decoder) is model.decoder


def test_lebm_posterior_gradient_through_fast_decoder():
    model = _randomise_batchnorm(build_model("lebm", get_preset("tiny")).eval())
    z = torch.randn(2, model.cfg.model.latent_dim)
    grads = []
    for net in (fast_convnet.inference(model.decoder), model.decoder):
        zz = z.clone().requires_grad_(True)
        grads.append(torch.autograd.grad(net(zz).sum(), zz)[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-4, atol=1e-5)
    impls = {m.last_impl for m in fast_convnet.inference(model.decoder).modules() if isinstance(m, fast_conv.FastConv)}
    assert impls == {"onednn-autograd"}


@pytest.mark.parametrize("upsample,relu", [(False, True), (True, True), (False, False)])
def test_onednn_input_gradient_equals_autograd(upsample, relu):
    torch.manual_seed(3)
    conv = torch.nn.Conv3d(3, 5, 3, padding=1)
    layer = fast_conv.FastConv(*fast_convnet.fold_batchnorm(conv, None), 1, upsample=upsample, relu=relu)
    x = torch.randn(2, 3, 5, 6, 7, requires_grad=True)
    y = layer(x)
    assert layer.last_impl == "onednn-autograd"
    g = torch.randn_like(y)
    (got,) = torch.autograd.grad(y, x, g)
    xx = x.detach().requires_grad_(True)
    ref = conv(torch.nn.functional.interpolate(xx, scale_factor=2) if upsample else xx)
    ref = torch.relu(ref) if relu else ref
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    (want,) = torch.autograd.grad(ref, xx, g)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_decode_batches_covers_every_frame_in_order():
    model = build_model("lsdebm", get_preset("tiny")).eval()
    z = torch.randn(7, model.cfg.model.latent_dim)
    parts = list(fast_convnet.decode_batches(model, z, batch_size=3))
    assert [start for start, _ in parts] == [0, 3, 6]
    probs = torch.cat([p for _, p in parts])
    assert probs.dtype == torch.float16 and probs.shape == (7, 16, 16, 16)
    with torch.no_grad():
        want = torch.sigmoid(model.decoder(z))[:, 0]  # the plain module
    torch.testing.assert_close(probs.float(), want, rtol=0, atol=1e-3)  # float16 storage
    with pytest.raises(ValueError):
        next(fast_convnet.decode_batches(model, z, batch_size=0))


def test_cuda_graphs_only_on_cuda(monkeypatch):
    from lsdebm.sampling.kernels import cuda_graph as fast_cuda

    model = small_model()
    z = torch.zeros(2, 12)
    mlp = fast.mlp_for(conditional_energy(model.energy, z, 1, 0.3), z)
    assert not fast_cuda.graphs_enabled(z.device)
    assert fast_cuda.chain_runner(mlp, z, 5, -0.005) is None  # CPU: the eager loop runs
    monkeypatch.setenv("LSDEBM_CUDA_GRAPHS", "0")
    assert not fast_cuda.graphs_enabled(torch.device("cuda"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (runs wherever one exists)")
def test_graphed_chain_matches_eager_and_plain_on_cuda():
    from lsdebm.sampling.kernels import cuda_graph as fast_cuda

    model = small_model(K=30).cuda()
    schedule = sampling_schedule(model)
    z = torch.randn(3, 12, device="cuda")

    def chain():
        g = torch.Generator(device="cuda").manual_seed(7)
        return list(reverse_events(model.energy, schedule, z, schedule.T, model.cfg.langevin, g))

    graphed = chain()
    assert fast_cuda._graphs and all(v is not None for v in fast_cuda._graphs.values())
    eager_env = {"LSDEBM_CUDA_GRAPHS": "0"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in eager_env.items():
            mp.setenv(k, v)
        eager = chain()
    assert_events_close(graphed, eager)
    with fast.disabled():
        assert_events_close(graphed, chain())
