"""Real vertebra masks: reading a folder or manifest, isotropic resampling, thick-slice degradation.

A real mask comes in its own spacing, orientation and affine. Everything here keeps the affine:
:func:`isotropic` resamples a mask onto an isotropic grid whose axes follow the file's own axes,
:func:`degrade` runs the thick-slice simulator (:mod:`lsdebm.data.thickslice`) along the array
axis nearest to the anatomical axis of the chosen plane (sagittal slabs stack left-right, axial
ones inferior-superior, coronal ones anterior-posterior), whatever the file's orientation.

The bundled set (``lsdebm.realdata``, 54 masks of 10 subjects with their licences; 7 of them in
``train``/``val``) carries a ``split`` column: ``train`` and ``val`` subjects never share a vertebra.
"""
from __future__ import annotations

import csv
import re
import warnings
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from scipy import ndimage

from lsdebm.data.thickslice import PLANE_AXES, ThickSliceParams, simulate_thick_slice
from lsdebm.data.validate import as_path
from lsdebm.errors import InputError, InputWarning

LEVEL_PATTERN = re.compile(r"C[1-7]|T1[0-3]|T[1-9]|L[1-6]|S1", re.IGNORECASE)
NAME_SEPARATORS = re.compile(r"[_\-.\s]+")


@dataclass(frozen=True)
class RealMask:
    """One real vertebra mask with its affine and manifest fields."""

    name: str
    path: Path
    subject: str
    level: str
    split: str
    complete: bool
    mask: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> tuple:
        return tuple(float(v) for v in np.linalg.norm(self.affine[:3, :3], axis=0))


def bundled_manifest() -> Path:
    """The manifest of the real masks shipped in ``lsdebm.realdata``."""
    from lsdebm.realdata import MANIFEST

    return MANIFEST


def level_from_name(stem: str) -> str:
    """The vertebral level a file name states, or "" when it states none or several.

    A level is a whole name part between ``_``, ``-``, ``.`` or spaces: ``L3_verse009``,
    ``vertebrae_L3`` (TotalSegmentator's files), ``sub-01_l3_mask``; ``T1w`` is not T1.
    """
    found = {part.upper() for part in NAME_SEPARATORS.split(stem) if LEVEL_PATTERN.fullmatch(part)}
    return found.pop() if len(found) == 1 else ""


FROM_FILE = "from the file"  # a plain folder's completeness: judged from the mask (:func:`_cut_by_edge`)


def _rows_from_folder(folder: Path) -> list[dict]:
    rows, cased = [], []
    for p in sorted(folder.rglob("*")):
        if not p.name.endswith((".nii", ".nii.gz")):
            if p.name.lower().endswith((".nii", ".nii.gz")):  # L1_A.NII.GZ: skipped, and said so below
                cased.append(p.name)
            continue
        stem = p.name[: -len(".nii.gz")] if p.name.endswith(".nii.gz") else p.name[: -len(".nii")]
        rows.append({"file": str(p.relative_to(folder)), "level": level_from_name(stem),
                     "complete": FROM_FILE, "split": "train"})
    if cased:  # beside L2_A.nii.gz, one mask of two was trained on without a word
        warnings.warn(f"{folder}: skipped {len(cased)} file(s) whose NIfTI suffix is not lower-case "
                      f"({', '.join(cased[:3])}{', ...' if len(cased) > 3 else ''}); rename them to .nii or .nii.gz",
                      InputWarning, stacklevel=2)
    return rows


def _name_rows(rows: list[dict]) -> list[dict]:
    """Give every row a ``name``: its file's stem, or, where stems repeat (TotalSegmentator's
    ``s0001/segmentations/vertebrae_L3.nii.gz`` beside ``s0002/...``), its path without the suffix. Two masks of
    one name were one case: paired with each other's raw input, one subject, one slab offset. A row without a
    subject is its own."""
    def stem(file: str) -> str:
        return Path(file).name.split(".")[0]

    counts: dict[str, int] = {}
    for r in rows:
        counts[stem(r["file"])] = counts.get(stem(r["file"]), 0) + 1
    for r in rows:
        name = stem(r["file"])
        r["name"] = name if counts[name] == 1 else Path(r["file"]).as_posix().split(".")[0]
        if r.get("subject") is None:
            r["subject"] = r["name"]
    return rows


