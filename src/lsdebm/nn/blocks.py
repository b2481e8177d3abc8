"""Convolution building blocks that serve 2D and 3D through ``spatial_dims`` (MONAI style)."""
from __future__ import annotations

from torch import nn


def conv(spatial_dims: int, cin: int, cout: int, kernel: int = 3) -> nn.Module:
    cls = nn.Conv3d if spatial_dims == 3 else nn.Conv2d
    return cls(cin, cout, kernel, padding=kernel // 2)


def norm(spatial_dims: int, channels: int) -> nn.Module:
    return (nn.BatchNorm3d if spatial_dims == 3 else nn.BatchNorm2d)(channels)


def pool(spatial_dims: int) -> nn.Module:
    return (nn.MaxPool3d if spatial_dims == 3 else nn.MaxPool2d)(2)


def double_conv(spatial_dims: int, cin: int, cmid: int, cout: int) -> nn.Sequential:
    """Conv-BN-ReLU twice (the authors' ``initial_conv`` / ``consecutive_conv`` blocks)."""
    return nn.Sequential(
        conv(spatial_dims, cin, cmid), norm(spatial_dims, cmid), nn.ReLU(inplace=True),
        conv(spatial_dims, cmid, cout), norm(spatial_dims, cout), nn.ReLU(inplace=True),
    )


def upsample() -> nn.Module:
    """Nearest-neighbour x2 upsampling, as in the authors' decoders."""
    return nn.Upsample(scale_factor=2, mode="nearest")
