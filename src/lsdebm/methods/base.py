"""What every method offers: run settings, their resolution against a checkpoint, the event stream.

A :class:`Method` wraps one model (or only its config, for labels). :meth:`Method.resolve` is the
one place where "``None`` means the checkpoint's default" is decided; the :class:`Resolved` it
returns is what runs, what provenance records, what sizes trajectory recorders and what the
progress bars count (:meth:`Method.n_events`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

import numpy as np
import torch

from lsdebm.accel.convnet import inference as fast_net  # same function, faster (eval mode)
from lsdebm.config import LANGEVIN_INITS, ConsistencyConfig, LangevinConfig
from lsdebm.data.validate import MAX_SEED, is_number, seed_ok
from lsdebm.errors import InputError
from lsdebm.nn.registry import KindInfo, kind_info
from lsdebm.sampling.events import Event, ResultEvent


@dataclass(frozen=True)
class RunSettings:
    """Sampling settings; ``None`` means "take it from the checkpoint's config".

    Attributes:
        steps: diffusion depth t* used for reconstruction (LSD-EBM) or posterior steps (LEBM).
        K: Langevin iterations per reverse step.
        step_size: Langevin step size lambda.
        noise_scale: multiplier of the Langevin noise (1 = paper).
        init: Langevin start, ``z_tilde`` or ``random``.
        repeats: independent chains, batched along the batch axis.
        seed: seed of the explicit ``torch.Generator``.
        use_mean: encode with the posterior mean instead of a sample of q(z0|x).
        consistency_weight: lambda of the data-consistency term (None: checkpoint; 0: unguided).
        consistency_steps: guided Langevin iterations after the reverse chain (None: checkpoint).
        projection: weight of the output-grid slab projection (None: checkpoint; 0: off).
        interpolation: weight of the shape-based interpolation fused before it (None: checkpoint).
    """

    steps: int | None = None
    K: int | None = None
    step_size: float | None = None
    noise_scale: float | None = None
    init: str | None = None
    repeats: int = 1
    seed: int = 0
    use_mean: bool = True
    consistency_weight: float | None = None
    consistency_steps: int | None = None
    projection: float | None = None
    interpolation: float | None = None

    def __post_init__(self) -> None:
        """Refuse a wrong type or range in one line naming the field (``K=2.5``, ``seed=None`` and ``repeats="2"``
        were TypeErrors deep inside the sampler; ``seed=1.5`` ran as seed 1); numpy scalars become Python ones."""
        for name, (optional, whole, in_range, expected) in SETTING_CHECKS.items():
            value = getattr(self, name)
            if value is None and optional:
                continue
            if not (_whole(value) if whole else is_number(value)):
                raise InputError(f"RunSettings.{name}={value!r:.60} must be a {'whole' if whole else 'finite'} number "
                                 f"{expected}" + (" (or None: the checkpoint's value)" if optional else ""))
            if not in_range(value):  # worded as before, so the command line names its option (--repeats 0 ...)
                raise InputError(f"RunSettings.{name}={value} must be {expected}")
            object.__setattr__(self, name, int(value) if whole else float(value))
        if self.init is not None and self.init not in LANGEVIN_INITS:
            raise InputError(f"RunSettings.init={self.init!r:.60} must be one of "
                             f"{', '.join(map(repr, LANGEVIN_INITS))} (or None: the checkpoint's value)")
        if not isinstance(self.use_mean, (bool, np.bool_)):
            raise InputError(f"RunSettings.use_mean={self.use_mean!r:.60} must be True or False")
        object.__setattr__(self, "use_mean", bool(self.use_mean))


#: RunSettings field -> (None allowed: "the checkpoint's", whole numbers only, the range check, the range in words).
SETTING_CHECKS = {
    "steps": (True, True, lambda v: v >= 0, ">= 0"), "K": (True, True, lambda v: v >= 1, ">= 1"),
    "step_size": (True, False, lambda v: v > 0, "> 0"), "noise_scale": (True, False, lambda v: v >= 0, ">= 0"),
    "repeats": (False, True, lambda v: v >= 1, ">= 1"),
    "seed": (False, True, seed_ok, f"in 0..{MAX_SEED} (2**63 - 1)"),
    "consistency_weight": (True, False, lambda v: v >= 0, ">= 0"),
    "consistency_steps": (True, True, lambda v: v >= 0, ">= 0"),
    "projection": (True, False, lambda v: 0 <= v <= 1, "in [0, 1]"),
    "interpolation": (True, False, lambda v: v >= 0, ">= 0")}


def _whole(value) -> bool:
    """A Python or numpy integer (not a bool: ``True`` is no count of steps)."""
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


RECORD_FIELDS = ("repeats", "seed", "use_mean", "steps", "K", "step_size", "noise_scale", "init", "T",
                 "reference_sigma")


@dataclass(frozen=True)
class Resolved:
    """Every setting a run really uses, checkpoint defaults filled in (None: not used by the method).

    Attributes:
        kind: the model kind.
        generate: resolved for generation from noise (else reconstruction of an input).
        repeats, seed, use_mean: as in :class:`RunSettings`.
        steps: LSD-EBM: diffusion depth t* (generation: the start step); LEBM: posterior/prior steps.
        K: Langevin iterations per reverse step (LSD-EBM).
        step_size, noise_scale, init: of the Langevin chain.
        T: the checkpoint's number of diffusion steps (LSD-EBM).
        reference_sigma: sigma of the LEBM chain's start and posterior (reconstruction).
        chain_length: Langevin iterations per recorded step (what a trajectory recorder expects).
        langevin: the checkpoint's :class:`LangevinConfig` with the overrides (LSD-EBM).
        consistency: the :class:`ConsistencyConfig` that guides the run (LSD-EBM).
    """

    kind: str
    generate: bool = False
    repeats: int = 1
    seed: int = 0
    use_mean: bool = True
    steps: int | None = None
    K: int | None = None
    step_size: float | None = None
    noise_scale: float | None = None
    init: str | None = None
    T: int | None = None
    reference_sigma: float | None = None
    chain_length: int = 0
    langevin: LangevinConfig | None = None
    consistency: ConsistencyConfig | None = None

    def record(self) -> dict[str, Any]:
        """The settings as provenance and trajectory files record them (the values in use only)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: values[k] for k in RECORD_FIELDS if values[k] is not None}


