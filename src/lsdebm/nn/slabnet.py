"""SlabNet: the learned slab interpolation, a small 3D U-Net at 1 mm on an observed slab mask.

Input: the four channels of :func:`lsdebm.data.slab_features.slab_features` (slab axis first).
Output: one logit per voxel, the classical interpolation's logit (channel 1, rescaled) plus a
learned residual. The residual head starts at zero, so an untrained SlabNet is the classical
interpolation; training moves boundaries by a smooth logit field (the base logit is minus a
signed distance in mm, so a residual of r moves the surface by about r mm).

The work happens at 2, 4 and 8 mm (a 2x2x2 strided patch embedding, two levels of pooling);
at 1 mm there is only a pointwise head over the upsampled features and the input channels,
which keeps the cost low enough for the default reconstruction (0.35-0.47 s per vertebra on one
CPU thread, run on the observed box by :class:`lsdebm.methods.slab.SlabInterpolator`).
The widths are fixed (:data:`WIDTHS`); ``model.slab_refine`` > 0 adds a 1 mm refinement block (two
3x3x3 convolutions on the head's features, the second starting at zero, so a SlabNet fine-tuned from
one without it starts as that model). The checkpoint's config records it and the output step it was
chosen for. Input sizes must be multiples of :data:`MULTIPLE`
(:meth:`SlabNet.logits` pads).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lsdebm.data.slab_features import BASE_SCALE, CHANNELS

WIDTHS = (16, 32, 48)
HEAD = 16
MULTIPLE = 8
#: Memory layout SlabNet runs in (weights and inputs), in training and inference: channels-last lets
#: oneDNN take its fast 3D convolution and upsampling paths on the CPU.
LAYOUT = torch.channels_last_3d


def _conv(i: int, o: int) -> nn.Conv3d:
    return nn.Conv3d(i, o, 3, padding=1)


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1x1 convolution of ``x`` (N, C, D, H, W) with ``weight`` (out, C) as one product over the channels.

    PyTorch's CPU path for a 1x1x1 convolution at batch 1 is an im2col copy, the slowest layer of
    SlabNet's forward pass at 1 mm; over a channels-last tensor's last axis this is a plain GEMM.
    """
    return F.linear(x.movedim(1, -1), weight, bias).movedim(-1, 1)


class SlabNet(nn.Module):
    """See the module doc. ``cfg`` is the :class:`lsdebm.config.Config` stored with the weights."""

    kind = "slabnet"

    def __init__(self, cfg=None):
        super().__init__()
        self.cfg = cfg
        a, b, c = WIDTHS
        self.patch = nn.Conv3d(CHANNELS, a, 2, stride=2)
        self.e1a, self.e1b = _conv(a, a), _conv(a, a)
        self.e2a, self.e2b = _conv(a, b), _conv(b, b)
        self.e3a, self.e3b = _conv(b, c), _conv(c, c)
        self.d2, self.d1 = _conv(c + b, b), _conv(b + a, a)
        self.h1 = nn.Conv3d(a + CHANNELS, HEAD, 1)
        self.h2 = nn.Conv3d(HEAD, 1, 1)
        nn.init.zeros_(self.h2.weight)
        nn.init.zeros_(self.h2.bias)
        refine = int(getattr(getattr(cfg, "model", None), "slab_refine", 0) or 0)
        self.refine = None
        if refine:  # the 1 mm block: spatial context where the slabs' through-plane detail lives
            self.refine = nn.Sequential(_conv(HEAD, refine), nn.SiLU(), _conv(refine, 1))
            nn.init.zeros_(self.refine[2].weight)
            nn.init.zeros_(self.refine[2].bias)

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net's features at 2 mm (N, WIDTHS[0], D/2, H/2, W/2) that the 1 mm head reads."""
        a = F.silu(self.patch(x))
        a = F.silu(self.e1b(F.silu(self.e1a(a))))
        b = F.avg_pool3d(a, 2)
        b = F.silu(self.e2b(F.silu(self.e2a(b))))
        c = F.avg_pool3d(b, 2)
        c = F.silu(self.e3b(F.silu(self.e3a(c))))
        b = F.silu(self.d2(torch.cat([F.interpolate(c, size=b.shape[2:], mode="trilinear"), b], 1)))
        return F.silu(self.d1(torch.cat([F.interpolate(b, size=a.shape[2:], mode="trilinear"), a], 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, CHANNELS, D, H, W), each size a multiple of :data:`MULTIPLE` -> logits (N, 1, D, H, W)."""
        a = self.trunk(x)
        # The head h1 on cat(upsample(a), x) is upsample(W_a a) + W_x x + b: trilinear upsampling and a
        # 1x1x1 convolution are both linear, so W_a runs at 2 mm, on an eighth of the voxels, and the
        # 1 mm concatenation is never built (SlabNet per vertebra 0.39-0.65 s -> 0.35-0.47 s, one thread).
        w, n = self.h1.weight.flatten(1), a.shape[1]
        h = F.interpolate(_linear(a, w[:, :n]), size=x.shape[2:], mode="trilinear") + _linear(x, w[:, n:], self.h1.bias)
        h = F.silu(h)
        out = x[:, 1:2] * BASE_SCALE + _linear(h, self.h2.weight.flatten(1), self.h2.bias)
        return out if self.refine is None else out + self.refine(h)

    @torch.no_grad()
    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """Logits for one feature volume ``(CHANNELS, D, H, W)`` of any size (edge-padded, then cut back)."""
        shape = features.shape[1:]
        pad = [(-n) % MULTIPLE for n in shape]
        x = F.pad(features[None], (0, pad[2], 0, pad[1], 0, pad[0]), mode="replicate")
        return self(x.contiguous(memory_format=LAYOUT))[0, 0, :shape[0], :shape[1], :shape[2]]
