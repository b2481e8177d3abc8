"""ReconNet: the first stage, one network pass from the low-quality mask to probabilities."""
from __future__ import annotations

from collections.abc import Iterator

import torch

from lsdebm.methods.base import Method, Resolved, result_event
from lsdebm.methods.losses import reconnet_loss
from lsdebm.sampling.events import Event


class ReconNetMethod(Method):
    """Supervised (lq -> hq) network; yields the result only and cannot generate from noise."""

    kind = "reconnet"
    uses = ()

    def events(self, x: torch.Tensor, r: Resolved, g: torch.Generator, observations=None) -> Iterator[Event]:
        yield result_event(self.model, None, x)

    def n_events(self, r: Resolved, guided: bool = False) -> int:
        return 1

    def loss(self, x, target, *, z_init, generator, schedule, train_K, lebm_steps):
        return reconnet_loss(self.model, x, target)
