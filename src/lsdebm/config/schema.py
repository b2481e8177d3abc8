"""The configuration dataclasses: frozen, validated values for every model, the schedule and the samplers.

Everything a user may want to change (grid, spacing, channels, latent size, T, K, step size,
noise scale, Langevin initialisation, schedule) is config, never code. Validation checks values
only, never this machine: a checkpoint's config is valid on any host. Whether a grid fits in
memory is checked where a model is built (:func:`check_model_memory`).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from lsdebm.errors import LsdebmError

MODEL_KINDS = ("lsdebm", "vae", "lebm", "reconnet")
TIME_EMBEDDINGS = ("sinusoidal", "raw", "none")
SCHEDULE_KINDS = ("strided", "vp")
LANGEVIN_INITS = ("z_tilde", "random")
LOSS_WEIGHTINGS = ("per_sample", "reference_broadcast")
ENCODER_LOSSES = ("kl", "reference_entropy")
LIKELIHOODS = ("bernoulli", "gaussian")
LR_SCHEDULES = ("constant", "cosine")


class ConfigError(LsdebmError):
    """A configuration value is outside its allowed range."""


def _choice(name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed; expected one of {', '.join(map(repr, allowed))}")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}={value!r} must be a finite number")
    ok = value >= 0 if allow_zero else value > 0
    if math.isinf(value):  # --lr inf trained a checkpoint of NaN weights
        raise ConfigError(f"{name}={value!r} must be a finite number {'>= 0' if allow_zero else '> 0'}")
    if not ok:
        raise ConfigError(f"{name}={value!r} must be {'>= 0' if allow_zero else '> 0'}")


#: How a mask reaches the model grid (:attr:`ModelConfig.input_values`).
INPUT_VALUES = ("binary", "fraction")


@dataclass(frozen=True)
class ModelConfig:
    """Network sizes shared by encoder, decoder, energy and ReconNet.

    Attributes:
        spatial_dims: 2 or 3 (one implementation serves both).
        grid: side length of the (cubic/square) model grid in voxels.
        spacing: voxel size in mm at the model grid.
        channels: feature channels per resolution level; ``len(channels) - 1`` poolings.
        latent_dim: size of the flat latent vector z (paper: 100).
        energy_hidden: width of the energy MLP (paper: 1000).
        energy_layers: number of hidden layers of the energy MLP (paper: 2).
        time_embedding: ``sinusoidal`` (ours), ``raw`` (authors: integer t appended) or ``none``.
        time_embed_dim: size of the sinusoidal embedding.
        shared_head: reproduce the authors' shared mean/log-variance Linear (reference only).
        frame: how a structure is put into the model grid: ``world`` (scanner axes, the
            structure's centroid placed like the training phantoms') or ``pose`` (its own
            anatomical frame, :mod:`lsdebm.data.pose`). Training and inference must agree, so
            it is stored with the weights.
        centroid_offset_mm: where the centroid sits relative to the grid centre (superior,
            posterior, right mm); empty = the mean of the phantoms (older checkpoints).
        input_values: what the first stage sees of its input mask: ``binary`` (the mask
            resampled to the model grid and thresholded, older checkpoints) or ``fraction``
            (the share of each model voxel the input covers, 2x2x2 sub-samples: the input's
            sub-voxel boundary survives the coarser model grid). Stored with the weights.
        slab_refine: SlabNet only: channels of its 1 mm refinement block (two 3x3x3 convolutions
            added to the logits, the second starting at zero); 0 (older checkpoints) is none, only
            the pointwise head at 1 mm.
    """

    spatial_dims: int = 3
    grid: int = 64
    spacing: float = 2.0
    channels: tuple[int, ...] = (4, 8, 16, 32, 64)
    latent_dim: int = 100
    energy_hidden: int = 1000
    energy_layers: int = 2
    time_embedding: str = "sinusoidal"
    time_embed_dim: int = 32
    shared_head: bool = False
    frame: str = "world"
    centroid_offset_mm: tuple[float, ...] = ()
    input_values: str = "binary"
    slab_refine: int = 0

    def __post_init__(self) -> None:
        _choice("spatial_dims", self.spatial_dims, (2, 3))
        _choice("frame", self.frame, ("world", "pose"))
        _choice("input_values", self.input_values, INPUT_VALUES)
        if not 0 <= self.slab_refine <= 64:
            raise ConfigError(f"slab_refine={self.slab_refine!r} must be 0 (no 1 mm block) to 64 channels")
        if len(self.centroid_offset_mm) not in (0, 3):
            raise ConfigError(f"centroid_offset_mm={self.centroid_offset_mm!r} must be empty or 3 numbers (mm)")
        _choice("time_embedding", self.time_embedding, TIME_EMBEDDINGS)
        _positive("spacing", self.spacing)
        for name in ("latent_dim", "energy_hidden", "energy_layers", "time_embed_dim"):
            _positive(name, getattr(self, name))
        if len(self.channels) < 2 or any(int(c) <= 0 for c in self.channels):
            raise ConfigError(f"channels={self.channels!r} must list at least two positive channel counts")
        down = 2 ** (len(self.channels) - 1)
        if self.grid <= 0 or self.grid % down:
            raise ConfigError(
                f"grid={self.grid} must be a positive multiple of {down} (2**(len(channels)-1)) "
                f"for channels={self.channels}")

    @property
    def bottleneck(self) -> int:
        return self.grid // 2 ** (len(self.channels) - 1)


@dataclass(frozen=True)
class ScheduleConfig:
    """The latent forward-diffusion schedule (eq. 1).

    Attributes:
        kind: ``strided`` (authors' construction from 1000 linear betas, docs/reference-code.md §3.1) or ``vp``
            (a clean cosine variance-preserving schedule over T steps).
        T: number of diffusion steps the model is trained with.
        beta_start, beta_end, n_betas: the linear beta grid of the strided construction.
        eval_T: if set, sampling uses arrays computed for this T (authors' T=30 mismatch);
            ``None`` (ours) reuses the training schedule.
        forward_noise_factor: multiplies the forward noise (authors: 0.1; eq. 1: 1.0).
    """

    kind: str = "strided"
    T: int = 20
    beta_start: float = 1e-4
    beta_end: float = 1e-2
    n_betas: int = 1000
    eval_T: int | None = None
    forward_noise_factor: float = 1.0

    def __post_init__(self) -> None:
        _choice("schedule.kind", self.kind, SCHEDULE_KINDS)
        if not 1 <= self.T <= 500:
            raise ConfigError(f"T={self.T} must be between 1 and 500")
        if self.kind == "strided" and self.T < 2:
            raise ConfigError("the strided schedule needs T >= 2")
        if self.eval_T is not None and self.eval_T < self.T:
            raise ConfigError(f"eval_T={self.eval_T} must be >= T={self.T}")
        if not 0 < self.beta_start < self.beta_end < 1:
            raise ConfigError("need 0 < beta_start < beta_end < 1")
        _positive("forward_noise_factor", self.forward_noise_factor)


@dataclass(frozen=True)
class LangevinConfig:
    """Conditional Langevin sampler of eqs. (3)-(4).

    The update is ``y <- y - step_size/2 * grad U(y) + sqrt(step_size) * noise_scale * N(0, I)``.
    ``noise_scale=1`` is the paper's omega_k ~ N(0, lambda); the authors use 0.01.
    """

    K: int = 300
    step_size: float = 0.01
    noise_scale: float = 1.0
    init: str = "z_tilde"
    recon_steps: int = 6

    def __post_init__(self) -> None:
        _choice("langevin.init", self.init, LANGEVIN_INITS)
        if self.K < 1:
            raise ConfigError(f"K={self.K} must be >= 1")
        _positive("step_size", self.step_size)
        _positive("noise_scale", self.noise_scale, allow_zero=True)
        if self.recon_steps < 0:
            raise ConfigError(f"recon_steps={self.recon_steps} must be >= 0")


@dataclass(frozen=True)
class LEBMConfig:
    """Latent EBM prior (Pang et al. 2020): prior and posterior Langevin settings.

    ``prior_sigma`` is the scale of the reference N(0, s^2 I) that the energy tilts; every chain
    starts from it. ``inference_prior_sigma`` (ours; ``None`` = ``prior_sigma``) replaces that
    scale in test-time posterior inference only (chain start and Gaussian term), a tempered
    reference prior: the persistent training chains settle far outside N(0, I) (|z| ~ 70 in 100
    dimensions for the bundled model) and a unit reference then drags test-time chains away from
    where the generator decodes well. Training and generation never read it.
    """

    energy_hidden: int = 300
    energy_layers: int = 4
    prior_steps: int = 30
    prior_step_size: float = 0.4
    posterior_steps: int = 20
    posterior_step_size: float = 0.1
    prior_sigma: float = 1.0
    likelihood: str = "bernoulli"
    likelihood_sigma: float = 0.3
    batchnorm: bool = False
    inference_prior_sigma: float | None = None

    def __post_init__(self) -> None:
        _choice("lebm.likelihood", self.likelihood, LIKELIHOODS)
        if self.inference_prior_sigma is not None:
            _positive("inference_prior_sigma", self.inference_prior_sigma)
        for name in ("energy_hidden", "energy_layers", "prior_steps", "prior_step_size",
                     "posterior_steps", "posterior_step_size", "prior_sigma", "likelihood_sigma"):
            _positive(name, getattr(self, name))

    @property
    def inference_sigma(self) -> float:
        """The reference scale test-time posterior inference uses."""
        return self.prior_sigma if self.inference_prior_sigma is None else self.inference_prior_sigma


@dataclass(frozen=True)
class ConsistencyConfig:
    """Measurement-aware refinement when the input's thick-slice acquisition is known.

    Attributes:
        weight: lambda of the data-consistency term added to the LSD-EBM Langevin energy after
            the reverse chain (:mod:`lsdebm.sampling.guidance`); 0 = the paper's unguided sampler.
        steps: guided Langevin iterations (each one decoder forward + backward).
        step_size: their step size.
        noise_scale: their noise multiplier (1 = Langevin, 0 = gradient descent).
        projection: weight of the projection of the output probabilities onto the observed slabs
            on the output grid (:mod:`lsdebm.data.slab_projection`); 0 = off, 1 = every column
            consistent. Applies to every method, ReconNet alone included.
        margin: how far past one half a projected column's mean is moved (and the data term's margin).
        interpolation: weight of the shape-based interpolation of the observed slabs, summed in
            logit space with the model's output before the projection (0 = the model alone).
    """

    weight: float = 0.0
    steps: int = 0
    step_size: float = 0.01
    noise_scale: float = 1.0
    projection: float = 0.0
    margin: float = 0.02
    interpolation: float = 0.0

    def __post_init__(self) -> None:
        for name in ("weight", "step_size", "noise_scale", "projection", "margin", "interpolation"):
            _positive(name, getattr(self, name), allow_zero=True)
        if not isinstance(self.steps, int) or self.steps < 0:
            raise ConfigError(f"consistency.steps={self.steps!r} must be an integer >= 0")
        if self.projection > 1 or self.margin >= 0.5:
            raise ConfigError(f"consistency.projection={self.projection} must be <= 1 and margin={self.margin} < 0.5")


@dataclass(frozen=True)
class LossConfig:
    """Training objective knobs (eqs. 16-17, Algorithm 1).

    ``dice_weight`` (ours, 0 = the paper's pure Bernoulli NLL) adds ``dice_weight * (1 - soft
    Dice) * |x|`` per sample to the decoder's reconstruction loss, where ``|x|`` is the number of
    foreground voxels, so the term is on the scale of the summed BCE whatever the grid size. It
    sharpens thin structures (laminae, transverse processes) that the summed BCE under-weights.
    """

    encoder_loss: str = "kl"
    kl_weight: float = 1.0
    loss_weighting: str = "per_sample"
    energy_reg: float = 0.0
    dice_weight: float = 0.0

    def __post_init__(self) -> None:
        _choice("encoder_loss", self.encoder_loss, ENCODER_LOSSES)
        _choice("loss_weighting", self.loss_weighting, LOSS_WEIGHTINGS)
        _positive("kl_weight", self.kl_weight, allow_zero=True)
        _positive("energy_reg", self.energy_reg, allow_zero=True)
        _positive("dice_weight", self.dice_weight, allow_zero=True)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    ``lr_schedule``: ``constant`` (the authors') or ``cosine`` (ours): both learning rates follow
    ``0.5 * (1 + cos(pi * progress))`` down to ``lr_floor`` times their start value, where
    progress is the larger of the epoch fraction and, when ``--max-minutes`` caps a run, the
    fraction of that wall-time budget used -- so a time-capped run still ends its decay.
    """

    lr: float = 2e-4
    energy_lr: float = 2e-4
    batch_size: int = 4
    epochs: int = 20
    train_K: int = 30
    lr_schedule: str = "constant"
    lr_floor: float = 0.02

    def __post_init__(self) -> None:
        for name in ("lr", "energy_lr", "batch_size", "epochs", "train_K"):
            _positive(name, getattr(self, name))
        _choice("train.lr_schedule", self.lr_schedule, LR_SCHEDULES)
        if not 0 <= self.lr_floor <= 1:
            raise ConfigError(f"train.lr_floor={self.lr_floor!r} must be between 0 and 1")


@dataclass(frozen=True)
class Config:
    """A complete configuration; ``preset`` names where it came from."""

    preset: str = "default"
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    langevin: LangevinConfig = field(default_factory=LangevinConfig)
    lebm: LEBMConfig = field(default_factory=LEBMConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    reference_compat: bool = False
    consistency: ConsistencyConfig = field(default_factory=ConsistencyConfig)

    def replace(self, **sections: Any) -> "Config":
        """Return a copy with whole sections or dotted fields replaced.

        ``cfg.replace(**{"langevin.K": 50, "model.grid": 32})`` or ``cfg.replace(preset="x")``.

        Raises:
            ConfigError: For an unknown section or field, or a value the section refuses.
        """
        updates: dict[str, dict[str, Any]] = {}
        top: dict[str, Any] = {}
        for key, value in sections.items():
            if "." in key:
                sec, name = key.split(".", 1)
                if sec not in SECTIONS:
                    raise ConfigError(f"unknown config section {sec!r}; expected one of {', '.join(SECTIONS)}")
                updates.setdefault(sec, {})[name] = value
            else:
                top[key] = value
        for sec, fields_ in updates.items():
            current = getattr(self, sec)
            known = {f.name for f in dataclasses.fields(current)}
            unknown = set(fields_) - known
            if unknown:
                raise ConfigError(f"unknown {sec} option(s) {sorted(unknown)}; expected one of {sorted(known)}")
            top[sec] = dataclasses.replace(current, **fields_)
        return dataclasses.replace(self, **top)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Config":
        """Rebuild a config; unknown keys raise a ConfigError naming them."""
        if not isinstance(data, dict):
            raise ConfigError("config must be a JSON object")
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in SECTIONS:
                section_cls = SECTIONS[key]
                known = {f.name for f in dataclasses.fields(section_cls)}
                unknown = set(value) - known
                if unknown:
                    raise ConfigError(f"unknown {key} option(s) {sorted(unknown)}")
                if key == "model":
                    value = {**value, **{k: tuple(value[k]) for k in ("channels", "centroid_offset_mm") if k in value}}
                kwargs[key] = section_cls(**value)
            elif key in ("preset", "reference_compat"):
                kwargs[key] = value
            else:
                raise ConfigError(f"unknown config key {key!r}")
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        return cls.from_dict(json.loads(text))


SECTIONS = {
    "model": ModelConfig, "schedule": ScheduleConfig, "langevin": LangevinConfig,
    "lebm": LEBMConfig, "loss": LossConfig, "train": TrainConfig, "consistency": ConsistencyConfig,
}


def check_model_memory(model: ModelConfig) -> None:
    """Refuse a model grid whose first feature map alone would not fit this machine's memory limit.

    Called where a network is built or trained (never by config validation, so a checkpoint stays
    valid on a small machine); raises :class:`~lsdebm.errors.InputError` naming the need and the limit.
    """
    from lsdebm.limits import array_bytes, check_memory

    check_memory(array_bytes((model.grid,) * model.spatial_dims, 4 * int(model.channels[0])),
                 f"model grid {model.grid}^{model.spatial_dims} with {model.channels[0]} channels")
