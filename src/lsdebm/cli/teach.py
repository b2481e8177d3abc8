"""``lsdebm teach``: train the 2D teaching models, generate digits, print the DFD comparison.

    lsdebm teach train --model all --out src/lsdebm/checkpoints/teach --overwrite
    lsdebm teach generate --model lsdebm --n 64 --out samples.png
    lsdebm teach compare --n 1000
"""
from __future__ import annotations

import argparse
import json
import struct
import time
import zlib
from pathlib import Path

ROLES = ("lsdebm", "lebm", "ebm", "classifier", "toy")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``teach`` with its ``train``, ``generate`` and ``compare`` actions."""
    parser = subparsers.add_parser("teach", help="2D teaching models: train, generate digits, compare (DFD)")
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    tr = sub.add_parser("train", help="train teaching checkpoints on the CPU (minutes)")
    tr.add_argument("--model", choices=ROLES + ("all",), default="all")
    tr.add_argument("--out", type=Path, required=True, help="output folder for <name>.safetensors")
    tr.add_argument("--iterations", type=int, default=None, help="override the default iteration budget")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    tr.add_argument("--overwrite", action="store_true", help="replace existing checkpoint files")
    ge = sub.add_parser("generate", help="generate digits from noise and save a PNG mosaic or .npy")
    ge.add_argument("--model", default="lsdebm", help="lsdebm, lebm, ebm or a .safetensors path")
    ge.add_argument("--n", type=int, default=64)
    ge.add_argument("--seed", type=int, default=0)
    ge.add_argument("--out", type=Path, required=True, help="a .png (mosaic) or .npy (N, H, W) file")
    ge.add_argument("--overwrite", action="store_true")
    co = sub.add_parser("compare", help="print the Digits Fréchet Distance table (EBM, LEBM, LSD-EBM)")
    co.add_argument("--n", type=int, default=1000, help="samples per method (default 1000)")
    co.add_argument("--seed", type=int, default=0)
    co.add_argument("--threads", type=int, default=1)
    co.add_argument("--json", type=Path, default=None, help="also write the rows as JSON")
    co.add_argument("--overwrite", action="store_true")
    return parser


def _train_one(role: str, args) -> tuple:
    """Train ``role``; returns (model, info) for the checkpoint."""
    from lsdebm.data.digits import load_digits

    start_cpu = time.process_time()
    if role == "toy":
        from lsdebm.teach.toy import TOY_ITERATIONS, train_toy
        iterations = args.iterations or TOY_ITERATIONS
        model, seconds = train_toy(iterations, args.seed)
        info = {"data": "mixture of 6 Gaussians on a ring", "iterations": iterations}
    elif role == "classifier":
        from lsdebm.teach.fid import train_classifier
        if args.iterations is not None:  # it trained its fixed epochs without a word
            import warnings

            from lsdebm.errors import InputWarning
            warnings.warn(f"--iterations {args.iterations}: the classifier trains for a fixed number of epochs "
                          "(30); ignored for it", InputWarning, stacklevel=2)
        train, test = load_digits(16, "train"), load_digits(16, "test")
        result = train_classifier(train.images, train.labels, test.images, test.labels, args.seed)
        model, seconds = result.model, result.seconds
        info = {"data": train.source, "test_accuracy": round(result.test_accuracy, 4)}
        print(f"  classifier test accuracy {result.test_accuracy:.3f}")
    else:
        from lsdebm.teach.train2d import train_digits
        data = load_digits(16, "train")

        def progress(it, total, last):
            if it % max(1, total // 5) == 0:
                print(f"  {role} {it}/{total} " + " ".join(f"{k}={v:.3g}" for k, v in last.items()), flush=True)

        result = train_digits(role, data.images, args.iterations, args.seed, progress=progress)
        model, seconds = result.model, result.seconds
        info = {"data": data.source, "iterations": result.iterations}
    info.update({"wall_seconds": round(seconds, 1), "cpu_seconds": round(time.process_time() - start_cpu, 1),
                 "seed": args.seed, "threads": args.threads,
                 "command": f"lsdebm teach train --model {role} --seed {args.seed}"})
    return model, info


def check_values(args) -> None:
    """One line for a bad number, before any checkpoint is loaded, trained or sampled.

    Found by the run otherwise: ``--threads 0`` and a seed above 2**63 were torch tracebacks, a negative
    seed a numpy one, ``--iterations 0`` trained the full default budget (the toy) or divided by zero (the
    digits models), a negative one wrote an untrained checkpoint with exit 0, ``compare --n -1`` was a
    numpy traceback.
    """
    from lsdebm.data.validate import seed_ok
    from lsdebm.errors import InputError

    if not seed_ok(args.seed):
        raise InputError(f"--seed {args.seed}: seeds must be >= 0 and < 2**63")
    threads, iterations = getattr(args, "threads", 1), getattr(args, "iterations", None)
    if threads < 1:
        raise InputError(f"--threads {threads} must be >= 1")
    if iterations is not None and iterations < 1:
        raise InputError(f"--iterations {iterations} must be >= 1 (leave it out for the default budget)")
    least = 2 if args.action == "compare" else 1  # a Fréchet distance needs a covariance
    if getattr(args, "n", None) is not None and args.n < least:
        raise InputError(f"--n {args.n} must be >= {least}" + (" (a Fréchet distance needs two samples)"
                                                                 if least == 2 else ""))


def check_samples_memory(n: int, grid: int) -> None:
    """Refuse an ``--n`` whose images (float32, and the float64 mosaic a PNG is made of) exceed the memory
    limit, before sampling: ``--n 100000000`` ran for hours, batch after batch, towards that allocation."""
    from lsdebm.teach.generate import check_samples_memory as check

    check(n, grid, f"--n {n}", 4 + 8)


def refuse_an_input(target: Path, loaded: dict) -> None:
    """``compare --json`` naming a checkpoint the comparison reads replaced it with JSON (with --overwrite), and every
    later comparison failed; --overwrite replaces outputs, never inputs."""
    from lsdebm.errors import InputError
    from lsdebm.fileio import same_file

    for role, ckpt in loaded.items():
        if same_file(target, ckpt.path):
            raise InputError(f"--json {target}: this run reads that file (the {role} checkpoint); writing there would "
                             "replace it (--overwrite replaces outputs, never inputs); choose another --json")


def _train(args) -> int:
    import torch

    from lsdebm.errors import InputError
    from lsdebm.fileio import check_target, check_writable
    from lsdebm.runtime.checkpoint import save_checkpoint
    from lsdebm.teach.checkpoints import TEACH_NAMES

    torch.set_num_threads(args.threads)
    roles = ROLES if args.model == "all" else (args.model,)
    targets = {role: args.out / f"{TEACH_NAMES[role]}.safetensors" for role in roles}
    existing = [str(p) for p in targets.values() if p.exists()]
    if existing and not args.overwrite:
        raise InputError(f"{', '.join(existing)} already exist(s); pass --overwrite to replace")
    for target in targets.values():  # an --out under a file or in /proc: refused before training, not after
        check_writable(check_target(target, args.overwrite))
    for role in roles:
        print(f"training {role} ...", flush=True)
        model, info = _train_one(role, args)
        save_checkpoint(model, targets[role], info=info, overwrite=args.overwrite)
        print(f"  wrote {targets[role]} ({targets[role].stat().st_size / 1024:.0f} KiB) in "
              f"{info['wall_seconds']} s wall / {info['cpu_seconds']} s CPU", flush=True)
    return 0


def write_png(path: Path, image, overwrite: bool = False) -> Path:
    """Write a greyscale image in [0, 1] as an 8-bit PNG (zlib only, no imaging dependency)."""
    import numpy as np

    from lsdebm.fileio import atomic_write

    data = (np.clip(np.asarray(image, dtype=np.float64), 0, 1) * 255).round().astype(np.uint8)
    h, w = data.shape
    raw = b"".join(b"\x00" + data[i].tobytes() for i in range(h))

    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body) & 0xFFFFFFFF)

    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
           + chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))
    return atomic_write(path, lambda tmp: tmp.write_bytes(png), overwrite=overwrite)


def write_npy(path: Path, array, overwrite: bool = False) -> Path:
    """Write ``array`` as ``.npy`` under exactly ``path`` (``d.NPY`` included), atomically."""
    import numpy as np

    from lsdebm.fileio import atomic_write

    def write(tmp: Path) -> None:  # through a handle: np.save appends ".npy" to a name not ending in exactly that
        with open(tmp, "wb") as handle:
            np.save(handle, array)

    return atomic_write(path, write, overwrite=overwrite)


def _generate(args) -> int:
    import math

    from lsdebm.data.digits import digit_mosaic
    from lsdebm.errors import InputError
    from lsdebm.fileio import check_target, check_writable
    from lsdebm.methods import RunSettings
    from lsdebm.teach.checkpoints import load_teach
    from lsdebm.teach.generate import sample_images

    if args.out.suffix.lower() not in (".png", ".npy"):
        raise InputError(f"{args.out}: output must end in .png or .npy")
    check_writable(check_target(args.out, args.overwrite))  # before sampling, not after
    model = load_teach(args.model).model
    check_samples_memory(args.n, model.cfg.model.grid)
    images = sample_images(model, args.n, RunSettings(seed=args.seed))
    if args.out.suffix.lower() == ".npy":
        write_npy(args.out, images, overwrite=args.overwrite)
    else:
        write_png(args.out, digit_mosaic(images, int(math.ceil(math.sqrt(args.n)))), overwrite=args.overwrite)
    print(f"wrote {args.n} samples to {args.out}")
    return 0


def _compare(args) -> int:
    import torch

    from lsdebm.data.digits import load_digits
    from lsdebm.fileio import atomic_write, check_target, check_writable
    from lsdebm.teach.checkpoints import load_teach
    from lsdebm.teach.compare import compare_methods, format_table

    if args.json:  # refused before the comparison (minutes), not after
        check_writable(check_target(args.json, args.overwrite))
    torch.set_num_threads(args.threads)
    loaded = {role: load_teach(role) for role in ("ebm", "lebm", "lsdebm")}
    loaded["classifier"] = load_teach("classifier", expect_kind="digits_classifier")
    if args.json:
        refuse_an_input(args.json, loaded)
    models = {role: ckpt.model for role, ckpt in loaded.items() if role != "classifier"}
    check_samples_memory(args.n, models["lsdebm"].cfg.model.grid)
    classifier = loaded["classifier"].model
    rows = compare_methods(models, classifier, load_digits(16, "test").images, load_digits(16, "train").images,
                           n=args.n, seed=args.seed, log=print)
    print(format_table(rows))
    if args.json:
        text = json.dumps([r.__dict__ for r in rows], indent=2)
        atomic_write(args.json, lambda tmp: tmp.write_text(text), overwrite=args.overwrite)
    return 0


def run(args) -> int:
    check_values(args)
    return {"train": _train, "generate": _generate, "compare": _compare}[args.action](args)