def has_split(source, split: str) -> bool:
    """True when the real masks of ``source`` (None = bundled) include rows of ``split``.

    A plain folder of masks has no validation rows.
    """
    return any(r.get("split") == split for r in read_manifest(source)[1])


#: What a real-mask ``source`` that is no path is told to be instead.
SOURCE_HINT = "; give a folder of real NIfTI masks or a manifest.csv (None: the bundled set)"


def _resolved(source: str | Path | None) -> Path:
    """The manifest ``source`` names (None: the bundled one; a folder holding one: its file), else the folder."""
    path = bundled_manifest() if source is None else as_path(source, "source", SOURCE_HINT)
    return path / "manifest.csv" if path.is_dir() and (path / "manifest.csv").is_file() else path


def subjects_known(source: str | Path | None = None) -> bool:
    """Whether the masks of ``source`` (None = bundled) name their subjects: a manifest with a ``subject`` column
    does; a plain folder of masks (each file then taken as a subject of its own) or a manifest without one does not."""
    path = _resolved(source)
    if not path.is_file():
        return False
    return "subject" in _read_csv(path)[0]


def _read_csv(path: Path) -> tuple[tuple, list[dict]]:
    """A manifest's column names and rows; a file that is no UTF-8 CSV (a NIfTI mask given as ``--data``) is refused
    by name. A byte-order mark (Excel's "CSV UTF-8") is not part of the first column's name."""
    if path.name.endswith((".nii", ".nii.gz")):
        raise InputError(f"{path}: a single NIfTI mask; expected a folder of real NIfTI masks or a manifest.csv "
                         "listing them")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return tuple(reader.fieldnames or ()), list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path}: not a readable CSV manifest ({exc}); expected a UTF-8 CSV with at least a "
                         "'file' column") from None


def read_manifest(source: str | Path | None = None) -> tuple[Path, list[dict]]:
    """Rows of a real-mask manifest (``file, level, subject, complete, split``) and its root folder.

    ``source`` is a ``manifest.csv``, a folder holding one, or a folder of NIfTI masks (then every
    file is one training vertebra of its own subject, the level read from a ``L3_...`` prefix).
    None is the bundled set.
    """
    path = _resolved(source)
    if path.is_dir():
        rows = _rows_from_folder(path)
        if not rows:
            raise InputError(f"{path}: no .nii/.nii.gz masks found (expected real vertebra masks or a manifest.csv)")
        return path, _name_rows(rows)
    if not path.is_file():
        raise InputError(f"{path}: not found; expected a folder of real NIfTI masks or a manifest.csv")
    columns, rows = _read_csv(path)
    if "file" not in columns:
        raise InputError(f"{path}: expected a CSV manifest with at least a 'file' column")
    if not rows:
        raise InputError(f"{path}: the manifest lists no masks (only its header); expected a row per mask file")
    for i, r in enumerate(rows):
        if not (r["file"] or "").strip():
            raise InputError(f"{path}: row {i + 2} names no file; expected a mask path in every row's 'file' column")
        defaults = {"split": "train", "complete": "yes", "level": ""}
        r.update({k: v for k, v in defaults.items() if r.get(k) is None})  # a missing column or a short row
    return path.parent, _name_rows(rows)


