"""Model definitions; ``build_model(kind, cfg)`` constructs any of them from config alone."""
from __future__ import annotations

from torch import nn

from lsdebm.config import MODEL_KINDS, Config, ConfigError
from lsdebm.nn.lebm import LEBM
from lsdebm.nn.lsdebm import LSDEBM
from lsdebm.nn.reconnet import ReconNet
from lsdebm.nn.vae import VAE

_CLASSES = {"lsdebm": LSDEBM, "vae": VAE, "lebm": LEBM, "reconnet": ReconNet}


def build_model(kind: str, cfg: Config) -> nn.Module:
    """Build an untrained model of ``kind`` (one of lsdebm, vae, lebm, reconnet)."""
    if kind not in _CLASSES:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    return _CLASSES[kind](cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["LEBM", "LSDEBM", "VAE", "ReconNet", "build_model", "count_parameters"]
