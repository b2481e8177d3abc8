"""One vocabulary for every view of a sampler: diffusion step t, Langevin iteration k, what is drawn.

* ``t`` is always the paper's diffusion step (z_t of eq. 1): forward frames are "forward t=…"
  (z_0 is the encoding, z_T pure noise), reverse frames "reverse t=…" (the step that produces
  z_t from z_{t+1}, eqs. 2-4). A frame *index* s only orders frames for a slider.
* ``k`` is the Langevin iteration of eq. (3) counted from 0: iteration k takes z^k to z^{k+1};
  a recorded frame at k shows the latent after iteration k, and its energy is U(z^k), where the
  iteration started (what the sampler computed). Recorded iterations are ``k_values - 1``.
* Sliders are ordered (t, k) everywhere.

Plots, slider captions and the canvas overlay all call these functions, so they agree.
"""
from __future__ import annotations

import numpy as np

from lsdebm.sampling import Trajectory

SEPARATOR = " · "
SHOWN = {False: "decoded current latent z_t", True: "decoded predicted-clean latent z_t / ā_t"}


def frame_name(traj: Trajectory, s: int) -> str:
    """``forward t=2`` or ``reverse t=1``: the diffusion step shown at frame index ``s``."""
    phase, t = traj.frame_info(int(s))
    return f"{phase} t={t}"


def frame_names(traj: Trajectory) -> list[str]:
    """:func:`frame_name` of every frame, in slider order."""
    return [frame_name(traj, s) for s in range(traj.n_frames)]


def k_numbers(traj: Trajectory) -> np.ndarray:
    """Recorded Langevin iterations counted from 0 (the x values of the energy plots)."""
    return np.asarray(traj.k_values, dtype=np.int64) - 1


def k_number(traj: Trajectory, k_index: int) -> int:
    """Langevin iteration (from 0) recorded at slider index ``k_index`` (0 when nothing was recorded)."""
    if traj.n_k == 0:
        return 0
    return int(k_numbers(traj)[int(np.clip(k_index, 0, traj.n_k - 1))])


def k_text(traj: Trajectory, k_index: int) -> str:
    """``k=12/49``: iteration k (from 0) of 0..K-1."""
    last = int(traj.k_values[-1]) - 1 if traj.n_k else 0
    return f"k={k_number(traj, k_index)}/{last}"


def position_text(traj: Trajectory, s: int, k_index: int) -> str:
    """``reverse t=1 · k=12/49`` (forward frames have no Langevin iterations, so no k)."""
    phase, _ = traj.frame_info(int(s))
    parts = [frame_name(traj, s)]
    if phase == "reverse" and traj.n_k:
        parts.append(k_text(traj, k_index))
    return SEPARATOR.join(parts)


def canvas_text(method: str, traj: Trajectory, s: int, k_index: int, clean: bool = False) -> str:
    """What the canvas shows, e.g. ``LSD-EBM · reverse t=1 · k=12/49 · decoded current latent z_t``."""
    return SEPARATOR.join([method, position_text(traj, s, k_index), SHOWN[bool(clean)]])


def result_text(method: str, traj: Trajectory, seconds: float) -> str:
    """What a finished run recorded, for a status line: the frames to scrub, or the one latent a VAE decodes."""
    if traj.n_frames * traj.n_k == 1:
        return f"{method}: one decoded latent in {seconds:.1f} s (no sampling chain to scrub; other layers hidden)"
    return (f"{method}: {traj.n_frames} frames × {traj.n_k} recorded iterations in {seconds:.1f} s; scrub with the "
            "t and k sliders (other layers hidden)")


__all__ = ["SHOWN", "canvas_text", "frame_name", "frame_names", "k_number", "k_numbers", "k_text",
           "position_text", "result_text"]
