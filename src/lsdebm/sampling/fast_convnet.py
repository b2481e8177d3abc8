"""Fast inference copies of the convolutional networks (decoder p(x|z), encoder q(z|x), ReconNet).

:func:`inference` returns, for a module in eval mode, a copy that computes the same function
(to float rounding) faster on the CPU:

1. BatchNorm (eval statistics) is folded into the preceding convolution.
2. Nearest x2 upsampling followed by a 3^d convolution (padding 1) is replaced by the equivalent
   stride-2 transposed convolution with 4^d kernels: per axis an output voxel sees only two
   input voxels, k = [w_+1, w_0 + w_+1, w_-1 + w_0, w_-1], so 27 taps become 8 (3.4x fewer FLOPs).
3. Convolutions call oneDNN directly with the ReLU fused (``torch.ops.mkldnn`` -- what
   ``torch.compile`` emits on CPU): for batch 1 and few channels ATen's ``conv3d`` falls back to
   its slow im2col path (10x slower for 4-channel 64^3 layers); the fused upsampling runs as a
   channels-last transposed convolution. This fixed rule is deterministic (bit-identical results
   in every process and for any thread count). ``LSDEBM_TUNE_CONV=1`` instead times all
   equivalent implementations per input shape on first use -- ATen, oneDNN, each in NCDHW or
   channels-last layout, and 2D convolutions over depth slices -- and keeps the fastest; that
   can be faster on other CPUs but the choice (hence the last bits) may differ between runs.

The copy shares untouched modules (e.g. the decoder's Linear) with the original and is rebuilt
when any parameter or buffer of the original changes (tensor ``_version``). A module in training
mode is returned as is; inputs that need gradients (LEBM posterior Langevin) take a
differentiable oneDNN path; on CUDA the convolutions are ATen's (cuDNN).
"""
from __future__ import annotations

import copy
import os
import threading
import time
import weakref

import torch
from torch import nn
from torch.nn import functional as F

_CONV = (nn.Conv2d, nn.Conv3d)
_BN = (nn.BatchNorm2d, nn.BatchNorm3d)
_copies: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_copies_lock = threading.Lock()
SKIP_FACTOR = 3.0  # see FastConv._tune
TUNE = os.environ.get("LSDEBM_TUNE_CONV", "0") == "1"  # time implementations per shape (see module doc)
TUNE_MIN_WORK = 2 ** 18  # input elements x output channels below which the fixed rule is used untimed
_choices: dict[tuple, str] = {}  # (weight shape, upsample, input shape/strides, dtype, threads) -> impl
_tune_lock = threading.Lock()


def _signature(module: nn.Module) -> tuple:
    return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in
                 list(module.parameters()) + list(module.buffers()))


def inference(module: nn.Module) -> nn.Module:
    """The fast inference copy of ``module`` (eval mode only; otherwise ``module`` itself)."""
    from lsdebm.sampling import fast

    if module.training or not fast.enabled():
        return module
    sig = _signature(module)
    with _copies_lock:
        hit = _copies.get(module)
        if hit is None or hit[0] != sig:
            hit = (sig, _rebuild(module))
            _copies[module] = hit
    return hit[1]


