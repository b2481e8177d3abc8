"""Pixel-space EBM baseline (the "EBM" column of the paper's Table 2, Appendix F).

An energy E(x) over whole images, p(x) ∝ exp(-E(x)), sampled by the same Langevin function as
everything else (``lsdebm.sampling.langevin_iter``, the update of eq. 3 with the gradient of
-E instead of eq. 4) starting from uniform noise. Trained as a short-run EBM (Nijkamp et al.
2019): the negatives are K Langevin steps from fresh noise, the loss is E(x+) - E(x-) plus
``cfg.loss.energy_reg * (E(x+)^2 + E(x-)^2)``. The network has no batch norm (it would make
the energy of one image depend on the others in the batch).

Its settings come from an ordinary :class:`lsdebm.config.Config`: ``model.grid``,
``model.channels``, ``langevin.K``, ``langevin.step_size`` and ``langevin.noise_scale``.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

from lsdebm.config import Config
from lsdebm.methods import RunSettings
from lsdebm.nn.blocks import conv
from lsdebm.sampling.events import Event, LangevinEvent, ResultEvent, StepEvent
from lsdebm.sampling.langevin import langevin_iter


class PixelEBM(nn.Module):
    """E(x): stride-2 convolutions with SiLU (smooth gradients for Langevin), then a Linear to one number."""

    kind = "pixel_ebm"

    def __init__(self, cfg: Config) -> None:
        super().__init__()
        self.cfg = cfg
        d, ch = cfg.model.spatial_dims, cfg.model.channels
        layers: list[nn.Module] = [conv(d, 1, ch[0]), nn.SiLU()]
        for cin, cout in zip(ch[:-1], ch[1:]):
            down = (nn.Conv3d if d == 3 else nn.Conv2d)(cin, cout, 4, stride=2, padding=1)
            layers += [down, nn.SiLU()]
        layers += [nn.Flatten(), nn.Linear(ch[-1] * cfg.model.bottleneck ** d, 1)]
        self.net = nn.Sequential(*layers)

    def energy(self, x: torch.Tensor) -> torch.Tensor:
        """Per-image energy (B,) of images (B, 1, *grid); lower is more probable."""
        return self.net(x).squeeze(1)

    forward = energy


def start_noise(model: PixelEBM, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Uniform noise images in [0, 1], shape (n, 1, *grid): where every chain starts."""
    m = model.cfg.model
    device = next(model.parameters()).device
    return torch.rand((n, 1) + (m.grid,) * m.spatial_dims, generator=generator, device=device)


def pixel_langevin_iter(model: PixelEBM, x: torch.Tensor, K: int | None = None, step_size: float | None = None,
                        noise_scale: float | None = None, generator: torch.Generator | None = None):
    """Langevin states on pixels: x <- x - step/2 grad E(x) + sqrt(step) * noise_scale * N(0, I)."""
    lc = model.cfg.langevin
    return langevin_iter(model.energy, x, lc.K if K is None else K, lc.step_size if step_size is None else step_size,
                         lc.noise_scale if noise_scale is None else noise_scale, generator)


def pixel_generate_events(model: PixelEBM, n: int, settings: RunSettings = RunSettings(),
                          generator: torch.Generator | None = None) -> Iterator[Event]:
    """Generate ``n`` images from uniform noise as events (phase ``prior``, t = 0, k = 1..K).

    Latents in the events are the flattened images (n, pixels) so trajectory recorders treat the
    pixel EBM like the latent models; the result holds the images clipped to [0, 1].
    """
    if generator is None:
        generator = torch.Generator(device=next(model.parameters()).device).manual_seed(int(settings.seed))
    x = start_noise(model, n, generator)
    shape = x.shape
    yield StepEvent("encode", 0, x.flatten(1))
    step = model.cfg.langevin.step_size if settings.step_size is None else settings.step_size
    for st in pixel_langevin_iter(model, x, settings.K, step, settings.noise_scale, generator):
        x = st.z
        yield LangevinEvent("prior", 0, st.k, x.flatten(1), st.energy, st.grad_norm, step)
    yield ResultEvent(x.detach().flatten(1), x.detach().clamp(0.0, 1.0).reshape(shape))


def pixel_ebm_loss(model: PixelEBM, x: torch.Tensor, generator: torch.Generator | None = None,
                   data_noise: float = 0.02) -> dict[str, torch.Tensor]:
    """Short-run contrastive loss; ``data_noise`` adds a little Gaussian noise to the positives."""
    x_neg = start_noise(model, x.shape[0], generator)
    for st in pixel_langevin_iter(model, x_neg, generator=generator):
        x_neg = st.z
    x_pos = x + data_noise * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    e_pos, e_neg = model.energy(x_pos), model.energy(x_neg.detach())
    reg = model.cfg.loss.energy_reg * (e_pos.pow(2) + e_neg.pow(2)).mean()
    loss = e_pos.mean() - e_neg.mean() + reg
    return {"loss_e": loss, "e_pos": e_pos.mean().detach(), "e_neg": e_neg.mean().detach()}
