"""The per-epoch CSV beside the checkpoint (rewritten atomically after every epoch) and the run summary
stored in the checkpoint's ``info``."""
from __future__ import annotations

import csv
from pathlib import Path

import torch

from lsdebm.fileio import atomic_write


def write_csv(path: Path, rows: list[dict]) -> Path:
    """Write ``rows`` (dicts; columns = union of keys in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)

    return atomic_write(path, write, overwrite=True)


_NAMES = {"lsdebm": "LSD-EBM", "vae": "VAE", "lebm": "LEBM", "reconnet": "ReconNet"}


def checkpoint_info(o, cfg, train_set, val_set, ctx, rows, train_seconds, samples, lebm_steps, epochs_done,
                    stopped_early):
    """The summary of a run so far that the checkpoint stores as ``info``."""
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