def langevin_config(model: torch.nn.Module, s: RunSettings) -> LangevinConfig:
    """The checkpoint's :class:`LangevinConfig` with the run's overrides (K, step size, noise, init)."""
    base = model.cfg.langevin
    over = {k: v for k, v in (("K", s.K), ("step_size", s.step_size), ("noise_scale", s.noise_scale),
                              ("init", s.init)) if v is not None}
    return replace(base, **over)


def consistency_config(model: torch.nn.Module, s: RunSettings) -> ConsistencyConfig:
    """The checkpoint's :class:`ConsistencyConfig` with the run's overrides."""
    base = getattr(model.cfg, "consistency", ConsistencyConfig())
    over = {k: v for k, v in (("weight", s.consistency_weight), ("steps", s.consistency_steps),
                              ("projection", s.projection), ("interpolation", s.interpolation)) if v is not None}
    return replace(base, **over)


def result_event(net: torch.nn.Module, z: torch.Tensor | None, inputs: torch.Tensor) -> ResultEvent:
    """Run ``net`` without gradients and wrap its probabilities; never yields under no_grad."""
    with torch.no_grad():
        return ResultEvent(z, torch.sigmoid(fast_net(net)(inputs)))


def decode(model: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
    """Per-voxel probabilities p(x|z) for a batch of latents."""
    with torch.no_grad():
        return torch.sigmoid(fast_net(model.decoder)(z))


class Method(ABC):
    """One kind's sampling behaviour over a model (``model`` may be None for config-only uses).

    Subclasses set ``kind`` and implement :meth:`resolve`, :meth:`events`, :meth:`n_events`
    and :meth:`loss`; generation from noise is :meth:`generate_events` where the kind can.
    """

    kind: ClassVar[str]
    chain_name: ClassVar[str] = "Langevin"  # what the K of a checkpoint description counts
    #: The :class:`RunSettings` sampler fields this kind reads (the others are ignored by it).
    uses: ClassVar[tuple[str, ...]] = ("steps", "K", "step_size", "consistency_weight")

    def __init__(self, cfg, model: torch.nn.Module | None = None) -> None:
        self.cfg, self.model = cfg, model

    @property
    def info(self) -> KindInfo:
        """The registry entry of this method's kind."""
        return kind_info(self.kind)

    def base_settings(self, s: RunSettings, generate: bool) -> dict[str, Any]:
        """The fields every Resolved carries (kind, mode, repeats, seed, use_mean)."""
        return {"kind": self.kind, "generate": generate, "repeats": s.repeats, "seed": s.seed, "use_mean": s.use_mean}

    def resolve(self, s: RunSettings, *, generate: bool = False) -> Resolved:
        """``s`` with every ``None`` replaced by the checkpoint's value; InputError if out of range."""
        return Resolved(**self.base_settings(s, generate))

    def prepare_observations(self, observations, n_chains: int, repeats: int, device) -> list | None:
        """Observations per chain for :meth:`events`; methods without guidance ignore them."""
        return None

    @abstractmethod
    def events(self, x: torch.Tensor, r: Resolved, g: torch.Generator, observations=None) -> Iterator[Event]:
        """The events of reconstructing the checked batch ``x`` (repeats already interleaved)."""

    def generate_events(self, n: int, r: Resolved, g: torch.Generator) -> Iterator[Event]:
        """The events of generating ``n`` samples from noise."""
        raise InputError(f"a {self.kind} model cannot generate from noise; use lsdebm, lebm or vae")

    @abstractmethod
    def n_events(self, r: Resolved, guided: bool = False) -> int:
        """How many events :meth:`events` (or :meth:`generate_events`) yields under ``r``."""

    @abstractmethod
    def loss(self, x: torch.Tensor, target: torch.Tensor, *, z_init, generator, schedule, train_K: int,
             lebm_steps: int) -> dict[str, torch.Tensor]:
        """The training losses of one batch (see :mod:`lsdebm.methods.losses`)."""

    def training_schedule(self):
        """The diffusion schedule training draws (t, z_t) from; None for methods without one."""
        return None

    def chain_scales(self):
        """(a, a_cum) of the sampling schedule for diffusion methods, else None."""
        return None

    @classmethod
    def settings_from_controls(cls, depth: int | None, K: int | None, step_size: float | None, seed: int,
                               repeats: int) -> RunSettings:
        """Explorer/demo controls (depth, K, step size) -> :class:`RunSettings` for this method."""
        return RunSettings(steps=depth, K=K, step_size=step_size, seed=seed, repeats=repeats)

    def comparison_settings(self, s: RunSettings) -> RunSettings:
        """The settings this method runs with in a side-by-side comparison (baselines: seed, use_mean)."""
        return RunSettings(seed=s.seed, use_mean=s.use_mean)

    def chain_summary(self) -> tuple[str, str]:
        """(label, value) of the checkpoint's Langevin chain for checkpoint descriptions."""
        lang = self.cfg.langevin
        return f"K ({self.chain_name})", f"{lang.K}, step size {lang.step_size:g}"
