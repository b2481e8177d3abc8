"""Langevin sampler: analytic targets, conditional of eq. (2), purity w.r.t. the model."""
import math

import numpy as np
import torch

from lsdebm.config import LangevinConfig
from lsdebm.sampling.events import LangevinEvent, StepEvent
from lsdebm.sampling.langevin import langevin, langevin_iter
from lsdebm.sampling.reverse import reverse_events
from lsdebm.sampling.schedule import Schedule


def test_quadratic_energy_reaches_known_gaussian():
    mean, std = torch.tensor([1.5, -2.0]), 0.7
    U = lambda z: ((z - mean) ** 2).sum(1) / (2 * std ** 2)  # noqa: E731
    g = torch.Generator().manual_seed(0)
    z = langevin(U, torch.zeros(4000, 2), steps=600, step_size=0.01, generator=g)
    assert torch.allclose(z.mean(0), mean, atol=0.05)
    # unadjusted Langevin on a Gaussian has stationary variance s^2 / (1 - eta / (4 s^2))
    expected = std ** 2 / (1 - 0.01 / (4 * std ** 2))
    assert abs(z.var(0).mean().item() - expected) < 0.05 * expected


def test_zero_energy_conditional_reproduces_gaussian_of_eq2():
    sigma = 0.3
    sch = Schedule(sigma=np.array([0.0, sigma]))
    a = math.sqrt(1 - sigma ** 2)
    z_next = torch.full((4000, 3), 1.0)
    zero = lambda y, t: torch.zeros(y.shape[0])  # noqa: E731
    g = torch.Generator().manual_seed(2)
    cfg = LangevinConfig(K=800, step_size=0.005, init="z_tilde")
    z_t = [ev.z for ev in reverse_events(zero, sch, z_next, 1, cfg, g) if isinstance(ev, StepEvent)][-1]
    # p(tilde z | z_next) = N(z_next, sigma^2), z_t = tilde z / a
    assert abs(z_t.mean().item() - 1.0 / a) < 0.02
    expected = sigma ** 2 / (1 - 0.005 / (4 * sigma ** 2)) / a ** 2
    assert abs(z_t.var().item() - expected) < 0.06 * expected


def test_events_per_iteration_and_step():
    sch = Schedule(sigma=np.array([0.0, 0.2, 0.3, 0.4]))
    zero = lambda y, t: (y ** 2).sum(1)  # noqa: E731
    evs = list(reverse_events(zero, sch, torch.zeros(2, 4), 3, LangevinConfig(K=5)))
    lang = [e for e in evs if isinstance(e, LangevinEvent)]
    steps = [e for e in evs if isinstance(e, StepEvent)]
    assert [e.t for e in steps] == [2, 1, 0]
    assert len(lang) == 15 and [e.k for e in lang[:5]] == [1, 2, 3, 4, 5]
    assert lang[0].energy.shape == (2,) and lang[0].grad_norm.shape == (2,)


def test_sampler_never_touches_model_state():
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.GELU(), torch.nn.Linear(8, 1)).train()
    U = lambda z: net(z).squeeze(1)  # noqa: E731
    before = [p.requires_grad for p in net.parameters()]
    with torch.no_grad():  # works even when called under no_grad
        list(langevin_iter(U, torch.zeros(2, 3), 3, 0.1))
    assert net.training and before == [p.requires_grad for p in net.parameters()]
    assert all(p.grad is None for p in net.parameters())


def test_same_generator_seed_same_chain():
    U = lambda z: (z ** 2).sum(1)  # noqa: E731
    a = langevin(U, torch.ones(3, 2), 20, 0.1, generator=torch.Generator().manual_seed(5))
    b = langevin(U, torch.ones(3, 2), 20, 0.1, generator=torch.Generator().manual_seed(5))
    c = langevin(U, torch.ones(3, 2), 20, 0.1, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
