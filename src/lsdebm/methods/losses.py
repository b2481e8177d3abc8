"""Training objectives. Each returns a dict of scalar losses; the loop does the optimiser steps.

LSD-EBM (Algorithm 1, eqs. 16-17): the encoder/decoder minimise the reconstruction NLL plus the
encoder term; the energy minimises E(z_t^+, t) - E(tilde z_t^-, t) on detached latents, where
the negative comes from the conditional Langevin sampler of eq. (3). The EBM sends no gradient
to the encoder/decoder (as in the paper and the authors' code).
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from lsdebm.nn.autoencoder import reparameterize
from lsdebm.nn.lebm import reference_latents
from lsdebm.sampling import kernels
from lsdebm.sampling.langevin import langevin
from lsdebm.sampling.lebm import posterior_energy, prior_energy
from lsdebm.sampling.reverse import conditional_energy
from lsdebm.sampling.schedule import Schedule


def bce_sum(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """-log p(x|z) of the per-voxel Bernoulli decoder, summed over voxels, mean over batch."""
    return F.binary_cross_entropy_with_logits(logits.float(), x.float(), reduction="sum") / x.shape[0]


def dice_loss(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ``1 - soft Dice`` (smoothed by 1) of probabilities against a binary mask."""
    p, t = probs.flatten(1), target.float().flatten(1)
    return 1 - (2 * (p * t).sum(1) + 1) / (p.sum(1) + t.sum(1) + 1)


