"""``lsdebm train``: train a VAE, LEBM, LSD-EBM or ReconNet (also under ``torchrun``)."""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from lsdebm.config import MODEL_KINDS, parse_sets
from lsdebm.errors import InputError

SLAB_MODEL = "slabnet"
#: Options only real masks use (``--data`` a folder, manifest or 'bundled'), with their defaults.
REAL_DATA_DEFAULTS = {"real_fraction": 0.6, "pairs": 400, "redraw": 0.05, "workers": 0, "bank_cache": None,
                      "split": "train", "val_split": "val"}


def _add_start_options(p: argparse.ArgumentParser) -> None:
    """Where a run starts from, and whether it may replace its output."""
    p.add_argument("--resume", type=Path, help="continue from this checkpoint and its .optim.safetensors sidecar")
    p.add_argument("--init-from", type=Path, metavar="CKPT",
                   help="start a new run (fine-tuning) from this checkpoint's weights and config, with a fresh "
                        "optimiser and schedule (slabnet: a 1 mm block it lacks starts at zero)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train", help="train a model and write a .safetensors checkpoint",
        description="Train VAE/LEBM/LSD-EBM on high-quality masks (input = target) or ReconNet on (lq, hq) "
                    "pairs. Runs unchanged under `torchrun --nproc_per_node N` (DDP). Writes OUT, OUT's "
                    "per-epoch CSV (OUT.csv with .safetensors replaced) and the resumable optimiser sidecar "
                    "(.optim.safetensors).")
    p.add_argument("--model", required=True, choices=(*MODEL_KINDS, SLAB_MODEL),
                   help=f"what to train: {', '.join(MODEL_KINDS)}, or {SLAB_MODEL} (the learned slab interpolation "
                        "of the output step; trains on --data)")
    p.add_argument("--preset", help="config preset: default (when not given), paper, reference, tiny; a resumed "
                                     "run keeps its checkpoint's")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", type=Path,
                     help="a phantom-set directory (hq/ and lq/ on the model grid), or real high-quality masks: a "
                          "folder of NIfTI files of any spacing and orientation, a manifest.csv, or 'bundled' "
                          "(the shipped set); real masks are mixed with phantoms (--real-fraction) and augmented "
                          "and degraded on the fly")
    src.add_argument("--phantoms", type=int, help="generate N training phantoms in memory (TRAIN_RANGES)")
    p.add_argument("--out", required=True, type=Path, help="checkpoint to write (.safetensors)")
    p.add_argument("--data-seed", type=int, default=1000, help="seed of generated training phantoms (default 1000)")
    p.add_argument("--val-phantoms", type=int, default=20, help="validation phantoms (default 20; 0 = none)")
    p.add_argument("--val-seed", type=int, default=2000, help="seed of the validation phantoms (default 2000)")
    p.add_argument("--val-every", type=int, default=1, help="validate every N epochs (and at the end)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="encoder/decoder (or ReconNet) learning rate")
    p.add_argument("--energy-lr", type=float, help="energy network learning rate (LSD-EBM, LEBM)")
    p.add_argument("--kl-weight", type=float, help="weight of the encoder KL term (cfg.loss.kl_weight)")
    p.add_argument("--lebm-steps", type=int, help="LEBM posterior Langevin steps per iteration on the persistent "
                                                   "per-case latents (default cfg.lebm.posterior_steps)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="override any config field, e.g. --set train.train_K=20 (repeatable)")
    p.add_argument("--seed", type=int, default=0, help="seed of initialisation, shuffling and noise")
    _add_start_options(p)
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, help="torch CPU threads per process")
    p.add_argument("--amp", default="auto", choices=("auto", "bf16", "fp16", "off"),
                   help="mixed precision: on CUDA auto = bf16 if supported, else fp16 + GradScaler; "
                        "on CPU off unless bf16 is given (faster on AVX512-BF16/AMX CPUs)")
    p.add_argument("--max-minutes", type=float, help="stop (and save) once training has run this long")
    p.add_argument("--max-shift", type=int, default=2, help="augmentation: max integer shift in voxels")
    p.add_argument("--half", action="store_true", help="store the checkpoint weights as float16")
    p.add_argument("--real-fraction", type=float,
                   help="real data: share of pairs made from real masks, the rest phantoms (default 0.6)")
    p.add_argument("--pairs", type=int, help="real data: pairs in the training bank (default 400)")
    p.add_argument("--redraw", type=float,
                   help="real data: share of the bank re-drawn (new augmentation) every epoch (default 0.05)")
    p.add_argument("--workers", type=int,
                   help="real data: processes drawing the bank's pairs (default 0 = this process; the bank is "
                        "the same for any number; worth it on a GPU, which a pair every ~0.3 s keeps waiting)")
    p.add_argument("--bank-cache", type=Path, metavar="DIR",
                   help="real data: keep the training bank's first draw in DIR and reuse it when every setting "
                        "it depends on is the same (runs side by side draw it once)")
    p.add_argument("--split",
                   help="real data: manifest split to train on (default train; 'all' for every row)")
    p.add_argument("--val-split",
                   help="real data: manifest split validated on (default val; --val-phantoms cases); 'none', "
                        "or a folder/manifest without that split, validates on phantoms")
    return p


def command_line(args) -> str:
    """The equivalent ``lsdebm train ...`` command of the parsed options (stored in the checkpoint)."""
    if sys.argv[1:2] == ["train"]:
        return shlex.join(["lsdebm", *sys.argv[1:]])
    parts = ["lsdebm", "train"]
    for key, value in vars(args).items():
        if key in ("run", "command") or value is None or value is False or value == []:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "sets":
            for item in value:
                parts += ["--set", item]
        else:
            parts += [flag] if value is True else [flag, str(value)]
    return shlex.join(parts)


def fill_real_data_options(args) -> None:
    """Refuse the real-data options where no real masks are read (they were ignored without a word), then
    give the ones not set their defaults."""
    from lsdebm.train.data import is_phantom_set

    given = [key for key in REAL_DATA_DEFAULTS if getattr(args, key) is not None]
    if given and (args.phantoms is not None or is_phantom_set(args.data)):
        flags = ", ".join("--" + key.replace("_", "-") for key in given)
        source = f"--phantoms {args.phantoms}" if args.phantoms is not None else f"the phantom set {args.data}"
        raise InputError(f"{flags}: real-data options; they apply to real masks (--data FOLDER, a manifest.csv or "
                         f"'bundled'), and {source} has none")
    for key, value in REAL_DATA_DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, value)


