"""The named configurations (``--preset``).

* ``default`` -- small CPU preset: 64^3 at 2 mm (the same 128 mm field of view as the paper),
  trained with a soft-Dice term added to the decoder loss and a cosine learning-rate decay.
* ``paper``   -- the authors' sizes: 128^3 at 1 mm, channels (16, 16, 32, 64), latent 100,
  energy MLP 1000 wide, T=20, K=300 (meant for a GPU).
* ``reference`` -- the paper sizes with the authors' code departures reproduced (shared
  mean/log-variance head, 0.1 forward-noise factor, random Langevin start, raw integer t,
  T=30 evaluation arrays, broadcast loss weighting, swapped SEN/SPEC in metrics).
* ``tiny`` -- a few-voxel model for tests and smoke runs.
"""
from __future__ import annotations

from typing import Any

from lsdebm.config.schema import (
    Config,
    ConfigError,
    LangevinConfig,
    LEBMConfig,
    LossConfig,
    ModelConfig,
    ScheduleConfig,
    TrainConfig,
)


def _paper_model(**kw: Any) -> ModelConfig:
    """The paper's network sizes (128^3 at 1 mm), with ``kw`` changed."""
    return ModelConfig(grid=128, spacing=1.0, channels=(16, 16, 32, 64), **kw)


PRESETS: dict[str, Config] = {
    "default": Config(preset="default", model=ModelConfig(frame="pose"), loss=LossConfig(dice_weight=1.0),
                      train=TrainConfig(lr_schedule="cosine")),
    "paper": Config(
        preset="paper", model=_paper_model(),
        train=TrainConfig(lr=2e-5, energy_lr=2e-5, batch_size=4, epochs=201, train_K=300),
        langevin=LangevinConfig(K=300, recon_steps=6)),
    "reference": Config(
        preset="reference",
        model=_paper_model(shared_head=True, time_embedding="raw"),
        schedule=ScheduleConfig(T=20, eval_T=30, forward_noise_factor=0.1),
        langevin=LangevinConfig(K=300, noise_scale=0.01, init="random", recon_steps=20),
        lebm=LEBMConfig(likelihood="gaussian", batchnorm=True),
        loss=LossConfig(encoder_loss="reference_entropy", kl_weight=0.0, loss_weighting="reference_broadcast"),
        train=TrainConfig(lr=2e-5, energy_lr=2e-5, batch_size=4, epochs=201, train_K=300),
        reference_compat=True),
    "tiny": Config(
        preset="tiny", model=ModelConfig(grid=16, spacing=8.0, channels=(4, 8), latent_dim=8,
                                         energy_hidden=32, time_embed_dim=8),
        schedule=ScheduleConfig(T=4), langevin=LangevinConfig(K=5, recon_steps=2),
        lebm=LEBMConfig(energy_hidden=16, energy_layers=2, prior_steps=3, posterior_steps=3),
        train=TrainConfig(batch_size=2, epochs=1, train_K=3)),
}


def get_preset(name: str) -> Config:
    """Return a preset by name (``default``, ``paper``, ``reference``, ``tiny``)."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
