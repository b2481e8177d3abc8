"""Record a 3-D generation from noise (Algorithm 3) as an explorer trajectory (Qt-free).

``record_generation_run`` starts from z_T ~ N(0, I) and runs the whole reverse chain
(:func:`lsdebm.methods.generate_events`), so a teacher can scrub a vertebra emerging from noise
with the same t/k sliders and plots as a reconstruction. The trajectory has one forward frame,
z_T (``metadata["forward_start_t"] = T``), then every reverse step t = T-1 .. 0.
"""
from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import replace

import numpy as np

from lsdebm.errors import CheckpointError
from lsdebm.explore.record import RunOutput, _progress
from lsdebm.methods import RunSettings, generate_events, method_for
from lsdebm.nn.registry import kind_info
from lsdebm.runtime.checkpoint import LoadedCheckpoint
from lsdebm.sampling.trajectory import TrajectoryRecorder
from lsdebm.tasks.progress import Cancelled, Progress


def can_generate(ckpt: LoadedCheckpoint) -> bool:
    """Whether the checkpoint generates from noise through a diffusion chain (LSD-EBM)."""
    return kind_info(ckpt.kind).diffusion


def full_depth(ckpt: LoadedCheckpoint, settings: RunSettings) -> RunSettings:
    """``settings`` with the diffusion depth t* = T of the checkpoint (Algorithm 2 from pure noise level)."""
    T = method_for(ckpt.model).resolve(settings, generate=True).T
    return replace(settings, steps=T) if T is not None else settings


def record_generation_run(ckpt: LoadedCheckpoint, settings: RunSettings = RunSettings(), every: int = 1,
                          metadata: dict | None = None,
                          cancel: threading.Event | None = None) -> Generator[Progress, None, RunOutput]:
    """Generate ``settings.repeats`` volumes from noise, yielding progress, returning a :class:`RunOutput`.

    ``settings.steps`` is the start step (None: the checkpoint's T). The output's ``input`` is an
    empty volume (there is no input). Raises :class:`CheckpointError` for a model without a
    diffusion chain, :class:`Cancelled` when ``cancel`` is set.
    """
    if not can_generate(ckpt):
        raise CheckpointError(f"{ckpt.path}: only LSD-EBM generates from noise through a diffusion chain; "
                              f"this is a {ckpt.kind} checkpoint")
    model, start = ckpt.model, time.perf_counter()
    method = method_for(model)
    r = method.resolve(settings, generate=True)
    a, a_cum = method.chain_scales()
    recorder = TrajectoryRecorder(int(r.chain_length or 1), a, a_cum, every,
                                  {**(metadata or {}), "generated": True, "forward_start_t": int(r.steps)})
    total, done = method.n_events(r), 0
    for ev in generate_events(model, settings.repeats, settings):  # seeded by settings.seed
        if cancel is not None and cancel.is_set():
            raise Cancelled("generation cancelled")
        recorder(ev)
        done += 1
        yield _progress(ev, done, total, recorder.a)
    probs = recorder.result.probs[:, 0].float().cpu().numpy()
    grid = tuple(probs.shape[1:])
    return RunOutput(recorder.trajectory(), probs, np.zeros(grid, np.uint8), time.perf_counter() - start)


__all__ = ["can_generate", "full_depth", "record_generation_run"]
