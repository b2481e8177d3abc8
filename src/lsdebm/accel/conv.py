"""One convolution layer of the fast inference networks (see :mod:`lsdebm.accel.convnet`).

:class:`FastConv` is a convolution with BatchNorm folded in, optionally fused with a preceding
nearest x2 upsampling (as a stride-2 transposed convolution) and a following ReLU.

Convolutions call oneDNN directly with the ReLU fused (``torch.ops.mkldnn`` -- what
``torch.compile`` emits on CPU): for batch 1 and few channels ATen's ``conv3d`` falls back to
its slow im2col path (10x slower for 4-channel 64^3 layers); layers with 8 or more input
channels run channels-last; a single output channel (the decoder's last layer) runs as
depthwise convolutions plus a channel sum; the fused upsampling runs as a channels-last
transposed convolution. This fixed rule is deterministic (bit-identical results
in every process and for any thread count). ``LSDEBM_TUNE_CONV=1`` instead times all
equivalent implementations per input shape on first use -- ATen, oneDNN, each in NCDHW or
channels-last layout, and 2D convolutions over depth slices -- and keeps the fastest; that
can be faster on other CPUs but the choice (hence the last bits) may differ between runs.

Inputs that need gradients (LEBM posterior Langevin) use the same oneDNN forward kernels for
the input gradient (:class:`_OneDNNConvFunction`): ATen's own ``convolution_backward`` takes
its slow path for batch 1 and few channels too.
"""
from __future__ import annotations

import os
import threading
import time

import torch
from torch import nn
from torch.nn import functional as F

SKIP_FACTOR = 3.0  # see FastConv._tune
TUNE = os.environ.get("LSDEBM_TUNE_CONV", "0") == "1"  # time implementations per shape (see module doc)
TUNE_MIN_WORK = 2 ** 18  # input elements x output channels below which the fixed rule is used untimed
_choices: dict[tuple, str] = {}  # (weight shape, upsample, input shape/strides, dtype, threads) -> impl
_tune_lock = threading.Lock()


def upsample_conv_weight(w: torch.Tensor) -> torch.Tensor:
    """Transposed-conv weight (cin, cout, 4, ...) equal to nearest x2 upsampling then conv ``w``."""
    M = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=w.dtype, device=w.device)
    if w.dim() == 5:
        return torch.einsum("ad,be,cf,oidef->ioabc", M, M, M, w).contiguous()
    return torch.einsum("ad,be,oide->ioab", M, M, w).contiguous()


