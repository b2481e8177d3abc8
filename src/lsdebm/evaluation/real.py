"""Table 1 on real anatomy: real vertebra masks degraded by the thick-slice simulator.

Protocol (docs/evaluation.md, "Real anatomy"): every complete real high-quality (HQ) mask of
the chosen split and levels is resampled to 1 mm isotropic (``truth_spacing``; :func:`lsdebm.data.real.isotropic`,
10 mm padding) -- the *truth*. For every plane and slice thickness it is degraded once with
:data:`REAL_SIMULATOR` (slab offset uniform in [0, thickness), drawn from the seed and the
case, so a case is the same whatever else is selected). A case comes in one or two *forms*:

* ``truth``: the low-quality (LQ) mask on the truth's grid (a staircase);
* ``native``: the same LQ on its own thick-slice grid -- one sample per slab, taken at the slab
  centre, spacing = thickness along the slab axis (:func:`lsdebm.data.real.slab_axis`),
  in-plane unchanged. Its reconstruction is written straight onto the truth's grid.
* ``original``: the same LQ resampled (nearest) onto the HQ mask's *own* grid (e.g. VerSe's
  1 x 1 x 2 mm, padded like the truth) and scored there against the mask itself -- what a user
  whose ground truth lives on a CT grid sees.

Every row of :data:`lsdebm.evaluation.rows.ROWS` is scored on the truth grid (the ``original`` form on the
mask's own grid) with :func:`lsdebm.evaluation.metrics.compute_metrics` at that grid's spacing; ``raw`` is the
input itself (a native input resampled onto the truth grid by nearest neighbour).

``simulator`` = a :class:`lsdebm.evaluation.second_simulator.SecondSimulator` degrades the same
truths with a simulator written apart from the product's (``lsdebm evaluate --real --simulator
second``): a robustness check that the gains are not tied to the simulator the models saw.
"""
from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from lsdebm.data.real import degrade, isotropic, load_real_masks, slab_axis
from lsdebm.data.thickslice import PLANE_AXES, ThickSliceParams, slab_weights
from lsdebm.errors import InputError
from lsdebm.evaluation.metrics import METRIC_NAMES, compute_metrics
from lsdebm.evaluation.phantoms import EvalResult, column_stats
from lsdebm.evaluation.rows import Row
from lsdebm.evaluation.second_simulator import SecondSimulator
from lsdebm.methods import RunSettings
from lsdebm.runtime.loading import Models
from lsdebm.tasks.progress import Job, Progress, drain
from lsdebm.tasks.reconstruct import reconstruct_volume, resample_labels

#: The product's "real evaluation" simulator settings (plane, thickness and offset vary per case):
#: no gap, a light in-plane blur (0.7 mm), mild smooth boundary noise (amplitude 0.2,
#: correlation 3 mm), threshold 0.5, nearest-slab resampling (staircase).
REAL_SIMULATOR = {"gap": 0.0, "inplane_blur": 0.7, "noise_amplitude": 0.2, "noise_smoothness": 3.0,
                  "threshold": 0.5, "interpolation": "nearest"}
FORMS = ("truth", "native", "original")
LUMBAR = ("L1", "L2", "L3", "L4", "L5")
PAD_MM = 10.0
SPACING_MM = 1.0
#: The truth grids :func:`real_cases` makes (``truth_spacing``, mm): CT pixels to TotalSegmentator's 1.5 mm and more.
TRUTH_SPACINGS_MM = (0.3, 3.0)
GROUPS = ("subject", "plane", "thickness", "form")
COLUMNS = tuple(METRIC_NAMES) + ("seconds",)


