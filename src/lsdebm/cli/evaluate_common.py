"""What ``lsdebm evaluate`` and ``lsdebm evaluate --real`` share: the rows option, the checks made before any
work (values, models, report files) and the machine load.

Both :mod:`lsdebm.cli.evaluate` and :mod:`lsdebm.cli.evaluate_real` import this module, so neither
imports the other's helpers (no import cycle).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

from lsdebm.errors import InputError

#: Seeds numpy's and torch's generators both take.
MAX_SEED = 2**63 - 1


def parse_methods(text: str | None):
    """The rows named by ``--methods`` (comma-separated; None or empty: all rows)."""
    from lsdebm.evaluation.rows import select_rows

    return select_rows([m.strip() for m in text.split(",") if m.strip()] if text else None)


def check_values(args) -> None:
    """One line for a bad ``--seed`` or sampler value, before anything is loaded or generated.

    Found by the run otherwise: a negative seed was a numpy traceback once the test set was due, one above
    2**63 a torch traceback after it was generated, a negative ``--step-size`` a traceback in LEBM's
    chain, and a NaN one gave LEBM rows of NaN latents, i.e. a complete-looking report of empty masks.
    """
    if args.seed is not None and not 0 <= args.seed <= MAX_SEED:
        raise InputError(f"--seed {args.seed}: seeds must be >= 0 and < 2**63")
    if args.steps is not None and args.steps < 0:
        raise InputError(f"--steps {args.steps} must be >= 0")
    if args.langevin_steps is not None and args.langevin_steps < 1:
        raise InputError(f"--langevin-steps {args.langevin_steps} must be >= 1")
    if args.step_size is not None and not (math.isfinite(args.step_size) and args.step_size > 0):
        raise InputError(f"--step-size {args.step_size} must be a finite number > 0")
    weight, projection = getattr(args, "consistency_weight", None), getattr(args, "projection", None)
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
        raise InputError(f"--consistency-weight {weight} must be a finite number >= 0")
    if projection is not None and not 0 <= projection <= 1:  # NaN too
        raise InputError(f"--projection {projection} must be between 0 and 1")
    if getattr(args, "consistency_steps", None) is not None and args.consistency_steps < 0:
        raise InputError(f"--consistency-steps {args.consistency_steps} must be >= 0")


def check_settings_for(models: dict, settings, args=None, rows=()) -> None:
    """The run's settings resolved for every loaded method (``--steps`` beyond a checkpoint's T...), before
    the test set is built and any row runs; with ``args``, a sampler option no chosen row reads is warned about."""
    from lsdebm.cli.sampler_options import warn_unread
    from lsdebm.methods import check_settings

    for loaded in models.values():
        check_settings(loaded.model, settings)
    if args is not None:
        warn_unread(args, [loaded.kind for loaded in models.values()],
                    f"the chosen rows {','.join(r.key for r in rows)}")


def check_out(out_text: str, names, overwrite: bool) -> Path:
    """``--out`` is a folder (or will be made) where the report files ``names`` can be written: an existing file
    needs ``overwrite``; a path under a file or a folder that cannot be written is refused now, not when the
    reports are written after the whole evaluation."""
    from lsdebm.errors import LsdebmError
    from lsdebm.fileio import check_target, check_writable

    out = Path(out_text)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: --out must be a directory")
    for name in names:
        if (out / name).exists() and not overwrite:
            raise InputError(f"{out / name} already exists; pass --overwrite to replace it")
        try:
            check_target(out / name, overwrite=True)
            check_writable(out / name)
        except LsdebmError as exc:
            raise InputError(f"--out {out}: {exc}") from None
    return out


def load_averages() -> list[float] | None:
    """1/5/15-minute load averages (timings on a shared machine depend on them)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None
