"""The one switch of the fast paths (analytic Langevin kernel, CUDA graphs, conv inference copies).

``set_enabled`` / ``disabled()`` turn every fast path off for the process (the plain autograd
sampler of :mod:`lsdebm.sampling.langevin` and the plain modules run instead: the reference).
CUDA graphs can be switched off alone with the environment variable ``LSDEBM_CUDA_GRAPHS=0``,
read here on every call so a change takes effect for the next chain.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

CUDA_GRAPHS_ENV = "LSDEBM_CUDA_GRAPHS"
STATE = {"enabled": True}  # the process-wide flag behind set_enabled / enabled / disabled


def set_enabled(flag: bool) -> bool:
    """Switch the fast paths on/off for the whole process; returns the previous setting."""
    previous, STATE["enabled"] = STATE["enabled"], bool(flag)
    return previous


def enabled() -> bool:
    """Whether the fast paths are on."""
    return STATE["enabled"]


@contextmanager
def disabled():
    """Run the plain (autograd) paths inside this block, e.g. to compare against them."""
    previous = set_enabled(False)
    try:
        yield
    finally:
        set_enabled(previous)


def cuda_graphs_enabled(device: torch.device) -> bool:
    """Whether a chain on ``device`` may replay CUDA graphs (CUDA present, not switched off)."""
    return (device.type == "cuda" and torch.cuda.is_available()
            and os.environ.get(CUDA_GRAPHS_ENV, "1") != "0")
