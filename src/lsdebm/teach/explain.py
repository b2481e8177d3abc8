"""Short plain-words explanations for the teaching views, with the paper's equation numbers.

Each text is a few sentences a student can follow; the napari "Explain" panels show them
beside the views, and :func:`landscape_text` adds the numbers of the current step.
Equation numbers refer to the paper (reference/lsd-ebm-paper.txt): (1) forward diffusion,
(2) conditional energy-based model, (3) Langevin update, (4) its gradient, Algorithm 3
generation, Appendix F / Table 2 the 2D comparison, eq. (24) the Fréchet distance.
"""
from __future__ import annotations

TEXTS: dict[str, str] = {
    "generate": (
        "Generating digits from noise. Each column is one method, each small square one sample. "
        "Sliders (t, k): t is the diffusion step (only LSD-EBM has one), k the Langevin iteration of "
        "eq. (3), counted from 0. An iteration moves along -grad E and adds Gaussian noise, so it is "
        "not a descent: the energy can rise over k (see the energy plot). Langevin samples the "
        "Boltzmann distribution p ~ exp(-E): low energy is visited most, but the walk keeps moving. "
        "Digits should come out at t = 0 and the last k."),
    "ebm": (
        "EBM (pixel space). One energy E(x) scores whole images: low energy = looks like a digit. "
        "Sampling starts from random pixels and runs K Langevin steps (eq. (3) with the gradient of "
        "-E(x)) directly on the 256 pixels. There is a single long walk and no diffusion, which is "
        "why it is the hardest to train and the slowest to mix (Table 2, column EBM)."),
    "lebm": (
        "LEBM (latent EBM prior). A decoder turns a short latent vector z into an image, and an "
        "energy E(z) reshapes the Gaussian prior over z. Sampling runs Langevin steps on z only "
        "(a 16-number vector instead of 256 pixels), then decodes. Still one walk over one fixed, "
        "possibly rugged landscape."),
    "lsdebm": (
        "LSD-EBM (latent diffusion + EBM). The latent is first made noisier and noisier by eq. (1); "
        "generation walks back: start from z_T = pure noise and for t = T-1 down to 0 sample z_t "
        "given z_{t+1} from the conditional energy of eq. (2), with K Langevin steps (eqs. 3-4) "
        "each (Algorithm 3). Every small step only has to remove a little noise, so each "
        "landscape is smooth and easy to sample. The picture at step t decodes z_t as it is "
        "(still noisy at large t)."),
    "landscape": (
        "Energy landscape of one reverse step of eq. (2) for a toy with a 2-number latent (axes z1, z2). "
        "Dark = low energy = likely. The white ring marks z_{t+1}, the point we denoise from; dots are "
        "particles doing Langevin iterations (eq. (3)) as k grows from 0. The landscape is the learned "
        "energy E(y, t) plus a bowl ||y - z_{t+1}||^2 / (2 sigma_{t+1}^2); eq. (4) is the slope that "
        "pulls each particle and the noise of eq. (3) kicks it, so particles climb as well as fall and "
        "spread like exp(-U), not all at the lowest point. Change t to see the bowl tighten or widen."),
    "learned": (
        "Learned energy E(y, t) alone. This is what the network learned about where noisy latents "
        "at step t live: at small t the data modes are sharp, at large t they have melted into one "
        "blob. Without the bowl it does not depend on z_{t+1}: the same for every particle."),
    "quadratic": (
        "Quadratic term alone: ||y - z_{t+1}||^2 / (2 sigma_{t+1}^2), a round bowl around z_{t+1}. "
        "It says 'do not move far from where you are': with a small sigma_{t+1} the bowl is narrow "
        "and the step can only remove a little noise; with a large sigma_{t+1} it is wide and the "
        "learned energy decides. This term is what makes each step easy to sample (Sec. 3)."),
    "dfd": (
        "Digits Fréchet Distance (DFD). Real and generated digits are both passed through a small "
        "digits classifier shipped with this package; each set's features are summarised by a "
        "mean and a covariance, and the Fréchet distance between the two Gaussians is computed "
        "with the formula of eq. (24). Lower is better; a set compared with itself gives 0. It is "
        "NOT the Inception-based FID of Table 2, so compare its numbers only with each other."),
}


def explain(view: str) -> str:
    """The explanation text of ``view`` (one of ``TEXTS``)."""
    try:
        return TEXTS[view]
    except KeyError:
        raise KeyError(f"no explanation for {view!r}; known views: {', '.join(TEXTS)}") from None


def landscape_text(t: int, T: int, sigma: float, terms: str, k: int | None = None, K: int | None = None) -> str:
    """The landscape explanation for the current step, with sigma_{t+1} and what is drawn."""
    what = {"both": "the full conditional energy of eq. (2)", "learned": "the learned energy E(y, t) only",
            "quadratic": "the quadratic bowl only"}[terms]
    width = "narrow: particles can only move a little" if sigma < 0.2 else (
        "wide: the learned energy shapes the walk" if sigma > 0.6 else "medium")
    lines = [f"Step t = {t} of {T - 1}..0 (denoising z_{t + 1} -> z_{t}); sigma_{t + 1} = {sigma:.3f}, "
             f"so the bowl is {width}. Drawn: {what}."]
    if k is not None and K is not None:
        lines.append(f"Langevin iteration k = {k} of {K} (k = 0: where the walk starts, at z_{t + 1}).")
    key = "landscape" if terms == "both" else terms
    return "\n".join(lines) + "\n\n" + TEXTS[key]
