"""Which structures of a label map to refine: label conventions, vertebra tables and size checks.

A user's file is often a whole-spine or whole-body label map rather than one vertebra. This
module decides which labels are vertebrae worth refining and says why the others are skipped:

* :func:`recognise_table` guesses the labelling convention (VerSe, TotalSegmentator, a binary
  mask or unknown) from the label ids alone;
* :func:`select_structures` keeps the vertebrae of a recognised table (or the labels named by
  the user) and skips, with a reason, every structure whose physical size is far from a
  vertebra's (measured through the affine, so the voxel size never fools it);
* :func:`describe` turns a :class:`Selection` into one-line log messages.

Label tables (plain dicts id -> level or class name):

* VerSe (Sekuboyina et al. 2021, Löffler et al. 2020; https://github.com/anjany/verse README):
  1-7 C1-C7, 8-19 T1-T12, 20-25 L1-L6, 26 sacrum, 27 coccyx ("cocygis"; both not labelled in
  the released data), 28 T13.
* TotalSegmentator v2 task ``total`` (Wasserthal et al. 2023;
  https://github.com/wasserth/TotalSegmentator, ``totalsegmentator/map_to_binary.py``,
  ``class_map["total"]``): 117 classes, 25 sacrum, 26 vertebrae_S1, 27-31 L5-L1, 32-43 T12-T1,
  44-50 C7-C1.
* TotalSegmentator v1 (same file, ``class_map["total_v1"]``): 104 classes, 18-22 L5-L1,
  23-34 T12-T1, 35-41 C7-C1, 92 sacrum. Its ids overlap v2's, so it is never guessed; pass
  ``table="totalsegmentator_v1"``.

Only free vertebrae (C1-C7, T1-T13, L1-L6) count as vertebrae; the sacrum, TotalSegmentator's
``vertebrae_S1`` (a sacral segment), the coccyx, ribs and organs do not.

The module is Qt-free and torch-free.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from lsdebm.data.label_census import label_boxes, label_counts, measure
from lsdebm.errors import InputError, InputWarning

VERSE: dict[int, str] = {
    **{i: f"C{i}" for i in range(1, 8)},
    **{i: f"T{i - 7}" for i in range(8, 20)},
    **{i: f"L{i - 19}" for i in range(20, 26)},
    26: "sacrum",
    27: "coccyx",
    28: "T13",
}

_TS_V2_OTHERS = (
    "spleen kidney_right kidney_left gallbladder liver stomach pancreas adrenal_gland_right "
    "adrenal_gland_left lung_upper_lobe_left lung_lower_lobe_left lung_upper_lobe_right "
    "lung_middle_lobe_right lung_lower_lobe_right esophagus trachea thyroid_gland small_bowel "
    "duodenum colon urinary_bladder prostate kidney_cyst_left kidney_cyst_right sacrum"
).split()
_TS_V2_TAIL = (
    "heart aorta pulmonary_vein brachiocephalic_trunk subclavian_artery_right subclavian_artery_left "
    "common_carotid_artery_right common_carotid_artery_left brachiocephalic_vein_left "
    "brachiocephalic_vein_right atrial_appendage_left superior_vena_cava inferior_vena_cava "
    "portal_vein_and_splenic_vein iliac_artery_left iliac_artery_right iliac_vena_left iliac_vena_right "
    "humerus_left humerus_right scapula_left scapula_right clavicula_left clavicula_right femur_left "
    "femur_right hip_left hip_right spinal_cord gluteus_maximus_left gluteus_maximus_right "
    "gluteus_medius_left gluteus_medius_right gluteus_minimus_left gluteus_minimus_right "
    "autochthon_left autochthon_right iliopsoas_left iliopsoas_right brain skull"
).split()
_SPINE_UP = ["S1", *(f"L{i}" for i in range(5, 0, -1)), *(f"T{i}" for i in range(12, 0, -1)),
             *(f"C{i}" for i in range(7, 0, -1))]  # caudal to cranial, as TotalSegmentator numbers them

TOTALSEGMENTATOR: dict[int, str] = {
    **{i + 1: name for i, name in enumerate(_TS_V2_OTHERS)},  # 1-25
    **{26 + i: level for i, level in enumerate(_SPINE_UP)},  # 26 S1, 27 L5 ... 50 C1
    **{51 + i: name for i, name in enumerate(_TS_V2_TAIL)},  # 51-91
    **{92 + i: f"rib_left_{i + 1}" for i in range(12)},
    **{104 + i: f"rib_right_{i + 1}" for i in range(12)},
    116: "sternum",
    117: "costal_cartilages",
}

_TS_V1_HEAD = (
    "spleen kidney_right kidney_left gallbladder liver stomach aorta inferior_vena_cava "
    "portal_vein_and_splenic_vein pancreas adrenal_gland_right adrenal_gland_left lung_upper_lobe_left "
    "lung_lower_lobe_left lung_upper_lobe_right lung_middle_lobe_right lung_lower_lobe_right"
).split()
_TS_V1_TAIL = (
    "esophagus trachea heart_myocardium heart_atrium_left heart_ventricle_left heart_atrium_right "
    "heart_ventricle_right pulmonary_artery brain iliac_artery_left iliac_artery_right iliac_vena_left "
    "iliac_vena_right small_bowel duodenum colon"
).split()
_TS_V1_BONES = (
    "humerus_left humerus_right scapula_left scapula_right clavicula_left clavicula_right femur_left "
    "femur_right hip_left hip_right sacrum face gluteus_maximus_left gluteus_maximus_right "
    "gluteus_medius_left gluteus_medius_right gluteus_minimus_left gluteus_minimus_right "
    "autochthon_left autochthon_right iliopsoas_left iliopsoas_right urinary_bladder"
).split()

TOTALSEGMENTATOR_V1: dict[int, str] = {
    **{i + 1: name for i, name in enumerate(_TS_V1_HEAD)},  # 1-17
    **{18 + i: level for i, level in enumerate(_SPINE_UP[1:])},  # 18 L5 ... 41 C1
    **{42 + i: name for i, name in enumerate(_TS_V1_TAIL)},  # 42-57
    **{58 + i: f"rib_left_{i + 1}" for i in range(12)},
    **{70 + i: f"rib_right_{i + 1}" for i in range(12)},
    **{82 + i: name for i, name in enumerate(_TS_V1_BONES)},  # 82-104
}

TABLES: dict[str, dict[int, str]] = {
    "verse": VERSE,
    "totalsegmentator": TOTALSEGMENTATOR,
    "totalsegmentator_v1": TOTALSEGMENTATOR_V1,
}
TABLE_NAMES = {"verse": "VerSe", "totalsegmentator": "TotalSegmentator",
               "totalsegmentator_v1": "TotalSegmentator v1", "binary": "binary mask"}

VERTEBRA_LEVEL = re.compile(r"^(C[1-7]|T1[0-3]|T[1-9]|L[1-6])$")
VOLUME_CM3 = (3.0, 200.0)
EXTENT_MM = (15.0, 150.0)
# VerSe vertebrae from cranial to caudal; T13 (28) and L6 (25) are optional in a contiguous run
_VERSE_ORDER = [*range(1, 20), 28, *range(20, 26)]
_VERSE_OPTIONAL = {25, 28}
NOT_NAMED = "not named with --label"


@dataclass(frozen=True)
class Selection:
    """The structures of a label map to refine, and why the others are left alone.

    Attributes:
        labels: Label ids to refine, ascending (or in the order the user named them).
        levels: Level or class name of every present id in the recognised table (None if unknown).
        skipped: ``(id, reason)`` for every present label that is not refined.
        table: The recognised convention (``verse``, ``totalsegmentator``, ``totalsegmentator_v1``,
            ``binary``) or None.
        boxes: Index box of every chosen label (:func:`label_boxes`), so that each structure of a
            whole-body map is later read only where it lies.
    """

    labels: list[int]
    levels: dict[int, str | None]
    skipped: list[tuple[int, str]] = field(default_factory=list)
    table: str | None = None
    boxes: dict[int, tuple[slice, ...]] = field(default_factory=dict)


def is_vertebra(name: str | None) -> bool:
    """Whether a table entry names a free vertebra (C1-C7, T1-T13, L1-L6)."""
    return bool(name) and VERTEBRA_LEVEL.match(name) is not None


def _verse_contiguous(ids: set[int]) -> bool:
    positions = [_VERSE_ORDER.index(i) for i in ids if i in _VERSE_ORDER]
    if not positions:
        return False
    span = _VERSE_ORDER[min(positions): max(positions) + 1]
    return all(i in ids or i in _VERSE_OPTIONAL for i in span)


def _verse_run(ids: set[int]) -> bool:
    """The ids up to 28 hold no 27 and are a contiguous VerSe run of at least two vertebrae."""
    low = {i for i in ids if i <= 28}
    return 27 not in low and len(low - {26}) >= 2 and _verse_contiguous(low)


def recognise_table(label_ids) -> str | None:
    """Guess the labelling convention of a map from its nonzero label ids.

    Rule (first match wins):

    1. ``{1}`` alone is ``'binary'`` (a plain mask, never VerSe's C1).
    2. ``'totalsegmentator'`` (v2) when every id is a v2 class (1-117) and one of them cannot be
       VerSe: an id above 28, or 27 (TotalSegmentator's L5; VerSe's coccyx is never labelled).
    3. ``'verse'`` when every id is a VerSe label (1-28) and the vertebrae among them form one
       contiguous run of the spine (C1 ... T12, [T13], L1 ... L5, [L6]), as a scan's field of
       view does; the sacrum (26) may accompany them. Also when the ids up to 28 are such a run of
       at least two vertebrae and some other id lies beyond every TotalSegmentator class (> 117):
       VerSe's numbering extended with more structures, as SPINEPS / TPTBox maps add discs
       (100 + vertebra) and endplates (200 + vertebra); those extra ids are not vertebrae.
    4. Otherwise None (unknown; no names are guessed). TotalSegmentator v1 is never guessed.

    A map of one label that rule 2 or 3 would not call a vertebra (a mask stored as 0/100) is
    ``'binary'`` too: one structure alone is a plain mask, refined when its size is a vertebra's,
    never skipped for its number.

    Args:
        label_ids: The nonzero label ids present in the map.
    """
    ids = {int(v) for v in label_ids if int(v) != 0}
    if not ids:
        return None
    if ids == {1}:
        return "binary"
    guess = None
    if ids <= set(TOTALSEGMENTATOR) and (max(ids) > 28 or 27 in ids):
        guess = "totalsegmentator"
    elif ids <= set(VERSE) and 27 not in ids and _verse_contiguous(ids):
        guess = "verse"
    elif max(ids) > max(TOTALSEGMENTATOR) and _verse_run(ids):
        guess = "verse"
    if len(ids) == 1 and guess is not None and not is_vertebra(TABLES[guess].get(min(ids))):
        return "binary"
    return guess


def _fmt(value: float) -> str:
    return f"{value:.2f}" if value < 10 else f"{value:.0f}"


LARGER = "; larger than one"  # in a size reason: the structure is too large rather than too small


def size_reason(volume_cm3: float, extent_mm: float) -> str | None:
    """Why a structure of this size is not a vertebra, or None when it could be one."""
    lo, hi = VOLUME_CM3
    if not lo <= volume_cm3 <= hi:
        more = LARGER if volume_cm3 > hi else ""
        return f"{_fmt(volume_cm3)} cm3, far from a vertebra ({lo:g}-{hi:g} cm3{more})"
    lo, hi = EXTENT_MM
    if not lo <= extent_mm <= hi:
        more = LARGER if extent_mm > hi else ""
        return f"largest extent {_fmt(extent_mm)} mm, far from a vertebra ({lo:g}-{hi:g} mm{more})"
    return None


def _resolve_table(ids: list[int], table: str | None) -> str | None:
    if table is None:
        return recognise_table(ids)
    if table == "none":
        return None
    if table not in TABLES and table != "binary":
        raise InputError(f"unknown label table {table!r}; choose one of {', '.join([*TABLES, 'binary', 'none'])}")
    return table


def _explicit(data: np.ndarray, present: list[int], labels, levels: dict, table: str | None) -> Selection:
    missing = [int(v) for v in labels if int(v) not in present]
    if missing:
        raise InputError(f"label {missing[0]} not found in the volume; labels present: {present[:20]}")
    chosen = list(dict.fromkeys(int(v) for v in labels))
    skipped = [(i, NOT_NAMED) for i in present if i not in chosen]
    return Selection(chosen, levels, skipped, table, label_boxes(data, chosen))


def _nothing_left(skipped: list[tuple[int, str]], table: str | None, hint: str | None,
                  guessed: bool = False) -> InputError:
    by_size = sum("far from a vertebra" in r for _, r in skipped)
    parts = [f"{by_size} far from a vertebra's size ({VOLUME_CM3[0]:g}-{VOLUME_CM3[1]:g} cm3, "
             f"{EXTENT_MM[0]:g}-{EXTENT_MM[1]:g} mm)"] if by_size else []
    if len(skipped) == 1 and by_size and hint is None:  # one structure: say how far, and what it may be
        label, reason = skipped[0]
        return InputError(f"no vertebra to refine: label {label} is {reason}"
                          + ("; several vertebrae in one label?" if LARGER in reason else ";")
                          + f" --label {label} refines it as one structure")
    if len(skipped) - by_size:
        parts.append(f"{len(skipped) - by_size} not vertebrae in the {TABLE_NAMES.get(table, table)} table")
    hint = f"name the labels to refine with --label, e.g. --label {skipped[0][0]}" if hint is None else hint
    if guessed and table in TABLES and len(skipped) - by_size:  # the numbering may be another convention's
        hint += (f" (the ids were read as {TABLE_NAMES[table]}'s; --label-table verse, totalsegmentator or none "
                 "reads them otherwise)")
    return InputError(f"no vertebra to refine among {len(skipped)} labels ({'; '.join(parts)}); {hint}")


def select_structures(data: np.ndarray, affine: np.ndarray, labels=None, table: str | None = None,
                      hint: str | None = None) -> Selection:
    """Choose the labels of a map to refine and give a reason for every other one.

    With explicit ``labels`` exactly those are refined, whatever their size. Without, only
    vertebrae are: in a recognised table only its vertebra ids (sacrum, ribs, organs are skipped),
    and in every case any structure whose volume (via the affine's voxel volume) lies outside
    3-200 cm3 or whose largest extent lies outside 15-150 mm is skipped.

    Args:
        data: Binary mask or integer label map.
        affine: Voxel-to-world affine (mm) of ``data``.
        labels: Label ids named by the user (``--label``), or None to choose automatically.
        table: Force a convention (``verse``, ``totalsegmentator``, ``totalsegmentator_v1``,
            ``binary`` or ``none``); None recognises it with :func:`recognise_table`.
        hint: What the "nothing left" error tells the user to do (default: name labels with
            ``--label``, which ``lsdebm reconstruct`` offers).

    Raises:
        InputError: If the volume is empty or non-integer, a named label is absent, the table is
            unknown, or nothing vertebra-like is left to refine.
    """
    counts = label_counts(data)
    present = list(counts)
    negative = [i for i in present if i < 0]
    if negative:  # label ids are never negative: a signed/unsigned or rescaling mix-up, most likely
        shown = ", ".join(str(i) for i in negative[:5]) + (", ..." if len(negative) > 5 else "")
        warnings.warn(f"negative label value(s) {shown}: refined like any other structure and written back as "
                      "they are; expected non-negative label ids (check the file's data type and scaling)",
                      InputWarning, stacklevel=2)
    guessed = table is None
    table = _resolve_table(present, table)
    names = TABLES.get(table, {})
    levels = {i: names.get(i) for i in present}
    if labels:
        return _explicit(data, present, labels, levels, table)
    boxes = label_boxes(data, present)
    sizes = measure(data, affine, present, boxes, counts)
    chosen, skipped = [], []
    for i in present:
        if table in TABLES and not is_vertebra(levels[i]):
            what = {None: "unknown label", "S1": "S1 (a sacral segment)"}.get(levels[i], levels[i])
            skipped.append((i, f"{what} is not a vertebra in the {TABLE_NAMES[table]} table"))
        elif (reason := size_reason(*sizes[i])) is not None:
            skipped.append((i, reason))
        else:
            chosen.append(i)
    if not chosen:
        raise _nothing_left(skipped, table, hint, guessed)
    return Selection(chosen, levels, skipped, table, {i: boxes[i] for i in chosen})


def _label_text(selection: Selection, label: int) -> str:
    level = selection.levels.get(label)
    if level is None:
        return f"label {label}"
    return f"label {label} ({level}, {TABLE_NAMES.get(selection.table, selection.table)})"


def describe(selection: Selection, max_skipped: int = 10) -> list[str]:
    """One-line log messages: each refined label, then each skipped one with its reason.

    Automatic skips end with how to refine the label anyway. Past ``max_skipped`` skipped labels
    one summary line stands for the rest.
    """
    lines = [f"refining {_label_text(selection, i)}" for i in selection.labels]
    for i, reason in selection.skipped[:max_skipped]:
        hint = "" if reason == NOT_NAMED else f"; name it with --label {i} to refine it anyway"
        lines.append(f"skipping {_label_text(selection, i)}: {reason}{hint}")
    rest = selection.skipped[max_skipped:]
    if rest:
        lines.append(f"skipping {len(rest)} more labels ({rest[0][0]} ... {rest[-1][0]}) for the same kinds of reasons")
    return lines
