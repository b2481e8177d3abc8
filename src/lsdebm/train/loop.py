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

from lsdebm.config import MODEL_KINDS, Config, check_model_memory, get_preset
from lsdebm.errors import InputError
from lsdebm.nn import build_model
from lsdebm.nn.lebm import reference_latents
from lsdebm.runtime import distributed as D
from lsdebm.runtime.checkpoint import read_metadata, save_checkpoint
from lsdebm.train.data import MaskSet, augment, directory_set, generated_set, has_split, is_phantom_set, mixed_set
from lsdebm.train.log import write_csv
from lsdebm.train.state import load_state, save_state, sidecar_path
from lsdebm.train.steps import TrainStep, make_optimizers
from lsdebm.train.validate import validation_dice


@dataclass
class TrainOptions:
    """Everything ``lsdebm train`` accepts (see ``lsdebm train --help``)."""

    model: str
    out: Path
    preset: str = "default"
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
    split: str | None = "train"
    val_split: str | None = "val"


def build_config(o: TrainOptions) -> Config:
    cfg = get_preset(o.preset)
    upd = {"train.epochs": o.epochs, "train.batch_size": o.batch_size, "train.lr": o.lr,
           "train.energy_lr": o.energy_lr, "loss.kl_weight": o.kl_weight}
    upd = {k: v for k, v in upd.items() if v is not None}
    cfg = cfg.replace(**upd, **o.overrides)
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
    if o.data is not None and str(o.data) != "bundled" and not Path(o.data).exists():
        raise InputError(f"--data {o.data}: not found; expected a phantom set, a folder of real masks, a "
                         "manifest.csv or 'bundled'")
    if not 0.0 <= o.real_fraction <= 1.0 or not 0.0 <= o.redraw <= 1.0 or o.pairs < 1:
        raise InputError(f"--real-fraction {o.real_fraction} and --redraw {o.redraw} must be in [0, 1], "
                         f"--pairs {o.pairs} >= 1")
    if o.val_phantoms < 0 or o.val_every < 1 or o.max_shift < 0:
        raise InputError("--val-phantoms and --max-shift must be >= 0 and --val-every >= 1")
    if o.amp not in ("auto", "bf16", "fp16", "off"):
        raise InputError(f"--amp {o.amp!r} is not allowed; expected auto, bf16, fp16 or off")
    if o.amp == "fp16" and (o.device == "cpu" or (o.device == "auto" and not torch.cuda.is_available())):
        raise InputError("--amp fp16 needs CUDA; on CPU use --amp bf16 or off")
    if o.max_minutes is not None and o.max_minutes <= 0:
        raise InputError(f"--max-minutes {o.max_minutes} must be > 0")
    out = Path(o.out)
    if not out.name.endswith(".safetensors"):
        raise InputError(f"--out {out}: checkpoints are written as .safetensors files")
    if out.exists() and not o.overwrite and (o.resume is None or Path(o.resume).resolve() != out.resolve()):
        raise InputError(f"--out {out} already exists; pass --overwrite to replace it or --resume {out} to continue")
    if o.resume is not None and not Path(o.resume).is_file():
        raise InputError(f"--resume {o.resume}: checkpoint file not found")


def load_data(o: TrainOptions, cfg: Config) -> tuple[MaskSet, MaskSet | None]:
    m = cfg.model
    real = o.data is not None and not is_phantom_set(o.data)
    source = None if str(o.data) == "bundled" else o.data
    if real:
        train = mixed_set(source, o.split, o.pairs, o.real_fraction, cfg, o.data_seed, o.redraw)
    elif o.data is not None:
        train = directory_set(o.data, m.grid, m.spatial_dims, need_lq=o.model == "reconnet")
    else:
        train = generated_set(o.phantoms, o.data_seed, m.grid, m.spacing, dims=m.spatial_dims)
    if o.model == "reconnet" and train.lq is None:
        raise InputError(f"{o.data}: reconnet needs low-quality masks in lq/")
    if o.val_phantoms <= 0:
        return train, None
    if real and o.val_split and has_split(source, o.val_split):  # real subjects never trained on
        return train, mixed_set(source, o.val_split, o.val_phantoms, 1.0, cfg, o.val_seed, 0.0)
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
    """Run training; returns the summary that is also stored in the checkpoint's ``info``."""
    check_options(o)
    if o.threads:
        torch.set_num_threads(o.threads)
    ctx = D.init_distributed(o.device)
    try:
        return _train(o, ctx)
    finally:
        D.shutdown(ctx)


