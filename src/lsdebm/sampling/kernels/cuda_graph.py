"""CUDA graphs for the fast Langevin loop (the GPU path of the reverse chain, eqs. 2-4).

On a GPU one Langevin iteration of the 100-1000-1000-1 energy is eight tiny kernels; launched
one by one from Python the chain is launch-bound. :class:`GraphedChain` captures a whole block
of K iterations of :meth:`lsdebm.sampling.kernels.mlp.MLPEnergy.chain` once into a CUDA graph on static
buffers and replays it for every reverse step (the per-step values -- start, folded time bias
c_t, contraction f, drift+noise P -- are copied into the static inputs first). The kernels and
their order are exactly those of the eager loop, so results equal the eager fast path.

Capture failures fall back to the eager loop (and are remembered, with one warning). Nothing
here runs without CUDA; ``LSDEBM_CUDA_GRAPHS=0`` switches graphs off. Not yet measured on a
GPU: see docs/performance.md.
"""
from __future__ import annotations

import threading
import warnings
from collections import OrderedDict

import torch

from lsdebm.accel.switch import cuda_graphs_enabled

MAX_GRAPHS = 8  # captured graphs kept (each holds its static buffers)
_graphs: OrderedDict[tuple, GraphedChain | None] = OrderedDict()
_lock = threading.Lock()


def graphs_enabled(device: torch.device) -> bool:
    """Whether chains on ``device`` replay CUDA graphs (:func:`lsdebm.accel.switch.cuda_graphs_enabled`)."""
    return cuda_graphs_enabled(device)


class GraphedChain:
    """One captured block of ``K`` fast Langevin iterations for a fixed batch size and dtype."""

    def __init__(self, mlp, y0: torch.Tensor, K: int, alpha: float) -> None:
        B, D = y0.shape
        self.mlp, self.K, self.alpha = mlp, K, alpha
        self.lock = threading.Lock()
        new = lambda *shape: torch.zeros(shape, dtype=y0.dtype, device=y0.device)  # noqa: E731
        self.y0, self.c = new(B, D), new(B, mlp.widths[0])
        self.f, self.P = new(B, 1), new(K, B, D)
        stream = torch.cuda.Stream(device=y0.device)
        stream.wait_stream(torch.cuda.current_stream(y0.device))
        with torch.cuda.stream(stream):  # warm-up (cuBLAS workspaces) outside the capture
            mlp.chain(self.y0, self.c, self.f, self.P, alpha)
        torch.cuda.current_stream(y0.device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = mlp.chain(self.y0, self.c, self.f, self.P, alpha)

    def __call__(self, y0, c, f, P, alpha):
        n = P.shape[0]
        with self.lock:  # static buffers: one replay at a time; callers get their own copies
            self.y0.copy_(y0)
            self.c.copy_(c.expand_as(self.c))
            self.f.copy_(f.expand_as(self.f))
            self.P[:n].copy_(P)
            self.graph.replay()
            Y, A, G = self.out
            return Y[: n + 1].clone(), A[:n].clone(), G[:n].clone()


def chain_runner(mlp, y0: torch.Tensor, K: int, alpha: float):
    """A graphed ``chain`` callable for CUDA tensors, or None (CPU, disabled, capture failed).

    A shorter last block replays the full graph (stale rows of P beyond it are ignored) and
    keeps the first results.
    """
    if not graphs_enabled(y0.device):
        return None
    w = [mlp.w1z, mlp.b1, mlp.w_out, mlp.b_out] + [t for pair in mlp.hidden for t in pair]
    key = (tuple(t.data_ptr() for t in w), tuple(y0.shape), y0.dtype, str(y0.device), K, alpha, mlp.approximate)
    with _lock:
        if key not in _graphs:
            try:
                _graphs[key] = GraphedChain(mlp, y0, K, alpha)
            except Exception as exc:  # any capture problem: eager loop, say so once per shape
                warnings.warn(f"CUDA graph capture of the Langevin loop failed ({type(exc).__name__}: {exc}); "
                              "using the eager fast path", RuntimeWarning, stacklevel=2)
                _graphs[key] = None
            while len(_graphs) > MAX_GRAPHS:
                _graphs.popitem(last=False)
        _graphs.move_to_end(key)
        return _graphs[key]