def _slices(x: torch.Tensor, w2: torch.Tensor, b: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """3x3x3 conv (padding 1) as 2D convs over depth slices; returns an (N, C, D, H, W) view."""
    n, c, d, h, wd = x.shape
    xp = x.new_zeros((n, d + 2, c, h, wd))
    xp[:, 1:-1] = x.permute(0, 2, 1, 3, 4)
    stacked = torch.cat([xp[:, :-2], xp[:, 1:-1], xp[:, 2:]], dim=2).view(n * d, 3 * c, h, wd)
    if channels_last:
        stacked = stacked.contiguous(memory_format=torch.channels_last)
    y = F.conv2d(stacked, w2, b, padding=1)
    return y.view(n, d, -1, h, wd).permute(0, 2, 1, 3, 4)


def _mkldnn_ops():
    """oneDNN convolution ops with fused activation (what torch.compile's CPU backend calls), or None."""
    try:
        if torch.backends.mkldnn.is_available():
            return torch.ops.mkldnn._convolution_pointwise, torch.ops.mkldnn._convolution_transpose_pointwise
    except (AttributeError, RuntimeError):
        pass
    return None


class FastConv(nn.Module):
    """A convolution (BN folded, optionally fused with a preceding nearest x2 upsampling and a following ReLU)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor, padding: int, upsample: bool = False,
                 relu: bool = False) -> None:
        super().__init__()
        self.dims, self.padding, self.upsample, self.relu = weight.dim() - 2, padding, upsample, relu
        self.last_impl = ""  # implementation used by the last call (benchmarks report it)
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = nn.Parameter(bias, requires_grad=False)
        self.weight_t = nn.Parameter(upsample_conv_weight(weight), requires_grad=False) if upsample else None
        k3 = self.dims == 3 and tuple(weight.shape[2:]) == (3, 3, 3) and padding == 1
        self.weight_2d = (nn.Parameter(weight.permute(0, 2, 1, 3, 4).reshape(weight.shape[0], -1, 3, 3).contiguous(),
                                       requires_grad=False) if k3 else None)

    def impls(self) -> dict:
        """Equivalent implementations: name -> function of the input (ReLU included when fused)."""
        conv = F.conv3d if self.dims == 3 else F.conv2d
        w, b, p, d = self.weight, self.bias, self.padding, self.dims
        cl = torch.channels_last_3d if d == 3 else torch.channels_last
        act = torch.relu_ if self.relu else (lambda y: y)
        attr, ones = ("relu" if self.relu else "none"), [1] * d
        body = {"aten": lambda x: act(conv(x, w, b, padding=p)),
                "aten-cl": lambda x: act(conv(x.contiguous(memory_format=cl), w, b, padding=p))}
        ops = _mkldnn_ops()
        if ops is not None:
            body["onednn"] = lambda x: ops[0](x.contiguous(), w, b, [p] * d, ones, ones, 1, attr, [], "")
            body["onednn-cl"] = lambda x: ops[0](x.contiguous(memory_format=cl), w, b, [p] * d, ones, ones, 1,
                                                 attr, [], "")
        if w.shape[0] == 1:  # one output channel: per-channel (depthwise) convolutions, then their sum
            wd, groups = w.transpose(0, 1), w.shape[1]
            body["depthwise-cl"] = lambda x: act(conv(x.contiguous(memory_format=cl), wd, None, padding=p,
                                                      groups=groups).sum(1, keepdim=True).add_(b.view(1, 1, *ones)))
        if self.weight_2d is not None:
            body["slices"] = lambda x: act(_slices(x, self.weight_2d, b, False))
            body["slices-cl"] = lambda x: act(_slices(x, self.weight_2d, b, True))
        if not self.upsample:
            return body
        convt, wt = (F.conv_transpose3d if d == 3 else F.conv_transpose2d), self.weight_t
        out = {"transposed": lambda x: act(convt(x, wt, b, stride=2, padding=1)),
               "transposed-cl": lambda x: act(convt(x.contiguous(memory_format=cl), wt, b, stride=2, padding=1))}
        if ops is not None:
            out["onednn-transposed-cl"] = lambda x: ops[1](x.contiguous(memory_format=cl), wt, b, ones, [0] * d,
                                                           [2] * d, ones, 1, attr, [], "")
        for name, fn in body.items():
            out[f"upsample+{name}"] = lambda x, fn=fn: fn(F.interpolate(x, scale_factor=2, mode="nearest"))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.requires_grad and torch.is_grad_enabled():
            return self._differentiable(x)
        impls = self.impls()
        if x.device.type != "cpu":
            name = "transposed" if self.upsample else "aten"
        elif not TUNE or x.numel() * self.weight.shape[0] < TUNE_MIN_WORK:
            name = "transposed-cl" if self.upsample else self._rule(impls, x)
        else:
            key = (tuple(self.weight.shape), self.upsample, tuple(x.shape), x.stride(), x.dtype,
                   torch.get_num_threads())
            name = _choices.get(key)
            if name is None:
                with _tune_lock:
                    name = _choices.get(key) or self._tune(impls, x)
                    _choices[key] = name
        self.last_impl = name
        return impls[name](x)

    def _rule(self, impls: dict, x: torch.Tensor) -> str:
        """The fixed choice: oneDNN, channels-last from 8 input channels on (2x faster for the
        16-channel 128^3 layers, slower for 1-4 channels), ATen where oneDNN is unavailable; a
        single output channel as depthwise convolutions plus a channel sum (2-2.5x faster)."""
        if "depthwise-cl" in impls:
            return "depthwise-cl"
        if "onednn" not in impls or x.dtype != torch.float32:
            return "aten"
        return "onednn-cl" if self.weight.shape[1] >= 8 else "onednn"

    def _differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Autograd-safe path (LEBM posterior Langevin): oneDNN forward and input gradient."""
        if x.device.type == "cpu" and x.dtype == torch.float32 and _mkldnn_ops() is not None:
            self.last_impl = "onednn-autograd"
            return _OneDNNConvFunction.apply(x, self)
        self.last_impl = "aten-autograd"
        if self.upsample:
            convt = F.conv_transpose3d if self.dims == 3 else F.conv_transpose2d
            y = convt(x, self.weight_t, self.bias, stride=2, padding=1)
        else:
            y = (F.conv3d if self.dims == 3 else F.conv2d)(x, self.weight, self.bias, padding=self.padding)
        return torch.relu(y) if self.relu else y

    def input_grad(self, grad_out: torch.Tensor) -> torch.Tensor:
        """dL/dx from dL/d(conv output), as one oneDNN forward convolution.

        A stride-1 convolution's input gradient is the convolution with the flipped, transposed
        kernel (padding k-1-p); the transposed convolution's is the stride-2 convolution with its
        own kernel.
        """
        d, ones, conv = self.dims, [1] * self.dims, _mkldnn_ops()[0]
        if self.upsample:
            return conv(grad_out.contiguous(), self.weight_t, None, ones, [2] * d, ones, 1, "none", [], "")
        k = self.weight.shape[2]
        w = self.weight.transpose(0, 1).flip(list(range(2, 2 + d))).contiguous()
        return conv(grad_out.contiguous(), w, None, [k - 1 - self.padding] * d, ones, ones, 1, "none", [], "")

    def _tune(self, impls: dict, x: torch.Tensor) -> str:
        """Time every implementation on ``x``; a warm-up run checks its result against the first.

        Implementations whose warm-up is over ``SKIP_FACTOR`` x slower than the best so far are
        not timed again (keeps tuning to a few runs of the network).
        """
        times: dict[str, float] = {}
        ref = tol = None
        with torch.no_grad():
            for name, fn in impls.items():
                t0 = time.perf_counter()
                try:
                    y = fn(x)
                except (RuntimeError, NotImplementedError):
                    if ref is None:
                        raise
                    continue  # e.g. a oneDNN primitive this CPU/build does not offer
                warm = time.perf_counter() - t0
                if ref is None:
                    ref, tol = y, 1e-4 * (1 + y.abs().max().item())
                elif y.shape != ref.shape or (y - ref).abs().max().item() > tol:
                    continue  # never pick an implementation that disagrees
                if times and warm > SKIP_FACTOR * min(times.values()):
                    continue
                t0 = time.perf_counter()
                fn(x)
                times[name] = min(warm, time.perf_counter() - t0)
        return min(times, key=times.get)


class _OneDNNConvFunction(torch.autograd.Function):
    """y = layer(x) with dL/dx from oneDNN forward kernels (the layer's weights are constants)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, layer: FastConv) -> torch.Tensor:
        name = "transposed-cl" if layer.upsample else "onednn"
        y = layer.impls()[name](x)
        ctx.layer = layer
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (y,) = ctx.saved_tensors
        if ctx.layer.relu:
            grad_out = torch.ops.aten.threshold_backward(grad_out, y, 0)
        return ctx.layer.input_grad(grad_out), None