@dataclass
class RealCase:
    """One degraded real vertebra: the input (``lq`` on ``affine``) and the truth grid it is scored on."""

    name: str
    mask: str
    subject: str
    level: str
    plane: str
    thickness: float
    form: str
    lq: np.ndarray
    affine: np.ndarray
    truth: np.ndarray
    truth_affine: np.ndarray
    params: ThickSliceParams | SecondSimulator

    def record(self) -> dict:
        """The case's identifying fields (one row of ``real_cases.csv`` without the metrics)."""
        return {"case": self.name, "mask": self.mask, "subject": self.subject, "level": self.level, "plane": self.plane,
                "thickness": self.thickness, "form": self.form}


def check_protocol(planes: Sequence[str], thicknesses: Sequence[float], forms: Sequence[str],
                   split: str | None = "val", truth_spacing: float = SPACING_MM) -> None:
    """Raise a one-line :class:`InputError` for an unknown plane/form, a thickness outside 1-10 mm or thinner than the
    truth grid's voxels, a truth spacing outside :data:`TRUTH_SPACINGS_MM`, a plane, thickness or form given twice,
    or an empty split."""
    lo, hi = TRUTH_SPACINGS_MM
    if not lo <= truth_spacing <= hi:  # NaN too
        raise InputError(f"truth spacing {truth_spacing:g} mm is outside {lo:g}-{hi:g} mm")
    if split is not None and not str(split).strip():
        raise InputError("--split is empty; expected a split name such as val or train")
    if not planes or not thicknesses or not forms:
        raise InputError("at least one plane, one thickness and one form are needed")
    for plane in planes:
        if plane not in PLANE_AXES:
            raise InputError(f"plane {plane!r} does not exist; expected some of {', '.join(PLANE_AXES)}")
    for t in thicknesses:
        if not 1.0 <= float(t) <= 10.0:
            raise InputError(f"slice thickness {t:g} mm is outside 1-10 mm")
        if float(t) < truth_spacing:  # a slab thinner than a voxel of the grid it is simulated on
            raise InputError(f"slice thickness {t:g} mm is thinner than the truth grid's {truth_spacing:g} mm voxels")
    for form in forms:
        if form not in FORMS:
            raise InputError(f"form {form!r} does not exist; expected some of {', '.join(FORMS)}")
    given = (("plane", list(planes)), ("slice thickness", [f"{float(t):g} mm" for t in thicknesses]),
             ("form", list(forms)))
    for what, values in given:  # the same cases twice: counted twice in every mean, their spread understated
        twice = next((v for i, v in enumerate(values) if v in values[:i]), None)
        if twice is not None:
            raise InputError(f"{what} {twice} is given twice; each case would be scored twice")


def real_params(plane: str, thickness: float, rng: np.random.Generator) -> ThickSliceParams:
    """:data:`REAL_SIMULATOR` for one plane and thickness, the slab offset drawn uniformly in [0, thickness)."""
    offset = min(float(rng.uniform(0.0, thickness)), np.nextafter(thickness, 0.0))
    return ThickSliceParams(plane=plane, thickness=float(thickness), offset=offset, **REAL_SIMULATOR)


def native_grid(lq: np.ndarray, affine: np.ndarray, params: ThickSliceParams, axis: int):
    """The LQ on its own thick-slice grid: one sample per slab (at its centre) along ``axis``.

    Slabs whose centre lies outside the grid are dropped (they hold padding only). Returns
    ``(native, native_affine)``; the affine's ``axis`` column is scaled to the slab period and
    its origin moved to the first kept slab centre.
    """
    affine = np.asarray(affine, float)
    n, spacing = lq.shape[axis], float(np.linalg.norm(affine[:3, axis]))
    _, centres = slab_weights(n, spacing, params)
    frac = centres / spacing - 0.5  # slab centres in voxel-index units
    index = np.rint(frac).astype(int)
    keep = (index >= 0) & (index < n)
    frac, index = frac[keep], index[keep]
    native = np.ascontiguousarray(np.take(lq, index, axis=axis))
    out = affine.copy()
    out[:3, axis] = affine[:3, axis] * (params.thickness + params.gap) / spacing
    out[:3, 3] = affine[:3, 3] + affine[:3, axis] * frac[0]
    return native, out


