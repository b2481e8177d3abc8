"""One optimisation step per model kind, as an ``nn.Module`` so DDP can wrap it whole.

``TrainStep.forward`` returns the loss dict of :mod:`lsdebm.methods.losses`. The loop adds
``loss_g`` and ``loss_e`` and back-propagates once: the two losses touch disjoint parameter
sets (the EBM works on detached latents, Algorithm 1), so one backward followed by a step of
the encoder/decoder optimiser and a step of the energy optimiser equals two separate updates,
and DistributedDataParallel sees every parameter exactly once per iteration. The Langevin
chains inside the forward only differentiate with respect to latents, never parameters.
"""
from __future__ import annotations

import torch
from torch import nn

from lsdebm.methods import method_for


class TrainStep(nn.Module):
    """Wraps a model; ``forward(x, target, z_init, generator)`` -> losses.

    Args:
        model: an lsdebm, vae, lebm or reconnet model.
        train_K: Langevin iterations for the LSD-EBM negative samples (cfg.train.train_K).
        lebm_steps: posterior Langevin steps per LEBM iteration (persistent chains).
    """

    def __init__(self, model: nn.Module, train_K: int, lebm_steps: int) -> None:
        super().__init__()
        self.model = model
        self.train_K, self.lebm_steps = train_K, lebm_steps
        self.method = method_for(model)
        self.schedule = self.method.training_schedule()

    def forward(self, x: torch.Tensor, target: torch.Tensor, z_init: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return self.method.loss(x, target, z_init=z_init, generator=generator, schedule=self.schedule,
                                train_K=self.train_K, lebm_steps=self.lebm_steps)


def parameter_groups(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """(generator-side parameters, energy parameters); the energy list is empty for vae/reconnet."""
    energy = list(model.energy.parameters()) if hasattr(model, "energy") else []
    ids = {id(p) for p in energy}
    return [p for p in model.parameters() if id(p) not in ids], energy


def make_optimizers(model: nn.Module, lr: float, energy_lr: float) -> list[torch.optim.Optimizer]:
    """Adam for encoder/decoder (or the whole net) and, for the EBMs, a second Adam for the energy."""
    gen, energy = parameter_groups(model)
    opts = [torch.optim.Adam(gen, lr=lr)]
    if energy:
        opts.append(torch.optim.Adam(energy, lr=energy_lr))
    return opts