def load_real_masks(source: str | Path | None = None, split: str | None = None, levels: tuple | None = None,
                    complete_only: bool = True, dropped: list | None = None) -> list[RealMask]:
    """Read the real masks of a manifest/folder (see :func:`read_manifest`), filtered.

    A file holding one label is one vertebra. A label map (several labels, e.g. a VerSe or
    TotalSegmentator segmentation of a spine) gives one mask per vertebra
    (:func:`split_label_map`).

    Args:
        source: Manifest, folder, or None for the bundled set.
        split: Keep only rows of this split (``train``/``val``); None keeps every row.
        levels: Keep only these levels (e.g. ``("L1", ..., "L5")``); None keeps all. A mask whose
            level is unknown (no manifest level, none in its file name or label table) is always
            kept: it was given to us and nothing says it is another level.
        complete_only: Drop vertebrae cut by the original field of view.
        dropped: A list the names of the vertebrae ``complete_only`` dropped are appended to (to report them).

    Raises:
        InputError: For a ``source`` that is no path or names no masks, a ``dropped`` that cannot be appended to,
            or when no mask matches the filters.
    """
    from lsdebm.data.nifti import read_volume

    if dropped is not None and not callable(getattr(dropped, "append", None)):
        raise InputError(f"dropped={dropped!r:.60}: expected a list the names of dropped vertebrae are appended to, "
                         "or None")
    root, rows = read_manifest(source)
    out = []
    for r in rows:
        if split is not None and r.get("split") != split:
            continue
        if levels is not None and r.get("level") and r.get("level") not in levels:
            continue
        vol = read_volume(root / r["file"])
        for m in split_label_map(np.asarray(vol.data), vol.affine, r, root):
            if levels is not None and m.level and m.level not in levels:
                continue
            if complete_only and not m.complete:
                if dropped is not None:
                    dropped.append(m.name)
                continue
            out.append(m)
    if not out:
        raise InputError(f"{_resolved(source)}: no real masks match split={split!r}, levels={levels!r}"
                         f"{_splits_had(source, rows)}")  # the manifest named, not its folder ('.')
    return out


def _splits_had(source, rows: list[dict]) -> str:
    """What the manifest's split column holds (a plain folder's masks are all 'train'), for a split that matched
    nothing."""
    if not _resolved(source).is_file():
        return "; a folder of masks without a manifest.csv is all split 'train'"
    levels = sorted({r["level"] for r in rows if r.get("level")})
    return ("; the manifest has splits: " + ", ".join(sorted({r["split"] or "(blank)" for r in rows}))
            + (f" and levels: {', '.join(levels)}" if levels else ""))


#: Voxels kept around each vertebra cut out of a label map.
LABEL_MAP_MARGIN = 4
NO_VERTEBRA_HINT = "expected one vertebra per file or a label map of vertebrae (VerSe, TotalSegmentator)"


def split_label_map(data: np.ndarray, affine: np.ndarray, row: dict, root: Path) -> list[RealMask]:
    """The vertebrae of one manifest row's file.

    One label: the file is one vertebra, with the row's level, subject and completeness. Several:
    a label map; its vertebrae are chosen as :func:`lsdebm.data.labelmaps.select_structures`
    chooses them for ``lsdebm reconstruct`` (the VerSe or TotalSegmentator level names, or every
    vertebra-sized label of an unknown table), each named ``<level>_<file>`` (or
    ``<file>_label<id>``) with the row's subject; one touching the volume's edge is cut by the
    field of view (incomplete). Each is cut out of the map with :data:`LABEL_MAP_MARGIN` voxels
    around it (its affine moved with it), so a whole-body map does not become one full-size
    array per vertebra.
    """
    from lsdebm.data.frame import box_affine
    from lsdebm.data.label_census import present_labels
    from lsdebm.data.labelmaps import select_structures

    path, stem = root / row["file"], row.get("name") or Path(row["file"]).name.split(".")[0]
    judged = row.get("complete") == FROM_FILE  # a plain folder: nothing vouches for the mask but the mask
    try:
        present = present_labels(data)
        selection = select_structures(data, affine, hint=NO_VERTEBRA_HINT) if len(present) > 1 or judged else None
    except InputError as err:
        raise InputError(f"{path}: {err}") from None
    subject, split = row.get("subject", ""), row.get("split", "")
    if selection is None or (judged and len(present) == 1):
        complete = not _cut_by_edge(data) if judged else str(row.get("complete", "yes")).lower() == "yes"
        return [RealMask(stem, path, subject, row.get("level", ""), split, complete, (data != 0).astype(np.uint8),
                         affine)]
    boxes = ndimage.find_objects(np.asarray(data, np.int32))
    out = []
    for label in selection.labels:
        tight = boxes[label - 1]
        cut = any(b.start == 0 or b.stop == n for b, n in zip(tight, data.shape))
        box = tuple(slice(max(b.start - LABEL_MAP_MARGIN, 0), min(b.stop + LABEL_MAP_MARGIN, n))
                    for b, n in zip(tight, data.shape))
        level = selection.levels.get(label) or ""
        name = f"{level}_{stem}" if level else f"{stem}_label{label}"
        out.append(RealMask(name, path, subject, level, split, not cut, (data[box] == label).astype(np.uint8),
                            box_affine(affine, box)))
    return out


