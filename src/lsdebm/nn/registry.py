"""The one table of model kinds: kind -> network class and what a model of that kind has.

Everything that needs to know what a kind can do (has an energy, a latent, a diffusion chain,
trains on (lq -> hq) pairs, refines a first-stage result) asks :func:`kind_info` instead of
comparing kind strings; :mod:`lsdebm.methods` holds the per-kind sampling behaviour.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from lsdebm.config import MODEL_KINDS, ConfigError
from lsdebm.nn.lebm import LEBM
from lsdebm.nn.lsdebm import LSDEBM
from lsdebm.nn.reconnet import ReconNet
from lsdebm.nn.vae import VAE


@dataclass(frozen=True)
class KindInfo:
    """What a model kind is made of and how it is used.

    Attributes:
        kind: the string stored in checkpoints (``lsdebm``, ``vae``, ``lebm``, ``reconnet``).
        label: the name shown to people (``LSD-EBM``).
        network: the ``nn.Module`` class built for it.
        has_energy: has an energy network (trained with a second optimiser, sampled by Langevin).
        has_latent: reconstructs through a latent z (decoder p(x|z)).
        diffusion: runs the latent diffusion chain (forward to depth t*, reverse Langevin).
        paired: trains on (low quality -> high quality) pairs instead of reconstructing its input.
        refines: a refinement method (explorer, compare, the reconstruct pipeline's method).
        first_stage: the optional first stage whose thresholded output a method refines.
    """

    kind: str
    label: str
    network: type[nn.Module]
    has_energy: bool
    has_latent: bool
    diffusion: bool
    paired: bool
    refines: bool
    first_stage: bool


KINDS: dict[str, KindInfo] = {
    "lsdebm": KindInfo("lsdebm", "LSD-EBM", LSDEBM, has_energy=True, has_latent=True, diffusion=True,
                       paired=False, refines=True, first_stage=False),
    "vae": KindInfo("vae", "VAE", VAE, has_energy=False, has_latent=True, diffusion=False,
                    paired=False, refines=True, first_stage=False),
    "lebm": KindInfo("lebm", "LEBM", LEBM, has_energy=True, has_latent=True, diffusion=False,
                     paired=False, refines=True, first_stage=False),
    "reconnet": KindInfo("reconnet", "ReconNet", ReconNet, has_energy=False, has_latent=False, diffusion=False,
                         paired=True, refines=False, first_stage=True),
}

LABELS: dict[str, str] = {k: info.label for k, info in KINDS.items()}
REFINEMENT_KINDS: tuple[str, ...] = tuple(k for k, info in KINDS.items() if info.refines)


def kind_info(kind: str) -> KindInfo:
    """The :class:`KindInfo` of ``kind``; ConfigError for an unknown kind."""
    if kind not in KINDS:
        raise ConfigError(f"unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    return KINDS[kind]


def info_of(model: nn.Module) -> KindInfo:
    """The :class:`KindInfo` of a built model (its ``kind`` attribute)."""
    return kind_info(getattr(model, "kind", None))


def is_refinement(kind: str | None) -> bool:
    """Whether ``kind`` is a refinement method (False for unknown kinds, never an error)."""
    return kind in KINDS and KINDS[kind].refines


def is_first_stage(kind: str | None) -> bool:
    """Whether ``kind`` is the first stage (ReconNet); False for unknown kinds."""
    return kind in KINDS and KINDS[kind].first_stage


def has_energy(kind: str | None) -> bool:
    """Whether ``kind`` has an energy network (LSD-EBM, LEBM); False for unknown kinds."""
    return kind in KINDS and KINDS[kind].has_energy
