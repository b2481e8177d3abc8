"""Schedule arithmetic against the authors' values (notes §3.1) and the forward marginals."""
import numpy as np
import pytest
import torch

from lsdebm.config import ScheduleConfig
from lsdebm.sampling.schedule import make_schedule, strided_sigmas, vp_sigmas


def test_strided_matches_reference_values():
    s = strided_sigmas(20)
    assert s[0] == 0
    np.testing.assert_allclose(s[[1, 2, 3, 19, 20]], [0.0779, 0.1127, 0.1389, 0.3453, 0.9888], atol=2e-4)
    np.testing.assert_allclose(strided_sigmas(2)[1:], [0.8519, 0.9885], atol=2e-4)
    np.testing.assert_allclose(strided_sigmas(30)[[1, 20, 29, 30]], [0.0567, 0.2368, 0.2832, 0.9889], atol=2e-4)


def test_marginals_and_eval_T():
    sch = make_schedule(ScheduleConfig(T=20))
    # the authors' a_cum includes a[0] = 0.99995; ours starts from a clean z_0
    np.testing.assert_allclose(sch.a_cum[[5, 10, 15, 19, 20]] * 0.99995, [0.9524, 0.8342, 0.6718, 0.5317, 0.0794],
                               atol=2e-4)
    np.testing.assert_allclose(sch.sigma_cum ** 2 + sch.a_cum ** 2, 1.0, atol=1e-12)
    ref = make_schedule(ScheduleConfig(T=20, eval_T=30), for_sampling=True)
    assert ref.T == 30 and make_schedule(ScheduleConfig(T=20, eval_T=30)).T == 20


def test_vp_schedule_is_variance_preserving():
    s = vp_sigmas(10)
    assert np.all((s[1:] > 0) & (s[1:] < 1))
    sch = make_schedule(ScheduleConfig(kind="vp", T=10))
    assert sch.a_cum[-1] < 0.05


@pytest.mark.parametrize("t", [1, 5, 20])
def test_forward_chain_marginals_match_schedule(t):
    sch = make_schedule(ScheduleConfig(T=20))
    g = torch.Generator().manual_seed(1)
    z0 = torch.full((20000, 2), 2.0, dtype=torch.float64)
    z = z0
    for s in range(1, t + 1):
        z = sch.q_step(z, s, g)
    assert abs(z.mean().item() - 2.0 * sch.a_cum[t]) < 0.02
    assert abs(z.var().item() - sch.sigma_cum[t] ** 2) < 0.03 * max(sch.sigma_cum[t] ** 2, 0.01) + 1e-3
    zq = sch.q_sample(z0, t, g)
    assert abs(zq.var().item() - z.var().item()) < 0.05 * z.var().item() + 1e-4