CUT_SECTION = 0.2  # share of a mask's largest section lying on a face of the volume: cut by the field of view


def _cut_by_edge(data: np.ndarray) -> bool:
    """Whether a mask is cut by its volume's edge: on some face it covers at least :data:`CUT_SECTION` of its
    largest section across that axis. A tight crop touches its box with a process tip (at most 6 % on the 47
    complete shipped masks); a vertebra cut in half shows a whole section there (9-100 % on the 7 cut ones)."""
    mask = np.asarray(data) != 0
    for axis in range(mask.ndim):
        largest = mask.sum(axis=tuple(a for a in range(mask.ndim) if a != axis)).max()
        if any(np.take(mask, index, axis=axis).sum() >= CUT_SECTION * max(largest, 1) for index in (0, -1)):
            return True
    return False


def isotropic(mask: np.ndarray, affine: np.ndarray, spacing: float = 1.0, pad_mm: float = 6.0):
    """Resample a mask onto an isotropic grid along the file's own axes (linear, threshold 0.5).

    The new grid covers the old one plus ``pad_mm`` on every side. Returns ``(mask, affine)``.
    """
    affine = np.asarray(affine, dtype=np.float64)
    old = np.linalg.norm(affine[:3, :3], axis=0)
    dirs = affine[:3, :3] / old
    pad = int(np.ceil(pad_mm / spacing))
    shape = tuple(int(v) for v in np.ceil(np.array(mask.shape) * old / spacing) + 2 * pad)
    new = np.eye(4)
    new[:3, :3] = dirs * spacing
    # voxel centres: the first new voxel sits pad voxels before the old grid's outer edge
    new[:3, 3] = affine[:3, 3] + dirs @ (-0.5 * old + (0.5 - pad) * spacing)
    matrix = np.linalg.inv(affine) @ new
    out = ndimage.affine_transform(np.asarray(mask, np.float32), matrix, output_shape=shape, order=1)
    return (out >= 0.5).astype(np.uint8), new


def anatomical_axes(affine: np.ndarray) -> tuple[int, int, int]:
    """Array axes nearest to world inferior-superior, anterior-posterior and left-right."""
    cols = np.abs(np.asarray(affine)[:3, :3] / np.linalg.norm(np.asarray(affine)[:3, :3], axis=0))
    si, ap, lr = int(np.argmax(cols[2])), int(np.argmax(cols[1])), int(np.argmax(cols[0]))
    if len({si, ap, lr}) != 3:  # oblique grid: assign greedily by the largest cosine
        order, used = [None] * 3, set()
        for world in np.argsort(-cols.max(1)):
            axis = int(max((a for a in range(3) if a not in used), key=lambda a: cols[world, a]))
            order[world] = axis
            used.add(axis)
        lr, ap, si = order
    return si, ap, lr


def slab_axis(affine: np.ndarray, plane: str) -> int:
    """The array axis along which slabs of ``plane`` stack (sagittal: left-right, ...)."""
    if plane not in PLANE_AXES:
        raise InputError(f"plane must be one of {', '.join(PLANE_AXES)}; got {plane!r}")
    return anatomical_axes(affine)[PLANE_AXES[plane]]


def degrade(mask: np.ndarray, affine: np.ndarray, params: ThickSliceParams, rng: np.random.Generator) -> np.ndarray:
    """Thick-slice simulation of a real mask on an isotropic grid (any orientation).

    The simulator's plane names model-frame axes; here they follow the anatomy through the
    affine. Returns the low-quality mask (uint8) on the same grid.
    """
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    if not np.allclose(spacing, spacing[0], rtol=1e-3):
        raise InputError(f"degrade needs an isotropic grid (got spacing {tuple(np.round(spacing, 4))} mm); "
                         "resample with lsdebm.data.real.isotropic first")
    order = anatomical_axes(affine)  # (S-I, A-P, L-R) -> the simulator's (Z, Y, X)
    volume = np.transpose(np.asarray(mask), order)
    lq = simulate_thick_slice(volume, float(spacing[0]), params, rng)
    return np.ascontiguousarray(np.transpose(lq, np.argsort(order)))


def with_plane(params: ThickSliceParams, plane: str) -> ThickSliceParams:
    return replace(params, plane=plane)