def run(args) -> int:
    from lsdebm.train.loop import TrainOptions, train

    fill_real_data_options(args)
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads {args.threads} must be >= 1")
    opts = TrainOptions(
        model=args.model, out=args.out, preset=args.preset, data=args.data, phantoms=args.phantoms,
        data_seed=args.data_seed, val_phantoms=args.val_phantoms, val_seed=args.val_seed, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, energy_lr=args.energy_lr, kl_weight=args.kl_weight,
        overrides=parse_sets(args.sets), seed=args.seed, resume=args.resume, init_from=args.init_from,
        overwrite=args.overwrite,
        device=args.device, threads=args.threads, amp=args.amp, max_minutes=args.max_minutes,
        lebm_steps=args.lebm_steps, val_every=args.val_every, max_shift=args.max_shift, half=args.half,
        command=command_line(args), real_fraction=args.real_fraction, pairs=args.pairs, redraw=args.redraw,
        workers=args.workers, bank_cache=args.bank_cache,
        split=None if args.split == "all" else args.split,
        val_split=None if args.val_split == "none" else args.val_split)
    if args.model == SLAB_MODEL:
        from lsdebm.train.slab import train_slab

        summary = train_slab(opts)
    else:
        summary = train(opts)
    if summary:
        print(f"wrote {args.out} (epoch {summary.get('epoch')}, val_dsc {summary.get('val_dsc', 'n/a')})")
    return 0
