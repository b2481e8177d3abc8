"""What ``lsdebm evaluate`` and ``lsdebm evaluate --real`` share: the rows option, the checks made before any
work (values, models, report files) and the machine load.

Both :mod:`lsdebm.cli.evaluate` and :mod:`lsdebm.cli.evaluate_real` import this module, so neither
imports the other's helpers (no import cycle).
"""
from __future__ import annotations

import os
from pathlib import Path

from lsdebm.errors import InputError


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
    from lsdebm.cli.sampler_options import check_sampler_values
    from lsdebm.data.validate import seed_ok

    if args.seed is not None and not seed_ok(args.seed):
        raise InputError(f"--seed {args.seed}: seeds must be >= 0 and < 2**63")
    check_sampler_values(args)


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
