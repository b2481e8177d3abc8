"""The training loop shared by every model kind, on 1 process or N under ``torchrun``.

Per iteration (Algorithm 1 for LSD-EBM): a batch of masks (HQ for the autoencoders, (LQ, HQ)
for ReconNet) is augmented (left-right flip, small shifts), the kind's loss is computed by
:class:`lsdebm.train.steps.TrainStep` and the encoder/decoder and energy optimisers step.
LEBM keeps one persistent posterior latent per training case and advances its Langevin chain
by ``lebm_steps`` per visit (short-run chains are too expensive through a 3D decoder on CPU).
After each epoch rank 0 validates, appends a row to ``OUT.csv``, and writes the checkpoint
(atomically) plus the resumable sidecar ``OUT.optim.safetensors``.
"""
from __future__ import annotations

import contextlib
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler
from tqdm.auto import tqdm

from lsdebm.config import MODEL_KINDS, Config, apply_sets, check_model_memory, get_preset
from lsdebm.data.real import has_split
from lsdebm.data.validate import seed_ok
from lsdebm.errors import InputError
from lsdebm.nn import build_model
from lsdebm.nn.lebm import reference_latents
from lsdebm.runtime import distributed as D
from lsdebm.runtime.checkpoint import read_metadata, save_checkpoint
from lsdebm.train.data import MaskSet, augment, check_workers, directory_set, generated_set, is_phantom_set, mixed_set
from lsdebm.train.log import checkpoint_info, write_csv
from lsdebm.train.outputs import check_output, csv_path
from lsdebm.train.resume import check_same_run, flag_of, init_weights, load_sidecar, resume_state, warn_ignored
from lsdebm.train.state import save_state, sidecar_path
from lsdebm.train.steps import TrainStep, make_optimizers
from lsdebm.train.validate import validation_dice


@dataclass
class TrainOptions:
    """Everything ``lsdebm train`` accepts (see ``lsdebm train --help``)."""

    model: str
    out: Path
    preset: str | None = None  # None: "default" (a new run), the checkpoint's (a resumed one)
    data: Path | None = None
    phantoms: int | None = None
    data_seed: int = 1000
    val_phantoms: int = 20
    val_seed: int = 2000
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    energy_lr: float | None = None
    kl_weight: float | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    resume: Path | None = None
    init_from: Path | None = None
    overwrite: bool = False
    device: str = "auto"
    threads: int | None = None
    amp: str = "auto"
    max_minutes: float | None = None
    lebm_steps: int | None = None
    val_every: int = 1
    max_shift: int = 2
    half: bool = False
    command: str = ""
    real_fraction: float = 0.6
    pairs: int = 400
    redraw: float = 0.05
    workers: int = 0
    bank_cache: Path | None = None
    split: str | None = "train"
    val_split: str | None = "val"


def build_config(o: TrainOptions) -> Config:
    cfg = get_preset(o.preset or "default")
    upd = {"train.epochs": o.epochs, "train.batch_size": o.batch_size, "train.lr": o.lr,
           "train.energy_lr": o.energy_lr, "loss.kl_weight": o.kl_weight}
    upd = {k: v for k, v in upd.items() if v is not None}
    both = sorted(set(upd) & set(o.overrides))
    if both:  # two values for one field (a TypeError from inside Config.replace)
        flag = "--" + both[0].split(".")[1].replace("_", "-")
        raise InputError(f"{flag} and --set {both[0]}={o.overrides[both[0]]} both set {both[0]}; give only one of them")
    cfg = apply_sets(cfg, o.overrides, **upd)
    check_model_memory(cfg.model)  # before the phantom frame below or any network is built
    if cfg.model.spatial_dims == 3 and not cfg.model.centroid_offset_mm:  # stored, so inference crops alike
        from lsdebm.data.frame import model_offset_mm
        from lsdebm.data.pose import WORLD_AXES

        offset = WORLD_AXES.T @ np.asarray(model_offset_mm(cfg.model.grid, cfg.model.spacing))
        cfg = cfg.replace(**{"model.centroid_offset_mm": tuple(round(float(v), 3) for v in offset)})
    return cfg


