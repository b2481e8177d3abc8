"""``lsdebm train --model slabnet``: train the learned slab interpolation (:mod:`lsdebm.nn.slabnet`).

One process (no DDP: the model is small). The data are :class:`lsdebm.data.slab_pairs.SlabBank`
examples of the real masks of ``--split`` mixed with phantoms (``--real-fraction``, ``--pairs``
examples, ``--redraw`` of them re-drawn every epoch); an epoch is one pass over the bank: ``--pairs``
patches in steps of ``--batch-size``. Loss: binary cross-entropy + soft Dice on the patch. The learning rate
follows a cosine from ``--lr`` to 2.5 % of it over the planned steps, or over ``--max-minutes``
of training when given (counted across ``--resume``). Validation: ``--val-phantoms`` examples of
the ``--val-split`` subjects (fixed seed ``--val-seed``): Dice of SlabNet and of the classical
interpolation on the whole box. After each epoch the checkpoint (the default preset's config,
``kind = slabnet``), the CSV and the resumable sidecar are written atomically.
"""
from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lsdebm.config import get_preset
from lsdebm.data.mixed_set import real_sources
from lsdebm.data.real import has_split, load_real_masks
from lsdebm.data.slab_pairs import SlabBank, SlabExample
from lsdebm.errors import InputError
from lsdebm.nn.slabnet import LAYOUT, SlabNet
from lsdebm.runtime.checkpoint import load_checkpoint, read_metadata, save_checkpoint
from lsdebm.runtime.device import resolve_device
from lsdebm.train.data import REAL_LEVELS
from lsdebm.train.log import write_csv
from lsdebm.train.loop import check_common, check_output, csv_path
from lsdebm.train.state import load_state, save_state, sidecar_path

DEFAULT_EPOCHS = 100
DEFAULT_LR = 2e-3
DEFAULT_BATCH = 4
FINAL_LR_FRACTION = 0.025
#: The fusion weight stored with a new SlabNet (``consistency.interpolation``); the bundled one
#: records the weight chosen on validation (scripts/train_bundled.sh).
DEFAULT_WEIGHT = 1.0
IGNORED = ("phantoms", "energy_lr", "kl_weight", "lebm_steps")
REFINE_KEY = "model.slab_refine"


def check_slab_options(o) -> None:
    """The ``lsdebm train`` options that make no sense for SlabNet are refused, by name."""
    given = [name for name in IGNORED if getattr(o, name) is not None]
    if given:
        flags = ", ".join("--" + g.replace("_", "-") for g in given)
        raise InputError(f"{flags} do not apply to --model slabnet; it trains on --data (real masks mixed with "
                         "phantoms)")
    if o.data is None:
        raise InputError("--model slabnet trains on real masks: give --data FOLDER, a manifest.csv or 'bundled'")
    if o.preset not in (None, "default") or set(o.overrides) - {REFINE_KEY}:
        raise InputError(f"--model slabnet has a fixed architecture; --preset and --set do not apply (except "
                         f"--set {REFINE_KEY}=N, its 1 mm block)")
    if o.resume is not None and o.overrides:
        raise InputError(f"--resume continues a run with the architecture it started with; drop --set {REFINE_KEY}")
    if o.init_from is not None:
        if o.resume is not None:
            raise InputError("--init-from starts a new run from a SlabNet's weights; --resume continues one: "
                             "give one of them")
        if not Path(o.init_from).is_file():
            raise InputError(f"--init-from {o.init_from}: checkpoint file not found")


@dataclass
class _SlabRun:
    model: SlabNet
    optimizer: torch.optim.Optimizer
    bank: SlabBank
    val: list[SlabExample]
    rows: list[dict[str, Any]]
    epoch: int = 0
    step: int = 0
    seconds: float = 0.0


def _source(o):
    return None if str(o.data) == "bundled" else o.data