def recon_loss(cfg, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Decoder loss: summed BCE, plus ``loss.dice_weight * (1 - soft Dice) * |x|`` per sample.

    The Dice term is scaled by each sample's foreground voxel count so it is on the scale of the
    summed BCE; ``dice_weight=0`` (paper, reference) leaves the pure Bernoulli NLL.
    """
    loss = bce_sum(logits, x)
    w = cfg.loss.dice_weight
    if w > 0:
        fg = x.float().flatten(1).sum(1)
        loss = loss + w * (dice_loss(torch.sigmoid(logits.float()), x) * fg).mean()
    return loss


def encoder_term(cfg, mu: torch.Tensor, logvar: torch.Tensor, z0: torch.Tensor) -> torch.Tensor:
    """KL(q(z0|x) || N(0, I)) * kl_weight (ours), or the authors' entropy-like term (reference)."""
    b = mu.shape[0]
    if cfg.loss.encoder_loss == "kl":
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return cfg.loss.kl_weight * kl / b
    # authors (docs/reference-code.md §4.3): sum(logvar + 0.5 * ((z0 - mu) / exp(logvar))^2)
    return torch.sum(logvar + 0.5 * ((z0 - mu) / torch.exp(logvar)).pow(2)) / b


def vae_loss(model, x: torch.Tensor, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    mu, logvar = model.encoder(x)
    z0 = reparameterize(mu, logvar, generator)
    recon = recon_loss(model.cfg, model.decoder(z0), x)
    enc = encoder_term(model.cfg, mu, logvar, z0)
    return {"loss_g": recon + enc, "recon": recon.detach(), "encoder": enc.detach()}


def reconnet_loss(model, lq: torch.Tensor, hq: torch.Tensor) -> dict[str, torch.Tensor]:
    """Mean BCE + soft Dice of the U-Net output against the high-quality mask."""
    logits = model(lq)
    dice = dice_loss(torch.sigmoid(logits), hq)
    loss = F.binary_cross_entropy_with_logits(logits, hq) + dice.mean()
    return {"loss_g": loss, "dice_loss": dice.mean().detach()}


def ebm_pairs(schedule: Schedule, z0: torch.Tensor, generator: torch.Generator | None):
    """Draw t ~ U{0..T-1}, z_t ~ q(z_t|z_0) and z_{t+1} ~ q(z_{t+1}|z_t) per sample."""
    b = z0.shape[0]
    t = torch.randint(0, schedule.T, (b,), generator=generator, device=z0.device)
    tn = t.cpu().numpy()
    col = lambda arr: torch.as_tensor(arr[tn], dtype=z0.dtype, device=z0.device)[:, None]  # noqa: E731
    f = schedule.forward_noise_factor
    eps = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    z_t = col(schedule.a_cum) * z0 + f * col(schedule.sigma_cum) * eps
    eps2 = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    a_next, sigma_next = col(schedule.a[1:]), col(schedule.sigma[1:])
    z_next = a_next * z_t + f * sigma_next * eps2
    return t, z_t, z_next, a_next, sigma_next


def energy_loss(model, z0: torch.Tensor, schedule: Schedule, K: int,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Diffusion-recovery-likelihood loss of the time-conditioned energy (Algorithm 1)."""
    cfg = model.cfg
    z0 = z0.detach()
    t, z_t, z_next, a_next, sigma_next = ebm_pairs(schedule, z0, generator)
    U = conditional_energy(model.energy, z_next, t, sigma_next.squeeze(1))
    if cfg.langevin.init == "z_tilde":
        y0 = z_next
    else:
        y0 = torch.randn(z0.shape, generator=generator, device=z0.device, dtype=z0.dtype)
    y_neg = kernels.sample(U, y0, K, cfg.langevin.step_size, cfg.langevin.noise_scale, generator)
    e_pos = model.energy(a_next * z_t, t)
    e_neg = model.energy(y_neg, t)
    per_sample = e_pos - e_neg + cfg.loss.energy_reg * (e_pos.pow(2) + e_neg.pow(2))
    w = (float(schedule.sigma[1]) / sigma_next.squeeze(1))
    if cfg.loss.loss_weighting == "per_sample":
        loss = (per_sample * w).mean()
    else:  # authors' broadcast bug: mean(loss) * mean(w)
        loss = per_sample.mean() * w.mean()
    return {"loss_e": loss, "e_pos": e_pos.mean().detach(), "e_neg": e_neg.mean().detach()}


def lsdebm_loss(model, x: torch.Tensor, schedule: Schedule, K: int,
                generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Both objectives of one LSD-EBM iteration: ``loss_g`` (enc+dec) and ``loss_e`` (energy)."""
    mu, logvar = model.encoder(x)
    z0 = reparameterize(mu, logvar, generator)
    recon = recon_loss(model.cfg, model.decoder(z0), x)
    enc = encoder_term(model.cfg, mu, logvar, z0)
    out = {"loss_g": recon + enc, "recon": recon.detach(), "encoder": enc.detach()}
    with torch.autocast(z0.device.type, enabled=False):  # Langevin gradients in float32 under --amp
        out.update(energy_loss(model, z0.float(), schedule, K, generator))
    return out


def lebm_loss(model, x: torch.Tensor, z_init: torch.Tensor, generator: torch.Generator | None = None,
              posterior_steps: int | None = None) -> dict[str, torch.Tensor]:
    """LEBM (Pang et al. 2020): posterior and prior Langevin, then generator and energy losses.

    ``z_init`` starts the posterior chain (noise, or a persistent per-sample latent); the
    returned ``z_post`` may be stored for the next epoch.
    """
    c = model.cfg.lebm
    steps = c.posterior_steps if posterior_steps is None else posterior_steps
    z_post = langevin(posterior_energy(model, x), z_init, steps, c.posterior_step_size, 1.0, generator)
    z_prior0 = reference_latents(model.cfg, z_init.shape[0], generator, x.device, x.dtype)
    z_prior = langevin(prior_energy(model), z_prior0, c.prior_steps, c.prior_step_size, 1.0, generator)
    recon = recon_loss(model.cfg, model.decoder(z_post), x)
    e_post, e_prior = model.energy(z_post), model.energy(z_prior)
    reg = model.cfg.loss.energy_reg * (e_post.pow(2) + e_prior.pow(2)).mean()  # keeps E bounded (0 = off)
    loss_e = e_post.mean() - e_prior.mean() + reg
    return {"loss_g": recon, "loss_e": loss_e, "recon": recon.detach(), "z_post": z_post.detach()}