def check_options(o: TrainOptions) -> None:
    if o.model not in MODEL_KINDS:
        raise InputError(f"--model {o.model!r} is not allowed; expected one of {', '.join(MODEL_KINDS)}")
    if (o.data is None) == (o.phantoms is None):
        raise InputError("give exactly one of --data DIR or --phantoms N")
    if o.phantoms is not None and o.phantoms < 1:
        raise InputError(f"--phantoms {o.phantoms} must be >= 1")
    if o.lebm_steps is not None and o.lebm_steps < 1:
        raise InputError(f"--lebm-steps {o.lebm_steps} must be >= 1 (posterior Langevin steps per visit)")
    if o.init_from is not None and o.resume is not None:
        raise InputError("--init-from starts a new run from a checkpoint's weights; --resume continues one: give one")
    if o.init_from is not None and not Path(o.init_from).is_file():
        raise InputError(f"--init-from {o.init_from}: checkpoint file not found")
    check_common(o)
    if o.amp not in ("auto", "bf16", "fp16", "off"):
        raise InputError(f"--amp {o.amp!r} is not allowed; expected auto, bf16, fp16 or off")
    if o.amp == "fp16" and (o.device == "cpu" or (o.device == "auto" and not torch.cuda.is_available())):
        raise InputError("--amp fp16 needs CUDA; on CPU use --amp bf16 or off")
    check_output(o)


def check_common(o: TrainOptions) -> None:
    """The data, bank and time options every model kind shares."""
    if o.data is not None and str(o.data) != "bundled" and not Path(o.data).exists():
        raise InputError(f"--data {o.data}: not found; expected a phantom set, a folder of real masks, a "
                         "manifest.csv or 'bundled'")
    for flag, value in (("--real-fraction", o.real_fraction), ("--redraw", o.redraw)):
        if not 0.0 <= value <= 1.0:
            raise InputError(f"{flag} {value:g} must be in [0, 1]")
    if o.pairs < 1:
        raise InputError(f"--pairs {o.pairs} must be >= 1")
    check_workers(o.workers)
    if o.bank_cache is not None and Path(o.bank_cache).exists() and not Path(o.bank_cache).is_dir():
        raise InputError(f"--bank-cache {o.bank_cache}: a file; expected a folder (created if missing)")
    if o.max_minutes is not None and not o.max_minutes > 0:  # NaN too: it never stopped the run
        raise InputError(f"--max-minutes {o.max_minutes} must be > 0")
    bad = [f"--{k.replace('_', '-')} {getattr(o, k)}" for k in ("seed", "data_seed", "val_seed")
           if not seed_ok(getattr(o, k))]
    if bad:  # numpy's generators take no negative seed (a ValueError from inside the phantom generator)
        raise InputError(f"{', '.join(bad)}: seeds must be >= 0 and < 2**63")
    if o.val_phantoms < 0 or o.val_every < 1 or o.max_shift < 0:
        raise InputError("--val-phantoms and --max-shift must be >= 0 and --val-every >= 1")


def load_data(o: TrainOptions, cfg: Config) -> tuple[MaskSet, MaskSet | None]:
    m = cfg.model
    real = o.data is not None and not is_phantom_set(o.data)
    source = None if str(o.data) == "bundled" else o.data
    if real:
        train = mixed_set(source, o.split, o.pairs, o.real_fraction, cfg, o.data_seed, o.redraw, o.workers,
                          o.bank_cache)
    elif o.data is not None:
        train = directory_set(o.data, m.grid, m.spatial_dims, need_lq=o.model == "reconnet")
    else:
        train = generated_set(o.phantoms, o.data_seed, m.grid, m.spacing, dims=m.spatial_dims)
    if o.model == "reconnet" and train.lq is None:
        raise InputError(f"{o.data}: reconnet needs low-quality masks in lq/")
    if o.val_phantoms <= 0:
        return train, None
    if real and o.val_split and has_split(source, o.val_split):  # real subjects never trained on
        return train, mixed_set(source, o.val_split, o.val_phantoms, 1.0, cfg, o.val_seed, 0.0, o.workers)
    return train, generated_set(o.val_phantoms, o.val_seed, m.grid, m.spacing, dims=m.spatial_dims)


