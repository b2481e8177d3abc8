"""ReconNet: the first-stage U-Net mapping a low-quality mask to a high-quality one."""
from __future__ import annotations

import torch
from torch import nn

from lsdebm.config import Config
from lsdebm.nn.blocks import conv, double_conv, pool, upsample


class ReconNet(nn.Module):
    """U-Net with concatenation skips (authors' ``ReconNet``, docs/reference-code.md §2.4); returns logits."""

    kind = "reconnet"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        d, ch = cfg.model.spatial_dims, cfg.model.channels
        self.stem = double_conv(d, 1, max(ch[0] // 2, 1), ch[0])
        self.down = nn.ModuleList(nn.Sequential(pool(d), double_conv(d, a, a, b)) for a, b in zip(ch[:-1], ch[1:]))
        self.up = nn.ModuleList(upsample() for _ in ch[1:])
        self.merge = nn.ModuleList(double_conv(d, b + a, a, a) for a, b in zip(ch[:-1], ch[1:]))
        self.head = conv(d, ch[0], 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for layer in self.down:
            skips.append(layer(skips[-1]))
        h = skips.pop()
        for up, merge in zip(reversed(self.up), reversed(self.merge)):
            h = merge(torch.cat([up(h), skips.pop()], dim=1))
        return self.head(h)
