"""Size measurements of vertebra masks in world millimetres: real masks against phantoms.

Used to calibrate :mod:`lsdebm.data.phantoms` against the shipped real masks
(:mod:`lsdebm.realdata`) and to report the comparison in ``docs/anatomy.md``::

    python -m lsdebm.data.anatomy            # markdown tables, train and val splits

Extents are taken along the world (RAS+) axes whatever the file's orientation (PIR, RAS,
LPS, ...): voxel indices go through the affine, and the extent along a world axis is
``max - min`` of the voxel centres plus one voxel's size along that axis.
"""
from __future__ import annotations

import numpy as np

LEVELS = ("L1", "L2", "L3", "L4", "L5")


def world_extents(mask: np.ndarray, affine: np.ndarray) -> tuple[float, float, float]:
    """Bounding-box size of a mask along world left-right, anterior-posterior, superior-inferior.

    Args:
        mask: Binary mask (any non-zero voxel counts), 3D.
        affine: 4x4 voxel-to-world (RAS+ or LPS+, signs do not matter) millimetre map.

    Returns:
        ``(lr, ap, si)`` in mm: ``max - min`` of the world coordinates of the voxel centres
        plus the size of one voxel projected on that world axis (``sum_a |affine[w, a]|``,
        the voxel spacing for an axis-aligned grid). ``(0, 0, 0)`` for an empty mask.
    """
    affine = np.asarray(affine, dtype=np.float64)
    index = np.argwhere(np.asarray(mask) != 0)
    if index.size == 0:
        return 0.0, 0.0, 0.0
    # the world bounding box of the voxel centres is reached at the corners of the index box
    lo, hi = index.min(0), index.max(0)
    corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1).astype(np.float64)
    world = affine[:3, :3] @ corners + affine[:3, 3:4]
    voxel = np.abs(affine[:3, :3]).sum(1)
    lr, ap, si = world.max(1) - world.min(1) + voxel
    return float(lr), float(ap), float(si)


def volume_cm3(mask: np.ndarray, affine: np.ndarray) -> float:
    """Volume of the non-zero voxels in cm³ (voxel volume = ``|det affine[:3, :3]|`` mm³)."""
    voxel_mm3 = abs(float(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])))
    return float(np.count_nonzero(mask)) * voxel_mm3 / 1000.0


def _summary(volumes: list, extents: list) -> dict:
    volumes, extents = np.asarray(volumes, float), np.asarray(extents, float).reshape(-1, 3)
    return {
        "n": int(volumes.size),
        "volume_mean": float(volumes.mean()) if volumes.size else float("nan"),
        "volume_std": float(volumes.std(ddof=1)) if volumes.size > 1 else 0.0,
        "extents": tuple(float(v) for v in extents.mean(0)) if volumes.size else (float("nan"),) * 3,
    }


def real_table(split: str = "train", levels=LEVELS) -> dict:
    """Per level, mean/std volume (cm³) and mean world extents (mm) of the shipped real masks.

    Complete vertebrae only (``load_real_masks`` default). Levels without a mask are left out.
    """
    from lsdebm.data.real import load_real_masks

    masks = load_real_masks(split=split, levels=tuple(levels))
    table = {}
    for level in levels:
        rows = [m for m in masks if m.level == level]
        if rows:
            table[level] = _summary([volume_cm3(m.mask, m.affine) for m in rows],
                                    [world_extents(m.mask, m.affine) for m in rows])
    return table


def phantom_table(seeds=range(10), size: int = 128, spacing: float = 1.0, levels=LEVELS) -> dict:
    """Per level, mean/std volume (cm³) and mean world extents (mm) of phantoms over ``seeds``."""
    from lsdebm.data.phantoms import make_vertebra

    table = {}
    for level in levels:
        phantoms = [make_vertebra(level, int(seed), size=size, spacing=spacing) for seed in seeds]
        table[level] = _summary([volume_cm3(p.mask, p.affine) for p in phantoms],
                                [world_extents(p.mask, p.affine) for p in phantoms])
    return table


def level_table(split: str = "train", seeds=range(10), size: int = 128, spacing: float = 1.0) -> dict:
    """Real (shipped masks of ``split``) and phantom (``seeds``, ``size``³ at ``spacing`` mm) sizes.

    Returns:
        ``{level: {"real": summary, "phantom": summary}}`` where a summary holds ``n``,
        ``volume_mean``, ``volume_std`` (cm³) and ``extents`` (mean ``(lr, ap, si)`` mm).
        Levels without a real mask of that split have ``"real": None``.
    """
    real = real_table(split)
    phantom = phantom_table(seeds, size, spacing)
    return {level: {"real": real.get(level), "phantom": phantom[level]} for level in LEVELS}


def _fmt_ext(extents) -> str:
    return "/".join(f"{v:.0f}" for v in extents)


def markdown(table: dict, with_phantom: bool = True) -> str:
    """A :func:`level_table` result as a markdown table."""
    if with_phantom:
        lines = ["| level | n | real volume cm³ (mean ± std) | phantom volume cm³ | ratio | "
                 "real extents L-R/A-P/S-I mm | phantom extents mm |",
                 "|---|---|---|---|---|---|---|"]
    else:
        lines = ["| level | n | real volume cm³ (mean ± std) | real extents L-R/A-P/S-I mm |",
                 "|---|---|---|---|"]
    for level, row in table.items():
        real, ph = row["real"], row["phantom"]
        rv = f"{real['volume_mean']:.1f} ± {real['volume_std']:.1f}" if real else "–"
        re_ = _fmt_ext(real["extents"]) if real else "–"
        n = real["n"] if real else 0
        if with_phantom:
            ratio = f"{ph['volume_mean'] / real['volume_mean']:.2f}" if real else "–"
            lines.append(f"| {level} | {n} | {rv} | {ph['volume_mean']:.1f} | {ratio} | {re_} | "
                         f"{_fmt_ext(ph['extents'])} |")
        else:
            lines.append(f"| {level} | {n} | {rv} | {re_} |")
    return "\n".join(lines)


def main() -> None:
    """Print the train comparison (phantoms: seeds 0..9, 128³ at 1 mm) and the val real sizes."""
    train = level_table("train")
    val = {level: {"real": row, "phantom": None} for level, row in real_table("val").items()}
    print("### Train split: real masks vs phantoms (seeds 0..9, 128³ at 1 mm)\n")
    print(markdown(train))
    print("\n### Val split: real masks (information only)\n")
    print(markdown(val, with_phantom=False))


if __name__ == "__main__":
    main()
