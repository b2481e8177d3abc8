"""Benchmark of the default reconstruction on real anatomy: one vertebra, and a lumbar spine.

What a user runs: ``lsdebm reconstruct`` on a real thick-slice mask with the bundled default
(ReconNet with its checkpoint's measurement-aware output), end to end: acquisition found from the
staircase, pose, crop, ReconNet, paste-back of probabilities, SlabNet at 1 mm and the projection
onto the observed slabs. Inputs are the shipped validation vertebrae at 1 mm, degraded by 5 mm
sagittal slabs; the spine is the five Visible Human vertebrae (L1-L5, in their positions in the
body) as one label map, and the same map placed in a body-sized field of view (400 x 400 x 500 at
1 mm, what a whole-body TotalSegmentator map holds). The same vertebrae on a finer grid
(``fine_spacing``, a CT's in-plane pixel; the output grid holds (1 / spacing)^3 times the voxels)
are timed too, without a target.
"""
from __future__ import annotations

import statistics
import time

import numpy as np

from lsdebm.data.real import degrade, isotropic, load_real_masks
from lsdebm.data.thickslice import ThickSliceParams
from lsdebm.evaluation.metrics import dice

SPINE_SUBJECT = "vhmale"
PARAMS = ThickSliceParams(plane="sagittal", thickness=5.0, gap=0.0, offset=1.5, inplane_blur=0.7,
                          noise_amplitude=0.2, noise_smoothness=3.0)


def spine_label_map(masks) -> tuple[np.ndarray, np.ndarray]:
    """One 1 mm label map (labels 20-24, VerSe L1-L5) holding every mask in its world position."""
    from lsdebm.data.frame import resample

    corners = []
    for m in masks:
        shape = np.array(m.mask.shape) - 1
        box = np.array(np.meshgrid(*[[0, s] for s in shape], indexing="ij")).reshape(3, -1)
        corners.append(m.affine[:3, :3] @ box + m.affine[:3, 3:4])
    world = np.concatenate(corners, axis=1)
    lo, hi = world.min(1) - 5, world.max(1) + 5
    affine = np.eye(4)
    affine[:3, 3] = lo
    shape = tuple(int(v) for v in np.ceil(hi - lo) + 1)
    labels = np.zeros(shape, np.uint8)
    for m in masks:
        inside = resample(m.mask.astype(np.float32), shape, affine, m.affine, 1) >= 0.5
        labels[inside] = 19 + int(m.level[1])
    return labels, affine


BODY_SHAPE = (400, 400, 500)
BODY_AT = (150, 130, 120)  # where the spine's map sits in it


def in_body(labels: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``labels`` placed at :data:`BODY_AT` in a :data:`BODY_SHAPE` map, the same voxels in the same world place."""
    body = np.zeros(BODY_SHAPE, labels.dtype)
    body[tuple(slice(a, a + n) for a, n in zip(BODY_AT, labels.shape))] = labels
    body_affine = np.array(affine, float)
    body_affine[:3, 3] -= body_affine[:3, :3] @ np.array(BODY_AT, float)
    return body, body_affine


def _timed(models, cases) -> list[dict]:
    from lsdebm.tasks.reconstruct import reconstruct_volume

    per = []
    for name, truth, affine, lq in cases:
        t0 = time.perf_counter()
        out = reconstruct_volume(models, lq, affine)
        per.append({"case": name, "seconds": time.perf_counter() - t0, "dice_in": dice(lq, truth),
                    "dice_out": dice(out.mask > 0, truth), "guided": out.provenance["guided"]})
    return per


def run(device: str = "cpu", n_vertebrae: int = 5, fine_spacing: float = 0.8) -> dict:
    """Time the default pipeline per vertebra (1 mm and ``fine_spacing`` grids) and on a whole lumbar spine;
    returns JSON-able results."""
    from lsdebm.bench.timing import environment
    from lsdebm.runtime.device import resolve_device
    from lsdebm.runtime.loading import load_models
    from lsdebm.tasks.reconstruct import reconstruct_volume

    dev = resolve_device(device)
    models = load_models(device=dev)
    rng = np.random.default_rng(0)
    masks = load_real_masks(split="val", levels=("L1", "L2", "L3", "L4", "L5"))[:n_vertebrae]
    cases, fine = [], []
    for m in masks:
        truth, affine = isotropic(m.mask, m.affine, 1.0, 10.0)
        cases.append((m.name, truth, affine, degrade(truth, affine, PARAMS, rng)))
    for m in masks:
        truth, affine = isotropic(m.mask, m.affine, fine_spacing, 10.0)
        fine.append((m.name, truth, affine, degrade(truth, affine, PARAMS, rng)))
    reconstruct_volume(models, cases[0][3], cases[0][2])  # warm-up (builds the fast network copies)
    per = _timed(models, cases)
    per_fine = _timed(models, fine)
    spine = [m for m in load_real_masks(levels=("L1", "L2", "L3", "L4", "L5")) if m.subject == SPINE_SUBJECT]
    labels, affine = spine_label_map(spine)
    lq = np.zeros_like(labels)
    for value in np.unique(labels[labels > 0]):
        lq[degrade((labels == value).astype(np.uint8), affine, PARAMS, rng) > 0] = value
    t0 = time.perf_counter()
    out = reconstruct_volume(models, lq, affine)
    spine_s = time.perf_counter() - t0
    body, body_affine = in_body(lq, affine)
    t0 = time.perf_counter()
    in_body_out = reconstruct_volume(models, body, body_affine)
    body_s = time.perf_counter() - t0
    inner = in_body_out.mask[tuple(slice(a, a + n) for a, n in zip(BODY_AT, lq.shape))]
    same = bool(np.array_equal(inner, out.mask) and (in_body_out.mask > 0).sum() == (inner > 0).sum())
    median = statistics.median(p["seconds"] for p in per)
    return {"environment": environment(dev), "per_vertebra": per, "per_vertebra_median_s": median,
            "fine_grid": {"spacing_mm": fine_spacing, "per_vertebra": per_fine,
                          "per_vertebra_median_s": statistics.median(p["seconds"] for p in per_fine)},
            "spine": {"shape": list(labels.shape), "labels": out.labels, "seconds": spine_s},
            "spine_in_body": {"shape": list(BODY_SHAPE), "seconds": body_s, "same_result_as_spine": same},
            "targets": [{"target": "one vertebra end to end [s]", "measured": median, "limit": 1.0,
                         "met": median <= 1.0},
                        {"target": "lumbar spine L1-L5 end to end [s]", "measured": spine_s, "limit": 10.0,
                         "met": spine_s <= 10.0},
                        {"target": "the same spine in a whole-body field of view [s]", "measured": body_s,
                         "limit": 10.0, "met": body_s <= 10.0}]}
