"""Trajectory plots drawn on matplotlib Axes handed in by the caller (no backend chosen here).

* :func:`draw_variance`: variance across latent coordinates per frame over the forward and
  reverse process, one trace per repeat (the paper's Fig. 5).
* :func:`draw_langevin`: energy U of eq. (2) and |grad U| over the Langevin iterations
  (eqs. 3-4) of one reverse step t.

The explorer dock (Qt canvas) and ``lsdebm demo`` (PNG) share these functions.
"""
from __future__ import annotations

import numpy as np

from lsdebm.explore.vocabulary import frame_names, k_numbers
from lsdebm.sampling import Trajectory


def frame_labels(traj: Trajectory) -> list[str]:
    """Tick label per frame: ``t=0 .. t=t*`` forward, then ``t=t*-1 .. t=0`` reverse (the diffusion step)."""
    return [name.split(" ")[1] for name in frame_names(traj)]


def draw_variance(ax, traj: Trajectory):
    """Latent variance per frame (x: frame s), repeats as separate traces; returns the cursor line."""
    var = traj.process_variance()
    frames = np.arange(traj.n_frames)
    for r in range(var.shape[0]):
        ax.plot(frames, var[r], marker=".", lw=1.2, label=f"repeat {r}" if var.shape[0] > 1 else None)
    n_fwd = traj.forward.shape[1]
    if traj.depth:
        ax.axvspan(n_fwd - 0.5, traj.n_frames - 0.5, color="tab:orange", alpha=0.08, lw=0)
        ax.text(0.99, 0.03, "reverse", transform=ax.transAxes, ha="right", va="bottom", fontsize=8)
    ax.text(0.01, 0.03, "forward", transform=ax.transAxes, ha="left", va="bottom", fontsize=8)
    step = max(1, traj.n_frames // 12)
    ax.set_xticks(frames[::step], frame_labels(traj)[::step], fontsize=7)
    ax.set_xlim(-0.5, traj.n_frames - 0.5)
    ax.set_xlabel("diffusion step t (forward, then reverse)")
    ax.set_ylabel("latent variance (latent units²)")
    if var.shape[0] > 1:
        ax.legend(fontsize=7, loc="best")
    return ax.axvline(0, color="tab:red", lw=1.2)


def langevin_series(traj: Trajectory, s: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(k from 0, energy (R, k), grad norm (R, k)) of the reverse step at frame ``s``; None if forward."""
    phase, t = traj.frame_info(s)
    if phase == "forward" or traj.n_k == 0:
        return None
    return k_numbers(traj), traj.energy[:, t], traj.grad_norm[:, t]


GUIDED_STYLES = (("total (guided)", "black", "-", 1.2), ("prior E", "tab:blue", "--", 1.0),
                 ("data λ·D", "tab:green", ":", 1.0))


def draw_guided(ax, traj: Trajectory, k_last: int) -> int:
    """The measurement-guided iterations after the chain: prior part, data part and their sum.

    They follow the chain on the same axis (a few iterations after hundreds, at its right edge), and an inset
    magnifies them so the split between the prior and the data term can be read. Returns the last iteration
    number drawn (``k_last`` + number of guided iterations).
    """
    split = traj.guided_energy  # (repeat, j, 2): prior, weighted data term
    k = k_last + np.arange(1, split.shape[1] + 1)
    series = (split[0, :, 0] + split[0, :, 1], split[0, :, 0], split[0, :, 1])
    ax.axvspan(k_last + 0.5, k[-1] + 0.5, color="tab:green", alpha=0.08, lw=0)
    for values, (label, color, style, width) in zip(series, GUIDED_STYLES):
        ax.plot(k, values, color=color, lw=width, ls=style, label=label)
    lo, hi = _data_range(ax)
    ax.set_ylim(lo - 0.05 * (hi - lo), lo + (hi - lo) / GUIDED_DATA_SHARE)  # the curves low, the upper part free
    inset = ax.inset_axes(GUIDED_INSET)  # upper left, above every curve; the legend beside it
    for values, (label, color, style, width) in zip(series, GUIDED_STYLES):
        inset.plot(k, values, color=color, lw=width, ls=style, marker=".", ms=3)
    inset.set_title("guided, magnified", fontsize=6, pad=2)
    inset.set_xticks(k)
    inset.tick_params(labelsize=6, length=2, pad=1)
    inset.set_facecolor((0.94, 0.98, 0.94))
    ax.legend(fontsize=6, loc="upper right", handlelength=1.4, borderpad=0.3, labelspacing=0.25, framealpha=0.9)
    return int(k[-1])


GUIDED_DATA_SHARE = 0.55  # of the energy axes' height, the chain and the guided curves take the lower part
GUIDED_INSET = (0.06, 0.58, 0.4, 0.32)  # axes fractions (x, y, width, height): upper left, over no curve


def _data_range(ax) -> tuple[float, float]:
    """The smallest and largest y value of the lines drawn on ``ax``."""
    values = np.concatenate([np.asarray(line.get_ydata(), float).ravel() for line in ax.get_lines()])
    values = values[np.isfinite(values)]
    lo, hi = (float(values.min()), float(values.max())) if values.size else (0.0, 1.0)
    return lo, hi if hi > lo else lo + 1.0


def update_langevin(ax_energy, ax_grad, traj: Trajectory, s: int, shown: int) -> bool:
    """Move the curves drawn by :func:`draw_langevin` for frame ``shown`` to frame ``s`` in place.

    Much cheaper than clearing the axes and drawing anew (what a slider step along t would
    otherwise cost). Only possible between two reverse frames without the guided iterations
    (t = 0 may add them); returns False, changing nothing, when it is not.
    """
    series, before = langevin_series(traj, s), langevin_series(traj, shown)
    if series is None or before is None or traj.guided_energy.size:
        return False
    k, energy, grad = series
    lines = (ax_energy.get_lines()[:-1], ax_grad.get_lines()[:-1])  # the last line is the cursor
    if len(lines[0]) != energy.shape[0] or len(lines[1]) != grad.shape[0]:
        return False
    for ax, ax_lines, values in ((ax_energy, lines[0], energy), (ax_grad, lines[1], grad)):
        for line, row in zip(ax_lines, values):
            line.set_data(k, row)
        ax.relim(visible_only=True)
        ax.autoscale_view(scalex=False)
    ax_energy.set_title(f"reverse t={traj.frame_info(s)[1]}: energy where iteration k starts", fontsize=8)
    return True


def draw_langevin(ax_energy, ax_grad, traj: Trajectory, s: int):
    """Energy and gradient norm over the Langevin iterations at frame ``s``; returns the two cursors."""
    series = langevin_series(traj, s)
    phase, t = traj.frame_info(s)
    for ax, ylabel in ((ax_energy, "energy U (a.u.)"), (ax_grad, "|grad U| (a.u.)")):
        ax.set_ylabel(ylabel)
        ax.set_xlabel("Langevin iteration k", fontsize=8)  # k counts from 0, as the ticks show; short in a narrow dock
        if series is None:
            ax.text(0.5, 0.5, f"forward t={t}: no Langevin iterations", transform=ax.transAxes,
                    ha="center", va="center", fontsize=8)
    if series is not None:
        k, energy, grad = series
        for r in range(energy.shape[0]):
            ax_energy.plot(k, energy[r], lw=1)
            ax_grad.plot(k, grad[r], lw=1)
        ax_energy.set_title(f"reverse t={t}: energy where iteration k starts", fontsize=8)
        last = k[-1]
        if t == 0 and traj.guided_energy.size:
            last = draw_guided(ax_energy, traj, k[-1])
        for ax in (ax_energy, ax_grad):
            ax.set_xlim(k[0] - 0.5, last + 0.5)
    x0 = k_numbers(traj)[0] if traj.n_k else 0
    return ax_energy.axvline(x0, color="tab:red", lw=1.2), ax_grad.axvline(x0, color="tab:red", lw=1.2)