def fold_batchnorm(conv: nn.Module, bn: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weight and bias of ``bn(conv(x))`` as one convolution (eval statistics)."""
    w = conv.weight.detach().double()
    b = conv.bias.detach().double() if conv.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype,
                                                                              device=w.device)
    if bn is not None:
        scale = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
        w = w * scale.view(-1, *([1] * (w.dim() - 1)))
        b = (b - bn.running_mean.double()) * scale + bn.bias.detach().double()
    return w.to(conv.weight.dtype), b.to(conv.weight.dtype)


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
            onednn = "onednn" in impls and x.dtype == torch.float32
            name = "transposed-cl" if self.upsample else ("onednn" if onednn else "aten")
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

    def _differentiable(self, x: torch.Tensor) -> torch.Tensor:
        """Autograd-safe path (LEBM posterior Langevin): oneDNN convolution, not ATen's batch-1 fallback."""
        d, b = self.dims, self.bias
        if self.upsample:
            convt = F.conv_transpose3d if d == 3 else F.conv_transpose2d
            y, self.last_impl = convt(x, self.weight_t, b, stride=2, padding=1), "transposed"
        elif x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available():
            ones = [1] * d
            y = torch.mkldnn_convolution(x.contiguous(), self.weight, b, [self.padding] * d, ones, ones, 1)
            self.last_impl = "onednn-autograd"
        else:
            conv = F.conv3d if d == 3 else F.conv2d
            y, self.last_impl = conv(x, self.weight, b, padding=self.padding), "aten"
        return torch.relu(y) if self.relu else y

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


def _flatten(seq: nn.Sequential) -> list[nn.Module]:
    out: list[nn.Module] = []
    for m in seq:
        out += _flatten(m) if type(m) is nn.Sequential else [m]
    return out


def _is_nearest_x2(m: nn.Module) -> bool:
    return (type(m) is nn.Upsample and m.mode == "nearest" and m.size is None
            and m.scale_factor in (2, 2.0) and m.recompute_scale_factor is None)


def _plain_conv(m: nn.Module) -> bool:
    return (type(m) in _CONV and m.stride == (1,) * (m.weight.dim() - 2) and m.groups == 1
            and m.dilation == (1,) * (m.weight.dim() - 2) and m.padding_mode == "zeros"
            and isinstance(m.padding, tuple) and len(set(m.padding)) == 1)


def _foldable(m: nn.Module) -> bool:
    return type(m) in _BN and m.track_running_stats and m.running_mean is not None and m.affine


def _rebuild_sequence(mods: list[nn.Module]) -> nn.Sequential:
    out, i = [], 0
    while i < len(mods):
        m = mods[i]
        up = _is_nearest_x2(m) and i + 1 < len(mods) and _plain_conv(mods[i + 1]) and mods[i + 1].padding[0] == 1 \
            and mods[i + 1].kernel_size[0] == 3 and len(set(mods[i + 1].kernel_size)) == 1
        if up:
            i, m = i + 1, mods[i + 1]
        if _plain_conv(m):
            bn = mods[i + 1] if i + 1 < len(mods) and _foldable(mods[i + 1]) else None
            i += 2 if bn is not None else 1
            relu = i < len(mods) and type(mods[i]) is nn.ReLU
            out.append(FastConv(*fold_batchnorm(m, bn), m.padding[0], upsample=up, relu=relu))
            i += 1 if relu else 0
        else:
            out.append(_rebuild(m))
            i += 1
    return nn.Sequential(*out)


def _rebuild(module: nn.Module) -> nn.Module:
    """Copy of ``module`` with its convolution sequences replaced; other modules are shared."""
    if type(module) is nn.Sequential:
        return _rebuild_sequence(_flatten(module))
    if _plain_conv(module):
        return FastConv(*fold_batchnorm(module, None), module.padding[0])
    if not module._modules:
        return module
    new = copy.copy(module)
    new._modules = {name: (None if child is None else _rebuild(child)) for name, child in module._modules.items()}
    if type(module) is nn.ModuleList:
        new._modules = dict(new._modules)
    return new


def decode_batches(model: nn.Module, latents: torch.Tensor, batch_size: int = 16):
    """Decode many latents (e.g. all T x K frames of a trajectory) in batches on the model's device.

    Yields ``(start, probs)`` with ``probs`` the float16 CPU probabilities p(x|z) of
    ``latents[start:start + len(probs)]``, shape (n, *grid) -- ready for a :class:`DecodeCache`.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    device = next(model.parameters()).device
    net = inference(model.decoder)
    with torch.no_grad():
        for start in range(0, latents.shape[0], batch_size):
            z = latents[start:start + batch_size].to(device=device, dtype=torch.float32)
            yield start, torch.sigmoid(net(z))[:, 0].half().cpu()