def _case_rng(seed: int, name: str, plane: str, thickness: float) -> np.random.Generator:
    return np.random.default_rng([int(seed), zlib.crc32(f"{name}|{plane}|{float(thickness):g}".encode())])


def real_cases(source=None, split: str | None = "val", planes: Sequence[str] = ("sagittal", "axial"),
               thicknesses: Sequence[float] = (3.0, 5.0, 7.0), seed: int = 0, forms: Sequence[str] = ("truth",),
               levels: Sequence[str] | None = LUMBAR, simulator: SecondSimulator | None = None,
               dropped: list | None = None, truth_spacing: float = SPACING_MM) -> list[RealCase]:
    """Degraded real cases: one per (complete HQ mask, plane, thickness, form); see the module doc.

    Args:
        source: Folder or manifest of real HQ masks; None is the bundled set.
        split: Manifest split to use (``val`` by default); None uses every row.
        planes: Acquisition planes (``sagittal``, ``coronal``, ``axial``).
        thicknesses: Slice thicknesses in mm (1-10).
        seed: Seed of the slab offsets and the boundary noise.
        forms: ``truth`` and/or ``native`` (see the module doc).
        levels: Vertebral levels to keep; None keeps all.
        simulator: None for the product's simulator (:data:`REAL_SIMULATOR`), or a
            :class:`lsdebm.evaluation.second_simulator.SecondSimulator` (written apart from it).
        dropped: A list the names of the masks left out as cut by the field of view are appended to.
        truth_spacing: The truth grid's isotropic spacing in mm (1 by default; CT pixels of 0.6-0.9 mm or
            TotalSegmentator's 1.5 mm are what users' truths often come on).

    Raises:
        InputError: Bad planes/thicknesses/forms/split, or no matching masks (before any work).
    """
    check_protocol(planes, thicknesses, forms, split, truth_spacing)
    masks = load_real_masks(source, split=split, levels=tuple(levels) if levels is not None else None,
                            dropped=dropped)
    cases = []
    for m in masks:
        truth, truth_affine = isotropic(m.mask, m.affine, spacing=truth_spacing, pad_mm=PAD_MM)
        own = own_grid(m.mask, m.affine) if "original" in forms else None
        for plane in planes:
            for t in thicknesses:
                rng = _case_rng(seed, m.name, plane, t)
                axis = slab_axis(truth_affine, plane)
                if simulator is None:
                    params = real_params(plane, float(t), rng)
                    lq = degrade(truth, truth_affine, params, rng)
                    native = native_grid(lq, truth_affine, params, axis) if "native" in forms else None
                else:
                    params = simulator
                    lq, *native = simulator.degrade(truth, truth_affine, axis, float(t), rng)
                for form in forms:
                    ref, ref_affine = own if form == "original" else (truth, truth_affine)
                    if form == "native":
                        data, affine = native
                    else:  # the staircase on the grid it is scored on
                        data, affine = resample_labels(lq, truth_affine, ref.shape, ref_affine), ref_affine
                    cases.append(RealCase(f"{m.name}_{plane}_{float(t):g}mm_{form}", m.name, m.subject, m.level, plane,
                                          float(t), form, data, affine, ref, ref_affine, params))
    return cases


def grid_spacing(affine) -> tuple[float, ...]:
    """The voxel size of a grid in mm (its affine's column lengths): what distances are scored in. The
    ``original`` form's own grids are anisotropic (VerSe: 1 x 1 x 2 mm), and were scored as 1 mm."""
    return tuple(float(v) for v in np.linalg.norm(np.asarray(affine, float)[:3, :3], axis=0))


