"""Fast Langevin path for the conditional energy of eq. (2) with the MLP energy E(y, t).

The plain sampler (:func:`lsdebm.sampling.langevin.energy_and_grad`) builds an autograd graph
for every iteration. For ``U(y) = E(y, t) + inv ||y - z_next||^2`` (eq. 2, ``inv = 1/(2 sigma^2)``)
with E a GELU MLP (:class:`lsdebm.nn.energy.TimeEnergy`) the gradient is written out:

    a_1 = W_1z y + c_t        (c_t = b_1 + W_1t embed(t), folded once per reverse step)
    a_l = W_l gelu(a_{l-1}) + b_l,   E = w_out . gelu(a_L) + b_out
    g_L = gelu'(a_L) * w_out,  g_{l-1} = (W_l^T g_l) * gelu'(a_{l-1}),  dE/dy = W_1z^T g_1

and the update of eqs. (3)-(4), ``y <- y - lambda/2 grad U + sqrt(lambda) s N(0, I)``, is
regrouped as ``y <- (1 - lambda inv) y + (lambda inv z_next + noise_k) - lambda/2 W_1z^T g_1``:
eight BLAS/elementwise calls per iteration into preallocated buffers (``out=``), no graph.
The energies and |grad U| reported with every event are computed in bulk after the loop from
the stored ``a_L`` and ``g_1`` (two matrix products over all iterations of a block).

Randomness is identical to the plain path: one N(0, I) draw of shape (B, D) per iteration from
the same generator, in the same order. Outputs agree with the plain path to float rounding
(``tests/test_fast_sampler.py``: |dz| <= 1e-5 after a full default-size reverse chain).
Disable with :func:`lsdebm.sampling.kernels.set_enabled` or ``with kernels.disabled(): ...`` to get the plain
path; :func:`lsdebm.sampling.kernels.select` is where this kernel is chosen.
"""
from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import nn

from lsdebm.accel.switch import disabled, enabled, set_enabled  # noqa: F401 (the switch, kept importable here)
from lsdebm.nn.energy import TimeEnergy
from lsdebm.sampling.conditional import ConditionalEnergy
from lsdebm.sampling.kernels import cuda_graph as fast_cuda
from lsdebm.sampling.langevin import LangevinState

BLOCK_BYTES = 64 * 2 ** 20  # buffers of one block of iterations (a_L and g_1 of every iteration)
# Iterations of one block at most: a caller sees no state (and cannot stop the chain) while a block runs, and an
# uncapped block of a single chain held ~20,000 iterations (4.6 s on 2 CPU cores: the explorer's Cancel waited that
# long). 256 iterations take about 0.1 s there and cost no throughput (20k iterations: 20.2 s against 20.7 s). The
# blocks of a chain are balanced, since a CUDA graph replays a whole block even for a shorter last one.
BLOCK_ITERATIONS = 256
_gelu = torch._C._nn.gelu
_gelu_backward = torch.ops.aten.gelu_backward.grad_input
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _no_hooks(module: nn.Module) -> bool:
    from torch.nn.modules import module as mod

    if mod._global_forward_hooks or mod._global_forward_pre_hooks:
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in module.modules())


