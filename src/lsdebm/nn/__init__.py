"""Model definitions; ``build_model(kind, cfg)`` constructs any of them from config alone."""
from __future__ import annotations

from torch import nn

from lsdebm.config import Config, check_model_memory
from lsdebm.nn.lebm import LEBM
from lsdebm.nn.lsdebm import LSDEBM
from lsdebm.nn.reconnet import ReconNet
from lsdebm.nn.registry import kind_info
from lsdebm.nn.vae import VAE


def build_model(kind: str, cfg: Config) -> nn.Module:
    """Build an untrained model of ``kind`` (one of lsdebm, vae, lebm, reconnet).

    Raises:
        ConfigError: For an unknown kind.
        InputError: When the model grid's first feature map would not fit in memory
            (:func:`lsdebm.config.check_model_memory`).
    """
    network = kind_info(kind).network
    check_model_memory(cfg.model)
    return network(cfg)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


__all__ = ["LEBM", "LSDEBM", "VAE", "ReconNet", "build_model", "count_parameters"]
