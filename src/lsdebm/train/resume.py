"""What ``lsdebm train --resume`` checks and restores: the run's own data and config, its optimiser state."""
from __future__ import annotations

import json
import warnings

import torch

from lsdebm.errors import InputError
from lsdebm.train.state import load_state, sidecar_path

HOW_DRAWN = {"bank_cache", "bank_from_cache", "real_source"}  # where the same data came from this time


def check_same_run(o, old_data, new_data) -> None:
    """A resumed run keeps its training data: other data are refused, naming what differs."""
    new_data = json.loads(json.dumps(new_data, default=str))
    keys = sorted(k for k in set(old_data or {}) | set(new_data) if k not in HOW_DRAWN
                  and old_data.get(k) != new_data.get(k)) if old_data is not None else []
    if keys:
        shown = "; ".join(f"{k}: {old_data.get(k)!r} then, {new_data.get(k)!r} now" for k in keys[:3])
        raise InputError(f"--resume {o.resume} continues a run on the data it started with; this command names "
                         f"other data ({shown}); repeat the first run's data options, or start a new run")


def warn_ignored(o, cfg) -> None:
    """A resumed run keeps its checkpoint's config ``cfg``: options that would change it are named in a warning
    (they apply to new runs only), before any data are read."""
    given = {"--batch-size": (o.batch_size, cfg.train.batch_size), "--kl-weight": (o.kl_weight, cfg.loss.kl_weight)}
    ignored = [f"{flag} {new:g} (the run's: {old:g})" for flag, (new, old) in given.items()
               if new is not None and new != old]
    if o.preset is not None and o.preset != cfg.preset:  # --preset's default is None so that a given one is seen
        ignored.insert(0, f"--preset {o.preset} (the run's: {cfg.preset})")
    ignored += [f"--set {k}={v}" for k, v in o.overrides.items()]
    if ignored:
        warnings.warn(f"--resume {o.resume}: the run's config comes from its checkpoint; ignored: "
                      f"{', '.join(ignored)} (they apply to new runs)", stacklevel=2)


def load_sidecar(o, model, optimizers, epochs: int) -> tuple[dict, torch.Tensor | None]:
    """Load ``--resume``'s sidecar into ``model`` and ``optimizers`` before any data are read: a missing sidecar,
    one of another run, or a run already ``epochs`` long is refused before minutes of loading a real-mask bank.
    Returns the sidecar's metadata and LEBM latents for :func:`resume_state`."""
    side = sidecar_path(o.resume)
    if not side.is_file():
        raise InputError(f"--resume {o.resume}: training-state sidecar {side} not found (it holds the "
                         "optimiser state; copy it next to the checkpoint)")
    meta, latents = load_state(side, model, optimizers, checkpoint=o.resume)
    done = int(meta["epoch"])
    if done >= epochs:
        raise InputError(f"--resume {o.resume}: already trained for {done} epoch{'' if done == 1 else 's'}; "
                         f"pass --epochs above {done} to continue")
    return meta, latents


def resume_state(run, meta: dict, saved_latents: torch.Tensor | None) -> None:
    """Restore the sidecar's rows, counters and LEBM latents (see :func:`load_sidecar`), then the configured rates."""
    run.start_epoch, run.rows = int(meta["epoch"]), meta.get("rows", [])
    run.train_seconds, run.samples0 = float(meta.get("train_seconds", 0.0)), int(meta.get("samples", 0))
    if run.latents is not None and saved_latents is not None and saved_latents.shape == run.latents.shape:
        run.latents = saved_latents
    for opt, lr in zip(run.optimizers, (run.cfg.train.lr, run.cfg.train.energy_lr)):
        for group in opt.param_groups:
            group["lr"] = lr