def _train(o: TrainOptions, ctx: D.DistContext) -> dict[str, Any]:
    resume_meta = read_metadata(o.resume) if o.resume else None
    cfg = resume_meta["config"] if resume_meta else build_config(o)
    if resume_meta:  # the checkpoint's config, with the options that may change between runs
        upd = {"train.epochs": o.epochs, "train.lr": o.lr, "train.energy_lr": o.energy_lr}
        cfg = cfg.replace(**{k: v for k, v in upd.items() if v is not None})
    if resume_meta and resume_meta["kind"] != o.model:
        raise InputError(f"--resume {o.resume} holds a {resume_meta['kind']} model, not {o.model}")
    previous_commands = []
    if resume_meta:
        old_info = resume_meta["info"]
        previous_commands = old_info.get("commands") or ([old_info["command"]] if old_info.get("command") else [])
    device = ctx.device
    torch.manual_seed(o.seed)
    model = build_model(o.model, cfg)
    fmt = torch.channels_last_3d if cfg.model.spatial_dims == 3 else torch.channels_last
    model = model.to(device=device, memory_format=fmt)
    optimizers = make_optimizers(model, cfg.train.lr, cfg.train.energy_lr)
    train_set, val_set = load_data(o, cfg)
    lebm_steps = o.lebm_steps or cfg.lebm.posterior_steps
    latents = None
    if o.model == "lebm":  # persistent posterior chains start, like Pang et al.'s, from the reference N(0, s^2 I)
        latents = reference_latents(cfg, len(train_set), torch.Generator().manual_seed(o.seed))
    start_epoch, rows, elapsed0, samples0 = 0, [], 0.0, 0
    if o.resume:
        side = sidecar_path(o.resume)
        if not side.is_file():
            raise InputError(f"--resume {o.resume}: training-state sidecar {side} not found (it holds the "
                             "optimiser state; copy it next to the checkpoint)")
        meta, saved_latents = load_state(side, model, optimizers)
        start_epoch, rows = int(meta["epoch"]), meta.get("rows", [])
        elapsed0, samples0 = float(meta.get("train_seconds", 0.0)), int(meta.get("samples", 0))
        if latents is not None and saved_latents is not None and saved_latents.shape == latents.shape:
            latents = saved_latents
        if start_epoch >= cfg.train.epochs:
            raise InputError(f"--resume {o.resume}: already trained for {start_epoch} epochs; pass --epochs "
                             f"above {start_epoch} to continue")
        for opt, lr in zip(optimizers, (cfg.train.lr, cfg.train.energy_lr)):
            for group in opt.param_groups:
                group["lr"] = lr
    step_module = TrainStep(model, cfg.train.train_K, lebm_steps).to(device)
    wrapped = DistributedDataParallel(step_module, device_ids=[device] if device.type == "cuda" else None) \
        if ctx.distributed else step_module
    autocast, amp_dtype = _amp_context(o, device)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    sampler = DistributedSampler(range(len(train_set)), ctx.world_size, ctx.rank, shuffle=True, seed=o.seed)
    bs, epochs = cfg.train.batch_size, cfg.train.epochs
    steps_per_epoch = math.ceil(len(sampler) / bs)
    bar = tqdm(total=max(epochs - start_epoch, 0) * steps_per_epoch, disable=not ctx.is_main, file=sys.stderr,
               mininterval=1.0 if sys.stderr.isatty() else 30.0, desc=f"train {o.model}", unit="it")
    train_seconds, samples, stopped_early, skipped, local_samples = elapsed0, samples0, False, 0, 0
    t_start = time.perf_counter()
    epoch = start_epoch
    for epoch in range(start_epoch, epochs):
        sampler.set_epoch(epoch)
        if train_set.refresh is not None and epoch > 0:
            train_set.refresh(epoch)
        cpu_gen = torch.Generator().manual_seed(o.seed * 100003 + epoch * 1009 + ctx.rank)
        dev_gen = torch.Generator(device=device).manual_seed(o.seed * 100019 + epoch * 2003 + ctx.rank)
        order = list(sampler)
        sums: dict[str, float] = {}
        n_good = 0
        t_epoch = time.perf_counter()
        model.train()
        for b in range(steps_per_epoch):
            idx = torch.tensor(order[b * bs:(b + 1) * bs], dtype=torch.long)
            target = train_set.hq[idx].float()
            x = train_set.lq[idx].float() if o.model == "reconnet" else target
            x, target = augment([x, target], cpu_gen, o.max_shift)
            x = x.to(device, memory_format=fmt)
            target = target.to(device, memory_format=fmt)
            z_init = latents[idx].to(device) if latents is not None else None
            with autocast():
                losses = wrapped(x, target, z_init, dev_gen)
            total = losses["loss_g"] + losses.get("loss_e", 0.0)
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            bad = D.all_reduce_mean(torch.tensor([float(not torch.isfinite(total.detach()))]), ctx).item() > 0
            if bad:  # a diverged Langevin chain on some rank: no update anywhere; LEBM chains restart
                skipped += 1
                if latents is not None:
                    latents[idx] = reference_latents(cfg, len(idx), cpu_gen)
            else:
                scaler.scale(total).backward()
                for opt in optimizers:
                    scaler.step(opt)
                scaler.update()
                n_good += 1
                if latents is not None:
                    latents[idx] = losses["z_post"].float().cpu()
                for k in ("loss_g", "loss_e", "recon"):
                    if k in losses:
                        sums[k] = sums.get(k, 0.0) + float(losses[k].detach())
            local_samples += len(idx)
            bar.update(1)
            bar.set_postfix({k: f"{v / max(n_good, 1):.4g}" for k, v in sums.items()}, refresh=False)
            elapsed = time.perf_counter() - t_start
            set_lr(optimizers, cfg, (epoch - start_epoch) * steps_per_epoch + b + 1,
                   (epochs - start_epoch) * steps_per_epoch, elapsed, o.max_minutes)
            over = o.max_minutes is not None and elapsed > o.max_minutes * 60
            if D.all_reduce_mean(torch.tensor([float(over)]), ctx).item() > 0:
                stopped_early = True
                break
        n_steps = b + 1
        epoch_seconds = time.perf_counter() - t_epoch
        train_seconds += epoch_seconds
        per_rank = D.all_gather_ints(local_samples, ctx)
        samples = samples0 + sum(per_rank)
        means = D.all_reduce_mean(torch.tensor([v / max(n_good, 1) for v in sums.values()]), ctx).tolist()
        if latents is not None and ctx.distributed:
            latents = _merge_latents(latents, order, ctx)
        row = {"epoch": epoch + 1, "steps": n_steps, **dict(zip(sums, means)), "epoch_s": round(epoch_seconds, 2),
               "train_s": round(train_seconds, 1), "lr": float(f"{optimizers[0].param_groups[0]['lr']:.4g}"),
               "samples_per_s": round(n_steps * bs * ctx.world_size / epoch_seconds, 3),
               "skipped_nonfinite": skipped}
        last = stopped_early or epoch + 1 == epochs
        if ctx.is_main:
            if val_set is not None and ((epoch + 1) % o.val_every == 0 or last):
                row.update({k: round(v, 5) for k, v in validation_dice(model, val_set, o.val_seed).items()})
            rows.append(row)
            bar.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                                 for k, v in row.items()))
            info = _info(o, cfg, train_set, val_set, ctx, rows, train_seconds, samples, lebm_steps, epoch + 1,
                         stopped_early)
            info["samples_per_rank_this_run"] = per_rank
            info["commands"] = previous_commands + [o.command]  # every run that produced these weights
            write_csv(csv_path(o.out), rows)
            save_checkpoint(model, o.out, info=info, half=o.half, overwrite=True)
            save_state(sidecar_path(o.out), model, optimizers, latents,
                       {"epoch": epoch + 1, "rows": rows, "train_seconds": train_seconds, "samples": samples})
        D.barrier(ctx)
        if stopped_early:
            break
    bar.close()
    return rows[-1] if rows else {}


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