def _setup(o, device: torch.device) -> _SlabRun:
    torch.manual_seed(o.seed)
    cfg = get_preset("default").replace(**{"consistency.interpolation": DEFAULT_WEIGHT}, **o.overrides)
    if o.resume is not None:  # the architecture the run was started with
        cfg = read_metadata(o.resume, {SlabNet.kind: SlabNet})["config"]
    model = SlabNet(cfg)
    if o.init_from is not None:
        _init_from(model, o.init_from)
    model = model.to(device=device, memory_format=LAYOUT)
    lr = o.lr if o.lr is not None else DEFAULT_LR
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    real = real_sources(load_real_masks(_source(o), split=o.split, levels=REAL_LEVELS)) if o.real_fraction > 0 else []
    bank = SlabBank(real, o.pairs, o.real_fraction, seed=o.data_seed, redraw=o.redraw, workers=o.workers)
    val = []
    if o.val_split and o.val_phantoms > 0 and has_split(_source(o), o.val_split):  # subjects never trained on
        held_out = real_sources(load_real_masks(_source(o), split=o.val_split, levels=REAL_LEVELS))
        val = SlabBank(held_out, o.val_phantoms, 1.0, seed=o.val_seed, redraw=0.0).examples
    elif o.val_phantoms > 0:  # 'none', or a folder without that split: phantoms of their own seed, as the others
        val = SlabBank([], o.val_phantoms, 0.0, seed=o.val_seed, redraw=0.0).examples
    run = _SlabRun(model, optimizer, bank, val, [])
    if o.resume is not None:
        meta, _ = load_state(sidecar_path(o.resume), model, [optimizer], checkpoint=o.resume)
        run.epoch, run.step, run.seconds = int(meta["epoch"]), int(meta["step"]), float(meta["seconds"])
        run.rows = list(meta.get("rows", []))
        if run.rows and int(run.rows[-1]["epoch"]) > run.epoch:  # cut short by --max-minutes: run again whole
            run.rows.pop()
        for epoch in range(1, run.epoch + 1):
            bank.refresh(epoch)
    return run


def _init_from(model: SlabNet, path) -> None:
    """Copy a SlabNet checkpoint's weights into ``model``; a refinement block the checkpoint lacks keeps its
    zero start, so ``model`` starts as that checkpoint. Other mismatches are refused by name."""
    source = load_checkpoint(path, expect_kind=SlabNet.kind, extra_kinds={SlabNet.kind: SlabNet}).model.state_dict()
    own = model.state_dict()
    wrong = [k for k in source if k not in own or own[k].shape != source[k].shape]
    if wrong:
        raise InputError(f"--init-from {path}: weights {wrong[:3]} do not fit this SlabNet (a SlabNet with another "
                         "1 mm block?); expected a SlabNet without one, or with the same")
    model.load_state_dict(source, strict=False)
    missing = [k for k in own if k not in source]
    print(f"slabnet: started from {path}" + (f"; new (the block's output starts at zero): {', '.join(missing)}"
                                             if missing else ""), file=sys.stderr, flush=True)