def own_grid(mask: np.ndarray, affine) -> tuple[np.ndarray, np.ndarray]:
    """The HQ mask on its own grid padded by :data:`PAD_MM` on every side: ``(mask, affine)``."""
    affine = np.asarray(affine, float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    pad = [int(np.ceil(PAD_MM / s)) for s in spacing]
    out = affine.copy()
    out[:3, 3] = affine[:3, 3] - affine[:3, :3] @ np.asarray(pad, float)
    return np.pad((np.asarray(mask) != 0).astype(np.uint8), [(p, p) for p in pad]), out


def row_models(rows: Sequence[Row], loaded: dict, slab=None) -> dict[str, Models | None]:
    """The pipeline of every row from loaded checkpoints ``{kind: LoadedCheckpoint}`` (``raw``: None);
    ``slab`` the learned slab interpolation every row's output step uses (None: the classical one)."""
    out: dict[str, Models | None] = {}
    for row in rows:
        if row.key == "raw":
            out[row.key] = None
        else:
            out[row.key] = Models(loaded[row.method] if row.method else None,
                                  loaded["reconnet"] if row.reconnet else None, slab)
    return out


def predict(case: RealCase, models: Models | None, settings: RunSettings = RunSettings()) -> np.ndarray:
    """One row's output for ``case`` on the truth grid (``models`` None: the raw input itself)."""
    if models is None:
        return resample_labels(case.lq, case.affine, case.truth.shape, case.truth_affine)
    result = reconstruct_volume(models=models, data=case.lq, affine=case.affine, settings=settings,
                                out_grid=(case.truth.shape, case.truth_affine))
    return (np.asarray(result.mask) > 0).astype(np.uint8)


def evaluate_real(cases: Sequence[RealCase], models_by_row: dict[str, Models | None], rows: Sequence[Row],
                  settings: RunSettings = RunSettings(),
                  progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """:func:`real_evaluation_job` drained; ``progress(cases done, cases)`` is called after every case."""
    job = real_evaluation_job(cases, models_by_row, rows, settings)
    return drain(job, None if progress is None else (lambda p: progress(p.done, p.total)))


def real_evaluation_job(cases: Sequence[RealCase], models_by_row: dict[str, Models | None], rows: Sequence[Row],
                        settings: RunSettings = RunSettings()) -> Job[EvalResult]:
    """Run every row on every case and score it on the truth grid, at that grid's spacing.

    ``models_by_row`` maps a row key to its :class:`Models` (see :func:`row_models`). Each case
    row records its identifying fields, ``method``, ``seconds`` (the whole pipeline of that row
    for that case, wall clock) and the metrics of :func:`compute_metrics`. A long job
    (:mod:`lsdebm.tasks.progress`): yields ``Progress(cases done, cases, "cases")`` after every case.
    """
    records: list[dict] = []
    seconds: dict[str, list[float]] = {r.key: [] for r in rows}
    for i, case in enumerate(cases):
        for row in rows:
            start = time.perf_counter()
            pred = predict(case, models_by_row.get(row.key), settings)
            sec = time.perf_counter() - start
            seconds[row.key].append(sec)
            metrics = compute_metrics(pred, case.truth, grid_spacing(case.truth_affine))
            records.append({**case.record(), "method": row.key, "seconds": sec, **metrics})
        yield Progress(i + 1, len(cases), "cases")
    return EvalResult(records, list(rows), seconds)


def _group_key(record: dict, group: str) -> str:
    value = record[group]
    return f"{value:g}" if isinstance(value, float) else str(value)


def _stats_by_row(records: Sequence[dict], rows: Sequence[Row]) -> dict:
    return {r.key: {c: column_stats(x[c] for x in records if x["method"] == r.key) for c in COLUMNS} for r in rows}


def paired_vs_raw(records: Sequence[dict], rows: Sequence[Row]) -> dict[str, dict]:
    """Per row: paired DSC difference to raw (mean, standard error), cases better/worse, HD95 difference."""
    raw = {x["case"]: x for x in records if x["method"] == "raw"}
    out = {}
    for row in rows:
        if row.key == "raw":
            continue
        pairs = [(x, raw[x["case"]]) for x in records if x["method"] == row.key and x["case"] in raw]
        d = np.array([a["dsc"] - b["dsc"] for a, b in pairs], float)
        h = np.array([a["hd95"] - b["hd95"] for a, b in pairs], float)
        out[row.key] = {"n": int(d.size), "dsc_diff": float(d.mean()) if d.size else float("nan"),
                        "dsc_diff_se": float(d.std(ddof=1) / np.sqrt(d.size)) if d.size > 1 else float("nan"),
                        "better": int((d > 0).sum()), "worse": int((d < 0).sum()),
                        "hd95_diff": float(h.mean()) if h.size else float("nan")}
    return out


def _row_bars(row: str, overall: dict, paired: dict) -> list[dict]:
    """The issue's three bars against the raw input for one row (``holds`` None when a row is missing)."""
    def mean(key, col):
        return overall.get(key, {}).get(col, {}).get("mean")

    dsc, raw, hd, raw_h = mean(row, "dsc"), mean("raw", "dsc"), mean(row, "hd95"), mean("raw", "hd95")
    pair = paired.get(row)
    worse = pair["worse"] / pair["n"] if pair and pair["n"] else None
    have = lambda *v: all(x is not None for x in v)  # noqa: E731
    return [
        {"bar": f"{row} mean DSC >= raw mean DSC + 0.03", "holds": dsc >= raw + 0.03 if have(dsc, raw) else None,
         "values": [dsc, None if raw is None else raw + 0.03]},
        {"bar": f"{row} mean HD95 <= raw mean HD95", "holds": hd <= raw_h if have(hd, raw_h) else None,
         "values": [hd, raw_h]},
        {"bar": f"{row} worse than raw (DSC) on <= 10 % of cases", "holds": worse <= 0.10 if have(worse) else None,
         "values": [worse, 0.10]},
    ]


def real_bars(overall: dict, paired: dict) -> list[dict]:
    """The issue's bars on real anatomy: for the bundled default (``reconnet``, see
    :data:`lsdebm.runtime.loading.DEFAULT_METHOD`) and for ReconNet+LSD-EBM, plus "the refinement earns
    its place" (ReconNet+LSD-EBM >= ReconNet)."""
    from lsdebm.runtime.loading import DEFAULT_METHOD

    lsd = overall.get("reconnet+lsdebm", {}).get("dsc", {}).get("mean")
    rn = overall.get("reconnet", {}).get("dsc", {}).get("mean")
    earns = {"bar": "reconnet+lsdebm mean DSC >= reconnet mean DSC",
             "holds": lsd >= rn if lsd is not None and rn is not None else None, "values": [lsd, rn]}
    return [*_row_bars(DEFAULT_METHOD, overall, paired), *_row_bars("reconnet+lsdebm", overall, paired), earns]


def summarize_real(result: EvalResult) -> dict:
    """Mean ± std per row overall and per subject/plane/thickness/form, the paired-vs-raw table and the bars.

    Returns ``{"overall": {row: {col: stats}}, "by_subject": {subject: {row: ...}}, "by_plane": ...,
    "by_thickness": ..., "by_form": ..., "paired_vs_raw": {row: ...}, "bars": [...]}``.
    """
    summary: dict = {"overall": _stats_by_row(result.cases, result.rows)}
    for group in GROUPS:
        keys = list(dict.fromkeys(_group_key(x, group) for x in result.cases))
        summary[f"by_{group}"] = {k: _stats_by_row([x for x in result.cases if _group_key(x, group) == k],
                                                   result.rows) for k in keys}
    summary["paired_vs_raw"] = paired_vs_raw(result.cases, result.rows)
    summary["bars"] = real_bars(summary["overall"], summary["paired_vs_raw"])
    return summary
