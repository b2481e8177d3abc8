"""What ``lsdebm train --resume`` checks and restores (the run's own data and config, its optimiser state), and
what ``--init-from`` takes from a checkpoint (its config and weights, not its optimisers)."""
from __future__ import annotations

import json
import sys
import warnings
from typing import Any

import torch

from lsdebm.errors import InputError
from lsdebm.runtime.checkpoint import load_checkpoint
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


def flag_of(o) -> str:
    """The option that named the checkpoint a run starts from."""
    return "--resume" if o.resume is not None else "--init-from"


def warn_ignored(o, cfg) -> None:
    """A resumed (or ``--init-from``) run keeps its checkpoint's config ``cfg``: options that would change it are
    named in a warning (they apply to new runs only), before any data are read."""
    given = {"--kl-weight": (o.kl_weight, cfg.loss.kl_weight)}
    if o.resume is not None:  # a fine-tuning run may take another batch size
        given["--batch-size"] = (o.batch_size, cfg.train.batch_size)
    ignored = [f"{flag} {new:g} (the run's: {old:g})" for flag, (new, old) in given.items()
               if new is not None and new != old]
    if o.preset is not None and o.preset != cfg.preset:  # --preset's default is None so that a given one is seen
        ignored.insert(0, f"--preset {o.preset} (the run's: {cfg.preset})")
    ignored += [f"--set {k}={v}" for k, v in o.overrides.items()]
    if ignored:
        warnings.warn(f"{flag_of(o)} {o.resume or o.init_from}: the run's config comes from its checkpoint; ignored: "
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


def init_weights(o, model) -> dict[str, Any]:
    """``--init-from``: copy the checkpoint's weights (same kind, same config) into ``model``; the optimisers and the
    learning-rate schedule start fresh. Returns the checkpoint's path, sha256, epochs, device and training wall time
    (its own and that of the checkpoint it started from) for the new run's ``info``."""
    loaded = load_checkpoint(o.init_from, expect_kind=o.model)
    model.load_state_dict(loaded.model.state_dict())
    print(f"{o.model}: started from {o.init_from} (sha256 {loaded.sha256[:12]}), fresh optimisers and schedule",
          file=sys.stderr, flush=True)
    before = loaded.info.get("init_from") or {}  # the training behind the source, so that a chain adds up
    seconds = [v for v in (loaded.info.get("wall_time_s"), before.get("wall_time_s")) if isinstance(v, (int, float))]
    return {"path": str(o.init_from), "sha256": loaded.sha256, "epochs": loaded.info.get("epochs"),
            "device": loaded.info.get("device"), "wall_time_s": round(sum(seconds), 1) if seconds else None}