def loss_of(logits: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice (one Dice over the batch)."""
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * truth).sum() + 1) / (p.sum() + truth.sum() + 1)
    return F.binary_cross_entropy_with_logits(logits, truth) + dice


def train_step(model: SlabNet, optimizer: torch.optim.Optimizer, x: np.ndarray, y: np.ndarray, device) -> float:
    """One optimisation step on a batch (features ``x``, truth ``y``) in the :data:`LAYOUT`; returns the loss."""
    logits = model(torch.from_numpy(x).to(device=device, memory_format=LAYOUT))
    loss = loss_of(logits, torch.from_numpy(y).to(device))
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return float(loss.detach())


def steps_per_epoch(pairs: int, batch: int) -> int:
    """One pass over the bank: ``pairs`` patches in batches of ``batch``."""
    return max(math.ceil(pairs / batch), 1)


def learning_rate(base: float, progress: float) -> float:
    """Cosine from ``base`` to ``FINAL_LR_FRACTION * base`` as ``progress`` goes 0 -> 1."""
    progress = min(max(progress, 0.0), 1.0)
    return base * (FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress)))


def validation_dice(model: SlabNet, val: list[SlabExample], device: torch.device) -> dict[str, float]:
    """Mean Dice on the validation boxes: SlabNet, and the classical interpolation it starts from."""
    if not val:
        return {}
    model.eval()
    learned, classic = [], []
    for ex in val:
        x = torch.from_numpy(ex.features.astype(np.float32)).to(device)
        pred = (model.logits(x) > 0).cpu().numpy()
        base = ex.features[1].astype(np.float32) > 0
        truth = ex.truth != 0
        for out, p in ((learned, pred), (classic, base)):
            out.append(2 * np.logical_and(p, truth).sum() / max(p.sum() + truth.sum(), 1))
    model.train()
    return {"val_dsc": round(float(np.mean(learned)), 5), "val_dsc_classical": round(float(np.mean(classic)), 5)}


def _info(o, run: _SlabRun) -> dict[str, Any]:
    last = run.rows[-1] if run.rows else {}
    return {"description": "SlabNet: the learned slab interpolation of the measurement-aware output step, "
                           "trained with `lsdebm train --model slabnet` (1 mm patches)",
            "command": o.command, "model": "slabnet", "train_data": run.bank.description(),
            "val_data": {"split": o.val_split, "n": len(run.val), "seed": o.val_seed},
            "epochs": run.epoch, "steps": run.step, "wall_time_s": round(run.seconds, 1),
            "final_val_dsc": last.get("val_dsc"), "final_val_dsc_classical": last.get("val_dsc_classical"),
            "seed": o.seed, "threads": torch.get_num_threads(), "torch_version": torch.__version__}


def _save(o, run: _SlabRun) -> None:
    save_checkpoint(run.model, o.out, _info(o, run), overwrite=True)
    write_csv(csv_path(Path(o.out)), run.rows)
    meta = {"epoch": run.epoch, "step": run.step, "seconds": run.seconds, "rows": run.rows}
    save_state(sidecar_path(o.out), run.model, [run.optimizer], None, meta)


def _epoch(o, run: _SlabRun, device, rng: np.random.Generator, batch: int, total_steps: int, start: float) -> bool:
    """One epoch of steps; False when ``--max-minutes`` ran out (the epoch is cut short)."""
    base = o.lr if o.lr is not None else DEFAULT_LR
    budget = o.max_minutes * 60 if o.max_minutes is not None else None
    losses, finished = [], True
    for _ in range(steps_per_epoch(o.pairs, batch)):
        elapsed = run.seconds + time.perf_counter() - start
        if budget is not None and elapsed > budget:
            finished = False
            break
        progress = elapsed / budget if budget is not None else run.step / max(total_steps, 1)
        for group in run.optimizer.param_groups:
            group["lr"] = learning_rate(base, progress)
        losses.append(train_step(run.model, run.optimizer, *run.bank.batch(rng, batch), device))
        run.step += 1
    if losses:
        run.rows.append({"epoch": run.epoch + 1, "steps": len(losses), "loss": round(float(np.mean(losses)), 5)})
    return finished


def train_slab(o) -> dict[str, Any]:
    """Train SlabNet with the :class:`lsdebm.train.loop.TrainOptions` ``o``; returns the last CSV row."""
    check_slab_options(o)
    check_common(o)
    check_output(o)
    if o.resume is not None and read_metadata(o.resume, {SlabNet.kind: SlabNet}).get("kind") != SlabNet.kind:
        raise InputError(f"--resume {o.resume}: not a slabnet checkpoint")
    if o.threads:
        torch.set_num_threads(o.threads)
    device = resolve_device(o.device)
    run = _setup(o, device)
    epochs = o.epochs if o.epochs is not None else DEFAULT_EPOCHS
    batch = o.batch_size if o.batch_size is not None else DEFAULT_BATCH
    rng = np.random.default_rng([o.seed, run.step])
    run.model.train()
    while run.epoch < epochs:
        start = time.perf_counter()
        if run.epoch > 0:
            run.bank.refresh(run.epoch)
        finished = _epoch(o, run, device, rng, batch, epochs * steps_per_epoch(o.pairs, batch), start)
        run.seconds += time.perf_counter() - start
        if not finished:
            break
        run.epoch += 1
        if run.epoch % o.val_every == 0 or run.epoch == epochs:
            run.rows[-1].update(validation_dice(run.model, run.val, device))
        print(f"slabnet epoch {run.epoch}: {run.rows[-1]}", file=sys.stderr, flush=True)
        _save(o, run)
    if run.rows and "val_dsc" not in run.rows[-1]:  # stopped by --max-minutes within an epoch
        run.rows[-1].update(validation_dice(run.model, run.val, device))
    _save(o, run)
    return run.rows[-1] if run.rows else {}