def _amp_context(o: TrainOptions, device: torch.device):
    """Autocast: on CUDA by default (bf16 where supported, else fp16 with a GradScaler); on CPU
    only when asked with ``--amp bf16`` (oneDNN bf16 kernels: ~1.7x faster 3D convs on CPUs with
    AVX512-BF16/AMX; losses and sums stay float32)."""
    if device.type == "cpu" and o.amp == "bf16":
        return (lambda: torch.autocast("cpu", dtype=torch.bfloat16)), torch.bfloat16
    if device.type != "cuda" or o.amp == "off":
        return contextlib.nullcontext, None
    dtype = torch.float16 if o.amp == "fp16" or (o.amp == "auto" and not torch.cuda.is_bf16_supported()) \
        else torch.bfloat16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


def train(o: TrainOptions) -> dict[str, Any]:
    """Run training; returns the last epoch's row (the full record is in the checkpoint's ``info``)."""
    check_options(o)
    if o.threads:
        torch.set_num_threads(o.threads)
    ctx = D.init_distributed(o.device)
    try:
        return _train(o, ctx)
    finally:
        D.shutdown(ctx)


@dataclass
class _Run:
    """One run's state across epochs: what was built or resumed, and the progress counters."""

    cfg: Config
    model: torch.nn.Module
    fmt: torch.memory_format
    optimizers: list[torch.optim.Optimizer]
    train_set: MaskSet
    val_set: MaskSet | None
    lebm_steps: int
    latents: torch.Tensor | None
    previous_commands: list[str]
    started_from: dict[str, Any] | None  # --init-from: the checkpoint this run started from (path, sha256, training)
    start_epoch: int = 0
    rows: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    samples0: int = 0
    skipped: int = 0
    local_samples: int = 0
    stopped_early: bool = False