class MLPEnergy:
    """Views of a :class:`TimeEnergy`'s weights for the analytic energy gradient (no copies).

    Raises ``ValueError`` when the module is not the plain Linear-GELU-...-Linear(1) MLP.
    """

    def __init__(self, energy: TimeEnergy, latent_dim: int) -> None:
        layers = list(energy.net)
        linears, acts = layers[0::2], layers[1::2]
        if (type(energy) is not TimeEnergy or not all(type(m) is nn.Linear for m in linears)
                or not all(type(m) is nn.GELU for m in acts) or len(linears) != len(acts) + 1
                or linears[-1].out_features != 1 or not _no_hooks(energy)):
            raise ValueError("not a plain GELU MLP energy")
        if len({m.approximate for m in acts}) != 1:
            raise ValueError("mixed GELU approximations")
        self.energy, self.latent_dim = energy, latent_dim
        self.approximate = acts[0].approximate
        w1 = linears[0].weight.detach()
        self.w1z, self.w1t = w1[:, :latent_dim], w1[:, latent_dim:]
        self.b1 = linears[0].bias.detach()
        self.hidden = [(m.weight.detach(), m.bias.detach()) for m in linears[1:-1]]
        self.w_out = linears[-1].weight.detach()[0]
        self.b_out = linears[-1].bias.detach()

    @property
    def widths(self) -> list[int]:
        return [self.w1z.shape[0]] + [w.shape[0] for w, _ in self.hidden]

    def first_bias(self, t_vec: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """c_t = b_1 + W_1t embed(t), one row per sample (the time features folded once)."""
        feats = self.energy.time_features(t_vec)
        if feats is None:
            return self.b1.expand(t_vec.shape[0], -1)
        return torch.addmm(self.b1, feats.to(dtype), self.w1t.t())

    def chain(self, y0: torch.Tensor, c: torch.Tensor, f, P: torch.Tensor, alpha: float):
        """Run ``len(P)`` updates ``y <- f y + P[k] + alpha W_1z^T g_1(y)`` from ``y0``.

        Returns (Y, A, G): Y (K+1, B, D) with Y[0] = y0, A (K, B, H_L) the last pre-activations
        and G (K, B, H_1) the gradients dE/da_1, all freshly allocated.
        """
        K, (B, D) = P.shape[0], y0.shape
        widths = self.widths
        Y = y0.new_empty((K + 1, B, D))
        Y[0] = y0
        A = y0.new_empty((K, B, widths[-1]))
        G = y0.new_empty((K, B, widths[0]))
        pre = [y0.new_empty((B, w)) for w in widths[:-1]]  # a_1 .. a_{L-1}
        post = [y0.new_empty((B, w)) for w in widths[:-1]]  # gelu(a_l), later reused for gradients
        grads = [None] + [y0.new_empty((B, w)) for w in widths[1:]]  # dE/da_l for l >= 2
        gelu = _Gelu(self.approximate, y0, widths)
        base = y0.new_empty((B, D))
        w_out = self.w_out.expand(B, -1)
        w1zT, L = self.w1z.t(), len(widths)
        layers = [(w.t(), w, b) for w, b in self.hidden]  # W_2 .. W_L
        for k in range(K):
            y = Y[k]
            a = torch.addmm(c, y, w1zT, out=pre[0] if L > 1 else A[k])
            for i, (wT, _, b) in enumerate(layers):
                h = gelu.forward(i, a, out=post[i])
                a = torch.addmm(b, h, wT, out=pre[i + 1] if i + 2 < L else A[k])
            g = gelu.grad(L - 1, w_out, a, grads[-1] if L > 1 else G[k], fresh=True)
            for i in range(L - 2, -1, -1):
                back = torch.mm(g, layers[i][1], out=post[i])
                g = gelu.grad(i, back, pre[i], grads[i] if i else G[k])
            torch.addcmul(P[k], f, y, out=base)
            torch.addmm(base, G[k], self.w1z, alpha=alpha, out=Y[k + 1])
        return Y, A, G

    def energies_and_grad_norms(self, Y, A, G, z_next, inv):
        """U at Y[:-1] (eq. 2) and |grad U| for every iteration of a block, shapes (K, B)."""
        diff = Y[:-1] - z_next
        mlp = _gelu(A, approximate=self.approximate) @ self.w_out + self.b_out
        inv_b = inv[:, None] if isinstance(inv, torch.Tensor) else inv
        energy = mlp + inv * diff.pow(2).sum(dim=2)
        grad = torch.matmul(G, self.w1z).add_(diff.mul_(2.0 * inv_b))
        return energy, grad.norm(dim=2)


class _Gelu:
    """GELU of layer ``l`` and ``grad * gelu'`` on small row blocks, into preallocated buffers.

    ATen hands exact GELU on contiguous float32 to oneDNN, whose per-call setup (~6-13 us) costs
    more than the arithmetic on 1000 values; the exact form is therefore written with native ops:
    gelu(a) = a Phi(a), gelu'(a) = Phi(a) + a phi(a), Phi(a) kept from the forward pass.
    """

    def __init__(self, approximate: str, like: torch.Tensor, widths: list[int]) -> None:
        self.approximate, self.exact = approximate, approximate == "none"
        self.cdf = [like.new_empty((like.shape[0], w)) for w in widths]
        self.tmp = [like.new_empty((like.shape[0], w)) for w in widths]

    def forward(self, layer: int, a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        if not self.exact:
            return _gelu(a, approximate=self.approximate, out=out)
        return torch.mul(a, torch.special.ndtr(a, out=self.cdf[layer]), out=out)

    def grad(self, layer: int, grad: torch.Tensor, a: torch.Tensor, out: torch.Tensor,
             fresh: bool = False) -> torch.Tensor:
        if not self.exact:
            return _gelu_backward(grad, a, approximate=self.approximate, grad_input=out)
        cdf, t = self.cdf[layer], self.tmp[layer]
        if fresh:  # no forward GELU of this layer was taken (the last hidden layer)
            torch.special.ndtr(a, out=cdf)
        torch.mul(a, a, out=t).mul_(-0.5).exp_()
        torch.addcmul(cdf, a, t, value=_INV_SQRT_2PI, out=t)
        return torch.mul(grad, t, out=out)


def mlp_for(energy_fn, z: torch.Tensor) -> MLPEnergy | None:
    """The analytic form of ``energy_fn`` if the fast path applies to it and ``z``, else None."""
    if not enabled() or type(energy_fn) is not ConditionalEnergy or z.dim() != 2:
        return None
    energy = energy_fn.energy
    if type(energy) is not TimeEnergy:
        return None
    try:
        mlp = MLPEnergy(energy, z.shape[1])
    except ValueError:
        return None
    tdim = {"sinusoidal": energy.time_dim, "raw": 1, "none": 0}[energy.time_embedding]
    w = mlp.w1z
    ok = (z.dtype == w.dtype and z.is_floating_point() and z.device == w.device and w.shape[1] == z.shape[1]
          and mlp.w1t.shape[1] == tdim and z.device.type in ("cpu", "cuda"))
    return mlp if ok else None


def fast_langevin_iter(mlp: MLPEnergy, energy_fn, z: torch.Tensor, steps: int, step_size: float,
                       noise_scale: float, generator: torch.Generator | None) -> Iterator:
    """Same states as :func:`lsdebm.sampling.langevin.langevin_iter`, computed in blocks."""
    z_next, inv = energy_fn.z_next.detach(), energy_fn.inv
    B, D = z.shape
    noise_std = math.sqrt(step_size) * noise_scale
    inv_b = inv[:, None] if isinstance(inv, torch.Tensor) else inv
    f = 1.0 - step_size * inv_b
    drift = (step_size * inv_b) * z_next
    f = f if isinstance(f, torch.Tensor) else torch.full((1, 1), f, dtype=z.dtype, device=z.device)
    c = mlp.first_bias(energy_fn.t_vec, z.dtype)
    per_iter = z.element_size() * B * (mlp.widths[0] + mlp.widths[-1] + 3 * D)
    cap = max(1, min(BLOCK_ITERATIONS, BLOCK_BYTES // max(per_iter, 1)))
    block = -(-steps // -(-steps // cap))  # balanced: a graph replays whole blocks (K=300: 150+150, not 256+256)
    y, k0 = z.detach(), 0
    runner = fast_cuda.chain_runner(mlp, y, block, -0.5 * step_size) or mlp.chain
    while k0 < steps:
        n = min(block, steps - k0)
        P = z.new_empty((n, B, D))
        if noise_std > 0:
            for k in range(n):  # one draw per iteration, like the plain path
                P[k].normal_(generator=generator)
            P.mul_(noise_std).add_(drift)
        else:
            P.copy_(drift.expand(n, B, D))
        Y, A, G = runner(y, c, f, P, -0.5 * step_size)
        energy, grad_norm = mlp.energies_and_grad_norms(Y, A, G, z_next, inv)
        for k in range(n):
            yield LangevinState(k0 + k + 1, Y[k + 1], energy[k], grad_norm[k])
        y, k0 = Y[n], k0 + n
