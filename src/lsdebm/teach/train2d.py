"""Train the 2D teaching models (LSD-EBM, LEBM, pixel EBM) on the digits, on a CPU, in minutes.

The 2D LSD-EBM and LEBM are the very models of the 3D pipeline built with
``model.spatial_dims = 2`` (``lsdebm.nn.build_model``) and trained with the existing losses
(``lsdebm.methods.losses.lsdebm_loss`` = Algorithm 1, ``lebm_loss`` = Pang et al. 2020). The pixel
EBM is :mod:`lsdebm.teach.pixel_ebm`. Budgets are fixed iteration counts (so a run is
reproducible from its seed); wall-clock times are measured and stored in the checkpoint info.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from lsdebm.config import Config, get_preset
from lsdebm.errors import InputError
from lsdebm.methods.losses import lebm_loss, lsdebm_loss
from lsdebm.nn import build_model
from lsdebm.nn.lebm import reference_latents
from lsdebm.sampling.schedule import make_schedule
from lsdebm.teach.pixel_ebm import PixelEBM, pixel_ebm_loss

Progress = Callable[[int, int, dict], None]


def _lsdebm_step(model, x, schedule, cfg: Config, g, latents, idx) -> dict:
    return lsdebm_loss(model, x, schedule, cfg.train.train_K, g)


def _lebm_step(model, x, schedule, cfg: Config, g, latents, idx) -> dict:
    out = lebm_loss(model, x, latents[idx], g)
    latents[idx] = out.pop("z_post")  # one persistent posterior chain per training image
    return out


def _pixel_step(model, x, schedule, cfg: Config, g, latents, idx) -> dict:
    return pixel_ebm_loss(model, x, g)


@dataclass(frozen=True)
class DigitRecipe:
    """How one teaching model is built and trained (the table below is the only place kinds differ).

    Attributes:
        iterations: default training batches.
        energy_lr: energy network learning rate.
        pixel: the pixel-space EBM (no encoder/decoder; its own network and short-run negatives).
        persistent_latents: one persistent posterior chain per training image (LEBM).
        step: the losses of one batch.
    """

    iterations: int
    energy_lr: float
    pixel: bool
    persistent_latents: bool
    step: Callable[..., dict]


RECIPES = {
    "lsdebm": DigitRecipe(2500, 2e-3, False, False, _lsdebm_step),
    "lebm": DigitRecipe(700, 2e-4, False, True, _lebm_step),
    "ebm": DigitRecipe(500, 2e-4, True, False, _pixel_step),
}
DIGIT_KINDS = tuple(RECIPES)
DEFAULT_ITERATIONS = {kind: r.iterations for kind, r in RECIPES.items()}


def digits_config(kind: str, size: int = 16) -> Config:
    """The 2D config of ``kind`` (lsdebm, lebm or ebm) for ``size`` x ``size`` digits.

    Derived from the ``default`` preset with ``spatial_dims=2``: a 16-d latent, KL weight 0.1
    (a more informative latent; the learned prior replaces N(0, I)), T=10 strided diffusion
    steps and K=30 Langevin steps per step (the authors' 2D code: T=12, K=30). LSD-EBM uses
    Langevin step size 0.02 and energy learning rate 2e-3: with 0.01 / 2e-4 the short chains do
    not reach the small scale of the last, large-sigma step within a few CPU minutes and the
    generated latents come out about 3x too large. Every method's chain has K = 30 steps
    (LSD-EBM per diffusion step, LEBM prior, pixel EBM), so the k sliders line up.
    """
    if kind not in DIGIT_KINDS:
        raise InputError(f"unknown teaching model {kind!r}; expected one of {', '.join(DIGIT_KINDS)}")
    over = {
        "model.spatial_dims": 2, "model.grid": size, "model.spacing": 1.0,
        "model.channels": (8, 16, 32) if size <= 16 else (8, 16, 32, 64),
        "model.latent_dim": 16, "model.energy_hidden": 200, "model.energy_layers": 2, "model.time_embed_dim": 16,
        "loss.kl_weight": 0.1, "schedule.T": 10, "langevin.K": 30, "langevin.step_size": 0.02,
        "langevin.recon_steps": 4, "lebm.energy_hidden": 200, "lebm.energy_layers": 2, "lebm.prior_steps": 30,
        "lebm.prior_step_size": 0.4, "lebm.posterior_steps": 10, "lebm.posterior_step_size": 0.1,
        "train.batch_size": 64, "train.lr": 2e-3, "train.energy_lr": RECIPES[kind].energy_lr,
        "train.train_K": 30,
    }
    if RECIPES[kind].pixel:  # pixel space: big gradient steps, little noise (short-run EBM)
        over.update({"model.channels": (16, 32, 64) if size <= 16 else (16, 32, 64, 64),
                     "langevin.step_size": 2.0, "langevin.noise_scale": 0.005, "loss.energy_reg": 0.01})
    return get_preset("default").replace(preset=f"teach-{kind}-digits{size}", **over)


def build_teach_model(kind: str, cfg: Config) -> torch.nn.Module:
    """``lsdebm``/``lebm`` from ``lsdebm.nn.build_model``; ``ebm`` is the pixel EBM."""
    return PixelEBM(cfg) if RECIPES[kind].pixel else build_model(kind, cfg)


@dataclass
class TrainResult:
    model: torch.nn.Module
    iterations: int
    seconds: float
    last: dict


def _batches(n: int, batch: int, rng: np.random.Generator):
    while True:
        order = rng.permutation(n)
        for i in range(0, n - batch + 1, batch):
            yield order[i:i + batch]


def _optimizers(kind: str, model: torch.nn.Module, cfg: Config) -> list[torch.optim.Optimizer]:
    tc = cfg.train
    if RECIPES[kind].pixel:
        return [torch.optim.Adam(model.parameters(), lr=tc.energy_lr, betas=(0.5, 0.999))]
    gen = [p for name, p in model.named_parameters() if not name.startswith("energy.")]
    return [torch.optim.Adam(gen, lr=tc.lr), torch.optim.Adam(model.energy.parameters(), lr=tc.energy_lr,
                                                               betas=(0.5, 0.999))]


def train_digits(kind: str, images: np.ndarray, iterations: int | None = None, seed: int = 0,
                 cfg: Config | None = None, progress: Progress | None = None) -> TrainResult:
    """Train one teaching model on ``images`` (N, H, W) in [0, 1] for ``iterations`` batches.

    Per iteration: LSD-EBM minimises ``loss_g`` (reconstruction + KL, encoder/decoder) and
    ``loss_e`` (diffusion recovery likelihood, energy) of Algorithm 1; LEBM keeps one persistent
    posterior chain per training image; the pixel EBM uses short-run negatives from noise.
    Adam for every network, learning rates decaying linearly to 5 % of their start.
    """
    cfg = cfg or digits_config(kind, images.shape[-1])
    if images.ndim != 3 or images.shape[1:] != (cfg.model.grid,) * 2:
        raise InputError(f"training images of shape {images.shape} do not match the {cfg.model.grid}^2 model grid")
    iterations = DEFAULT_ITERATIONS[kind] if iterations is None else int(iterations)
    torch.manual_seed(seed)
    model = build_teach_model(kind, cfg).train()
    data = torch.as_tensor(images, dtype=torch.float32)[:, None]
    g = torch.Generator().manual_seed(seed)
    batches = _batches(len(data), min(cfg.train.batch_size, len(data)), np.random.default_rng(seed))
    opts = _optimizers(kind, model, cfg)
    # learning rates decay linearly to 5 % over the run, so the final weights are not a noisy snapshot
    decays = [torch.optim.lr_scheduler.LambdaLR(o, lambda i: max(0.05, 1.0 - i / iterations)) for o in opts]
    schedule = make_schedule(cfg.schedule)
    recipe = RECIPES[kind]
    z_store = reference_latents(cfg, len(data), g) if recipe.persistent_latents else None
    last: dict = {}
    start = time.perf_counter()
    for it in range(1, iterations + 1):
        idx = next(batches)
        x = data[idx]
        out = recipe.step(model, x, schedule, cfg, g, z_store, idx)
        total = sum(v for k, v in out.items() if k.startswith("loss_"))
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        total.backward()
        for opt, decay in zip(opts, decays):
            opt.step()
            decay.step()
        last = {k: float(v.detach()) for k, v in out.items()}
        if not all(np.isfinite(v) for v in last.values()):
            raise InputError(f"{kind} training diverged at iteration {it} ({last}); lower the learning rate")
        if progress is not None:
            progress(it, iterations, last)
    model.eval()
    return TrainResult(model, iterations, time.perf_counter() - start, last)