def _train(o: TrainOptions, ctx: D.DistContext) -> dict[str, Any]:
    """Train epoch by epoch (from where a resumed run stopped); returns the last epoch's row."""
    run = _setup(o, ctx)
    device, bs, epochs = ctx.device, run.cfg.train.batch_size, run.cfg.train.epochs
    step_module = TrainStep(run.model, run.cfg.train.train_K, run.lebm_steps).to(device)
    wrapped = DistributedDataParallel(step_module, device_ids=[device] if device.type == "cuda" else None) \
        if ctx.distributed else step_module
    autocast, amp_dtype = _amp_context(o, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    sampler = DistributedSampler(range(len(run.train_set)), ctx.world_size, ctx.rank, shuffle=True, seed=o.seed)
    steps_per_epoch = math.ceil(len(sampler) / bs)
    bar = tqdm(total=max(epochs - run.start_epoch, 0) * steps_per_epoch, disable=not ctx.is_main, file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, desc=f"train {o.model}", unit="it")
    t_start = time.perf_counter()
    try:
        for epoch in range(1, run.start_epoch if run.train_set.refresh is not None else 0):
            run.train_set.refresh(epoch)  # a resumed run's bank: the pairs the stopped run had re-drawn up to here
        for epoch in range(run.start_epoch, epochs):
            sampler.set_epoch(epoch)
            if run.train_set.refresh is not None and epoch > 0:
                run.train_set.refresh(epoch)
            cpu_gen = torch.Generator().manual_seed(o.seed * 100003 + epoch * 1009 + ctx.rank)
            dev_gen = torch.Generator(device=device).manual_seed(o.seed * 100019 + epoch * 2003 + ctx.rank)
            order = list(sampler)
            sums: dict[str, float] = {}
            n_good = 0
            t_epoch = time.perf_counter()
            run.model.train()
            for b in range(steps_per_epoch):
                idx = torch.tensor(order[b * bs:(b + 1) * bs], dtype=torch.long)
                n_good += _step(o, ctx, run, wrapped, autocast, scaler, idx, (cpu_gen, dev_gen), sums)
                run.local_samples += len(idx)
                bar.update(1)
                bar.set_postfix({k: f"{v / max(n_good, 1):.4g}" for k, v in sums.items()}, refresh=False)
                elapsed = time.perf_counter() - t_start
                set_lr(run.optimizers, run.cfg, (epoch - run.start_epoch) * steps_per_epoch + b + 1,
                       (epochs - run.start_epoch) * steps_per_epoch, elapsed, o.max_minutes)
                over = o.max_minutes is not None and elapsed > o.max_minutes * 60
                if D.all_reduce_mean(torch.tensor([float(over)]), ctx).item() > 0:
                    run.stopped_early = True
                    break
            _end_epoch(o, ctx, run, epoch, b + 1, time.perf_counter() - t_epoch, sums, n_good, order, bar)
            D.barrier(ctx)
            if run.stopped_early:
                break
    finally:  # the progress line ends before an error or "interrupted" is printed
        bar.close()
    return run.rows[-1] if run.rows else {}


def _setup(o: TrainOptions, ctx: D.DistContext) -> _Run:
    """Config (the checkpoint's when resuming), model, optimisers, data and LEBM latents of a run."""
    source = o.resume or o.init_from
    resume_meta = read_metadata(source) if source else None  # --init-from: its config too, not its optimisers
    cfg = resume_meta["config"] if resume_meta else build_config(o)
    if resume_meta:  # the checkpoint's config, with the options that may change between runs
        upd = {"train.epochs": o.epochs, "train.lr": o.lr, "train.energy_lr": o.energy_lr,
               "train.batch_size": o.batch_size if o.init_from else None}
        cfg = cfg.replace(**{k: v for k, v in upd.items() if v is not None})
    if resume_meta and resume_meta["kind"] != o.model:
        raise InputError(f"{flag_of(o)} {source} holds a {resume_meta['kind']} model, not {o.model}")
    previous_commands = []
    if resume_meta:
        warn_ignored(o, cfg)
        old_info = resume_meta["info"]
        previous_commands = old_info.get("commands") or ([old_info["command"]] if old_info.get("command") else [])
    torch.manual_seed(o.seed)
    model = build_model(o.model, cfg)
    fmt = torch.channels_last_3d if cfg.model.spatial_dims == 3 else torch.channels_last
    model = model.to(device=ctx.device, memory_format=fmt)
    optimizers = make_optimizers(model, cfg.train.lr, cfg.train.energy_lr)
    resumed = load_sidecar(o, model, optimizers, cfg.train.epochs) if o.resume else None  # before the data
    started_from = init_weights(o, model) if o.init_from else None
    train_set, val_set = load_data(o, cfg)
    if o.resume:  # (a run --init-from may take other data)
        check_same_run(o, resume_meta["info"].get("train_data"), train_set.description)
    latents = None
    if o.model == "lebm":  # persistent posterior chains start, like Pang et al.'s, from the reference N(0, s^2 I)
        latents = reference_latents(cfg, len(train_set), torch.Generator().manual_seed(o.seed))
    run = _Run(cfg, model, fmt, optimizers, train_set, val_set, o.lebm_steps or cfg.lebm.posterior_steps, latents,
               previous_commands, started_from)
    if resumed:
        resume_state(run, *resumed)
    return run


def _step(o, ctx, run: _Run, wrapped, autocast, scaler, idx: torch.Tensor, gens, sums: dict[str, float]) -> bool:
    """One optimiser step on cases ``idx``; False, and no update on any rank, when a rank's loss is not finite."""
    cpu_gen, dev_gen = gens
    target = run.train_set.hq[idx].float()
    x = run.train_set.lq[idx].float() if o.model == "reconnet" else target
    x, target = augment([x, target], cpu_gen, o.max_shift)
    x = x.to(ctx.device, memory_format=run.fmt)
    target = target.to(ctx.device, memory_format=run.fmt)
    z_init = run.latents[idx].to(ctx.device) if run.latents is not None else None
    with autocast():
        losses = wrapped(x, target, z_init, dev_gen)
    total = losses["loss_g"] + losses.get("loss_e", 0.0)
    for opt in run.optimizers:
        opt.zero_grad(set_to_none=True)
    bad = D.all_reduce_mean(torch.tensor([float(not torch.isfinite(total.detach()))]), ctx).item() > 0
    if bad:  # a diverged Langevin chain on some rank: no update anywhere; LEBM chains restart
        run.skipped += 1
        if run.latents is not None:
            run.latents[idx] = reference_latents(run.cfg, len(idx), cpu_gen)
        return False
    scaler.scale(total).backward()
    for opt in run.optimizers:
        scaler.step(opt)
    scaler.update()
    if run.latents is not None:
        run.latents[idx] = losses["z_post"].float().cpu()
    for k in ("loss_g", "loss_e", "recon"):
        if k in losses:
            sums[k] = sums.get(k, 0.0) + float(losses[k].detach())
    return True


def _end_epoch(o, ctx, run: _Run, epoch, n_steps, epoch_seconds, sums, n_good, order, bar) -> None:
    """Combine the epoch's counters over ranks; rank 0 validates, logs the row and writes checkpoint + sidecar."""
    run.train_seconds += epoch_seconds
    per_rank = D.all_gather_ints(run.local_samples, ctx)
    samples = run.samples0 + sum(per_rank)
    means = D.all_reduce_mean(torch.tensor([v / max(n_good, 1) for v in sums.values()]), ctx).tolist()
    if run.latents is not None and ctx.distributed:
        run.latents = _merge_latents(run.latents, order, ctx)
    row = {"epoch": epoch + 1, "steps": n_steps, **dict(zip(sums, means)), "epoch_s": round(epoch_seconds, 2),
           "train_s": round(run.train_seconds, 1), "lr": float(f"{run.optimizers[0].param_groups[0]['lr']:.4g}"),
           "samples_per_s": round(n_steps * run.cfg.train.batch_size * ctx.world_size / epoch_seconds, 3),
           "skipped_nonfinite": run.skipped}
    if not ctx.is_main:
        return
    last = run.stopped_early or epoch + 1 == run.cfg.train.epochs
    if run.val_set is not None and ((epoch + 1) % o.val_every == 0 or last):
        row.update({k: round(v, 5) for k, v in validation_dice(run.model, run.val_set, o.val_seed).items()})
    run.rows.append(row)
    bar.write(f"epoch {epoch + 1}/{run.cfg.train.epochs}: " + ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    info = checkpoint_info(o, run.cfg, run.train_set, run.val_set, ctx, run.rows, run.train_seconds, samples,
                 run.lebm_steps, epoch + 1, run.stopped_early)
    info["samples_per_rank_this_run"] = per_rank
    info["commands"] = run.previous_commands + [o.command]  # every run that produced these weights
    if run.started_from:
        info["init_from"] = run.started_from
    write_csv(csv_path(o.out), run.rows)
    save_checkpoint(run.model, o.out, info=info, half=o.half, overwrite=True)
    save_state(sidecar_path(o.out), run.model, run.optimizers, run.latents,
               {"epoch": epoch + 1, "rows": run.rows, "train_seconds": run.train_seconds, "samples": samples})


def lr_factor(cfg: Config, progress: float) -> float:
    """Multiplier of the start learning rates at ``progress`` in [0, 1] (``train.lr_schedule``)."""
    if cfg.train.lr_schedule == "constant":
        return 1.0
    floor = cfg.train.lr_floor
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def set_lr(optimizers, cfg: Config, step: int, total_steps: int, elapsed_s: float,
           max_minutes: float | None) -> None:
    """Set both optimisers' rates for the next step; progress counts this run's steps and time."""
    progress = step / max(total_steps, 1)
    if max_minutes is not None:
        progress = max(progress, elapsed_s / (max_minutes * 60))
    f = lr_factor(cfg, progress)
    for opt, lr in zip(optimizers, (cfg.train.lr, cfg.train.energy_lr)):
        for group in opt.param_groups:
            group["lr"] = lr * f


def _merge_latents(latents: torch.Tensor, order: list[int], ctx: D.DistContext) -> torch.Tensor:
    """Combine the persistent LEBM latents each rank advanced for its own cases."""
    mask = torch.zeros(len(latents))
    mask[torch.tensor(order, dtype=torch.long)] = 1.0
    buf = latents * mask[:, None]
    D.all_reduce_sum_(buf, ctx)
    D.all_reduce_sum_(mask, ctx)
    return torch.where(mask[:, None] > 0, buf / mask.clamp(min=1)[:, None], latents)

