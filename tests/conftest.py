"""Shared fixtures: tiny checkpoints of every model kind and a tiny phantom pair.

The ``tiny`` preset (16^3 at 8 mm, latent 8) keeps every model test to milliseconds.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from lsdebm.config import get_preset
from lsdebm.nn import build_model
from lsdebm.runtime.checkpoint import save_checkpoint

KINDS = ("lsdebm", "vae", "lebm", "reconnet")


@pytest.fixture(scope="session")
def tiny_cfg():
    return get_preset("tiny")


@pytest.fixture(scope="session")
def tiny_ckpts(tmp_path_factory, tiny_cfg):
    """{kind: path} of untrained tiny checkpoints (deterministic weights, seed 0)."""
    out = tmp_path_factory.mktemp("ckpts")
    paths = {}
    for kind in KINDS:
        torch.manual_seed(0)
        paths[kind] = save_checkpoint(build_model(kind, tiny_cfg), out / f"{kind}-tiny.safetensors",
                                      info={"description": f"tiny untrained {kind} for tests"})
    return paths


@pytest.fixture(scope="session")
def tiny_pair():
    """(hq, lq, parts) uint8 arrays of an L3 phantom on the tiny 16^3 / 8 mm grid."""
    from lsdebm.data.phantom_set import generate_pairs

    pair = generate_pairs(1, seed=3, size=16, spacing=8.0)[0]
    return pair.hq, pair.lq, pair.parts


def binary(shape, seed=0, p=0.5) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < p).astype(np.uint8)


@pytest.fixture(scope="session")
def fitted_tiny_lsdebm(tmp_path_factory, tiny_cfg):
    """Path of a tiny LSD-EBM whose encoder/decoder were fitted for 40 steps to four 16^3 phantoms.

    Frames decode to vertebra-like masks (DSC ~0.7 on its training cases) and differ along t,
    which the explorer's screenshot and demo tests need; the energy stays untrained.
    """
    from torch.nn import functional as F

    from lsdebm.data.phantom_set import generate_pairs

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the shared 2-core machine is faster single-threaded
    try:
        torch.manual_seed(0)
        model = build_model("lsdebm", tiny_cfg)
        pairs = generate_pairs(4, seed=3, size=16, spacing=8.0)
        hq = torch.as_tensor(np.stack([p.hq for p in pairs]), dtype=torch.float32)[:, None]
        lq = torch.as_tensor(np.stack([p.lq for p in pairs]), dtype=torch.float32)[:, None]
        x, y = torch.cat([hq, lq]), torch.cat([hq, hq])
        params = list(model.encoder.parameters()) + list(model.decoder.parameters())
        opt = torch.optim.Adam(params, lr=1e-2)
        g = torch.Generator().manual_seed(0)
        for _ in range(40):
            mu, _ = model.encoder(x)
            logits = model.decoder(mu + 0.3 * torch.randn(mu.shape, generator=g))
            loss = F.binary_cross_entropy_with_logits(logits, y, pos_weight=torch.tensor(8.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    path = tmp_path_factory.mktemp("fitted") / "lsdebm-fitted-tiny.safetensors"
    return save_checkpoint(model.eval(), path, info={"description": "tiny LSD-EBM, autoencoder fitted 40 steps"})


@pytest.fixture()
def single_thread():
    """One torch thread for the test: on the shared 2-core machine two threads spin against other jobs."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
