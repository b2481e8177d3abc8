"""One kind table (nn.registry), one Method per kind, one event count, one settings resolution."""
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from lsdebm.config import MODEL_KINDS
from lsdebm.explore import count_events, make_settings, run_metadata
from lsdebm.explore.record import METHODS as EXPLORER_METHODS
from lsdebm.methods import METHOD_CLASSES, Resolved, RunSettings, generate_events, method_for, resolve, run_events
from lsdebm.nn import build_model
from lsdebm.nn.registry import KINDS, LABELS, REFINEMENT_KINDS
from lsdebm.review.compare import LABELS as COMPARE_LABELS
from lsdebm.review.compare import planned_events
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.tasks.reconstruct import effective_settings

ROOT = Path(__file__).resolve().parents[1]
# the modules the review found branching on kind strings; they now ask the registry or the method
BRANCH_FREE = ["src/lsdebm/explore", "src/lsdebm/review", "src/lsdebm/tasks", "src/lsdebm/cli", "src/lsdebm/train",
               "src/lsdebm/runtime/loading.py", "src/lsdebm/teach/generate.py", "plugin/napari_lsdebm"]
KIND_BRANCH = re.compile(r"""\.kind\s*(==|!=|in\b|not in\b)|kind\s*(==|!=)\s*["'](lsdebm|vae|lebm|reconnet)["']""")


def test_registry_is_the_only_kind_table(tiny_cfg):
    assert tuple(KINDS) == MODEL_KINDS
    assert set(METHOD_CLASSES) == set(KINDS)
    for kind, info in KINDS.items():
        assert type(build_model(kind, tiny_cfg)) is info.network
        assert METHOD_CLASSES[kind].kind == kind
    assert EXPLORER_METHODS == {k: LABELS[k] for k in REFINEMENT_KINDS}
    assert all(COMPARE_LABELS[k] == LABELS[k] for k in KINDS)


def test_no_kind_branches_outside_registry_and_methods():
    files = [p for entry in BRANCH_FREE for p in ([ROOT / entry] if entry.endswith(".py")
                                                   else sorted((ROOT / entry).rglob("*.py")))]
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in files
            for i, line in enumerate(p.read_text().splitlines(), 1)
            if KIND_BRANCH.search(line) and "dtype.kind" not in line]
    assert not hits, "\n".join(hits)


@pytest.mark.parametrize("kind", ["lsdebm", "vae", "lebm", "reconnet"])
def test_n_events_is_what_runs_emit(kind, tiny_ckpts, tiny_pair):
    ckpt = load_checkpoint(tiny_ckpts[kind])
    x = torch.as_tensor(tiny_pair[1]).float()
    settings = make_settings(kind, 2, 3, None, seed=1, repeats=2)
    emitted = len(list(run_events(ckpt.model, x, settings)))
    method = method_for(ckpt.model)
    assert method.n_events(method.resolve(settings)) == emitted
    if kind in REFINEMENT_KINDS:  # explorer progress and compare progress count the same events
        assert count_events(ckpt.model, settings) == emitted
        s, planned = planned_events(ckpt.model, settings)
        assert planned == len(list(run_events(ckpt.model, x, s)))
    if kind != "reconnet":
        r = method.resolve(settings, generate=True)
        assert method.n_events(r) == len(list(generate_events(ckpt.model, 2, settings)))


def test_resolved_is_frozen_and_what_provenance_records(tiny_ckpts):
    for kind in ("lsdebm", "lebm", "vae"):
        ckpt = load_checkpoint(tiny_ckpts[kind])
        settings = make_settings(kind, 1, 2, 0.01, seed=4)
        r = resolve(ckpt.model, settings)
        assert isinstance(r, Resolved)
        with pytest.raises(dataclasses.FrozenInstanceError):
            r.steps = 5
        assert effective_settings(ckpt.model, settings) == r.record()
        assert run_metadata(ckpt, settings)["settings"] == r.record()
    lsd = load_checkpoint(tiny_ckpts["lsdebm"]).model
    r = resolve(lsd, RunSettings())
    lang = lsd.cfg.langevin
    assert (r.steps, r.K, r.step_size, r.T) == (lang.recon_steps, lang.K, lang.step_size, lsd.cfg.schedule.T)
    assert r.record() == {"repeats": 1, "seed": 0, "use_mean": True, "steps": lang.recon_steps, "K": lang.K,
                          "step_size": lang.step_size, "noise_scale": lang.noise_scale, "init": lang.init,
                          "T": lsd.cfg.schedule.T}


def test_resolve_refuses_a_depth_beyond_T(tiny_ckpts):
    from lsdebm.errors import InputError

    lsd = load_checkpoint(tiny_ckpts["lsdebm"]).model
    with pytest.raises(InputError, match="outside 0.."):
        resolve(lsd, RunSettings(steps=lsd.cfg.schedule.T + 1))
    assert np.isfinite(resolve(lsd, RunSettings(steps=0)).step_size)