def csv_path(out: Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".csv") if not out.name.endswith(".safetensors") else \
        out.with_name(out.name[: -len(".safetensors")] + ".csv")


def _merge_latents(latents: torch.Tensor, order: list[int], ctx: D.DistContext) -> torch.Tensor:
    """Combine the persistent LEBM latents each rank advanced for its own cases."""
    mask = torch.zeros(len(latents))
    mask[torch.tensor(order, dtype=torch.long)] = 1.0
    buf = latents * mask[:, None]
    D.all_reduce_sum_(buf, ctx)
    D.all_reduce_sum_(mask, ctx)
    return torch.where(mask[:, None] > 0, buf / mask.clamp(min=1)[:, None], latents)


_NAMES = {"lsdebm": "LSD-EBM", "vae": "VAE", "lebm": "LEBM", "reconnet": "ReconNet"}


def _info(o, cfg, train_set, val_set, ctx, rows, train_seconds, samples, lebm_steps, epochs_done, stopped_early):
    last = rows[-1]
    val_rows = [r for r in rows if "val_dsc" in r]
    info = {
        "description": f"{_NAMES[o.model]} trained with `lsdebm train` at the {cfg.preset} preset "
                       f"({cfg.model.grid}^{cfg.model.spatial_dims} @ {cfg.model.spacing:g} mm)",
        "command": o.command, "model": o.model, "preset": cfg.preset,
        "train_data": train_set.description,
        "val_data": val_set.description if val_set is not None else None,
        "epochs": epochs_done, "epochs_planned": cfg.train.epochs, "stopped_early_max_minutes": stopped_early,
        "wall_time_s": round(train_seconds, 1), "samples_seen": samples,
        "samples_per_s": round(samples / max(train_seconds, 1e-9), 3),
        "final_val_dsc": val_rows[-1]["val_dsc"] if val_rows else None,
        "device": str(ctx.device), "world_size": ctx.world_size, "threads": torch.get_num_threads(),
        "augmentation": {"lr_flip": True, "max_shift_voxels": o.max_shift}, "seed": o.seed,
        "torch_version": torch.__version__, "final_losses": {k: v for k, v in last.items() if k.startswith("loss")},
    }
    if val_rows and "val_dsc_ae" in val_rows[-1]:
        info["final_val_dsc_autoencoder"] = val_rows[-1]["val_dsc_ae"]
    if o.model == "lebm":
        info["lebm_training"] = {"persistent_posterior_latents": True, "posterior_steps_per_iteration": lebm_steps,
                                 "posterior_step_size": cfg.lebm.posterior_step_size}
    if o.model == "lsdebm":
        info["lsdebm_training"] = {"train_K": cfg.train.train_K, "kl_weight": cfg.loss.kl_weight}
    return info
