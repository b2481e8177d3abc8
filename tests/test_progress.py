"""The one long-job protocol: generators of Progress that return their result, closed to cancel."""
import dataclasses

import numpy as np
import pytest

from lsdebm.errors import LsdebmError
from lsdebm.methods import RunSettings
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.tasks.progress import Cancelled, Progress, drain


def _job(n, log):
    try:
        for i in range(n):
            yield Progress(i + 1, n, "step", {"i": i})
        return "result"
    finally:
        log.append("closed")


def test_progress_is_a_small_frozen_value():
    p = Progress(3, 4, "reverse")
    assert p.fraction == 0.75 and p.payload is None
    assert Progress(5, 4).fraction == 1.0 and Progress(0, 0).fraction == 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.done = 4


def test_drain_returns_the_result_and_reports_every_value():
    seen, log = [], []
    assert drain(_job(3, log), seen.append) == "result"
    assert [p.done for p in seen] == [1, 2, 3] and seen[-1].payload == {"i": 2} and log == ["closed"]


def test_should_stop_closes_the_job_and_raises_cancelled():
    seen, log = [], []
    job = _job(10, log)
    with pytest.raises(Cancelled):
        drain(job, seen.append, should_stop=lambda: len(seen) >= 2)
    assert len(seen) == 2 and log == ["closed"] and job.gi_frame is None
    assert issubclass(Cancelled, LsdebmError)


def test_the_explorer_cancel_is_the_same_class():
    from lsdebm.explore import RunCancelled

    assert RunCancelled is Cancelled


def test_every_long_job_yields_progress_and_returns_its_result(tiny_ckpts, tiny_pair):
    from lsdebm.explore import record_run
    from lsdebm.review.compare import Comparison, compare_events, load_compare_checkpoints
    from lsdebm.review.uncertainty import Uncertainty, uncertainty_job
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import ReconstructionResult, reconstruct_job

    lsd = load_checkpoint(tiny_ckpts["lsdebm"])
    affine = np.diag([8.0, 8.0, 8.0, 1.0])
    models = load_models("vae", str(tiny_ckpts["vae"]), reconnet=False)
    jobs = {
        "explorer": (record_run(lsd, tiny_pair[1], RunSettings(K=2, steps=1)), object),
        "compare": (compare_events(tiny_pair[1], affine, load_compare_checkpoints(
            {k: str(p) for k, p in tiny_ckpts.items()}), RunSettings(K=2, steps=1)), Comparison),
        "uncertainty": (uncertainty_job(lsd.model, tiny_pair[1].astype(np.float32), 2, RunSettings(K=2, steps=1)),
                        Uncertainty),
        "reconstruct": (reconstruct_job(models, tiny_pair[1], affine, acquisition=None), ReconstructionResult),
    }
    for name, (job, kind) in jobs.items():
        seen = []
        result = drain(job, seen.append)
        assert seen and all(isinstance(p, Progress) and 0 <= p.done <= p.total for p in seen), name
        assert isinstance(result, kind), name


def test_teaching_and_evaluation_jobs(tiny_ckpts, tiny_cfg):
    import torch

    from lsdebm.data.phantom_set import generate_pairs
    from lsdebm.evaluation.phantoms import EvalResult, evaluation_job, row_checkpoints
    from lsdebm.evaluation.rows import select_rows
    from lsdebm.nn import build_model
    from lsdebm.teach.generate import GenerationFrames, generation_job

    torch.manual_seed(0)
    teach_model = build_model("lsdebm", tiny_cfg.replace(**{"model.spatial_dims": 2}))
    seen = []
    frames = drain(generation_job(teach_model.eval(), 2, RunSettings(seed=0, K=2)), seen.append)
    assert isinstance(frames, GenerationFrames) and seen and seen[-1].done == len(seen)
    rows = select_rows(["raw", "reconnet"])
    checkpoints = row_checkpoints(rows, tiny_ckpts["reconnet"].parent)
    pairs = generate_pairs(3, 5, 16, 8.0)
    seen = []
    result = drain(evaluation_job(pairs, checkpoints, rows, batch_size=2, timing_cases=0), seen.append)
    assert isinstance(result, EvalResult) and [(p.done, p.total) for p in seen] == [(2, 3), (3, 3)]
