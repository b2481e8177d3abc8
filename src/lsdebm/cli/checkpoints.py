"""``lsdebm checkpoints``: list the bundled checkpoints (or given files) with their metadata."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register the ``checkpoints`` subcommand."""
    p = subparsers.add_parser("checkpoints", help="list bundled checkpoints with their metadata",
                              description="Kind, preset, grid/spacing, T, K, training data, test metrics "
                                          "(from test_metrics.json when recorded for this exact file), size, sha256.")
    p.add_argument("files", nargs="*", metavar="FILE", help="describe these .safetensors files instead")
    p.add_argument("--json", action="store_true", help="print JSON")
    return p


def describe(path: Path, name: str | None = None) -> dict[str, Any]:
    """Metadata summary of one checkpoint file (header read only, plus a sha256 of the file)."""
    from lsdebm.evaluation.phantoms import training_seconds
    from lsdebm.evaluation.report import recorded_metrics
    from lsdebm.nn.slabnet import SlabNet
    from lsdebm.runtime.checkpoint import read_metadata, sha256_of

    meta = read_metadata(path, {SlabNet.kind: SlabNet})
    cfg, info = meta["config"], meta["info"]
    sha = sha256_of(path)
    name = name or path.stem
    entry = {"name": name, "path": str(path), "kind": meta["kind"], "preset": cfg.preset,
             "grid": cfg.model.grid, "spacing_mm": cfg.model.spacing, "latent_dim": cfg.model.latent_dim,
             "T": cfg.schedule.T, "K": cfg.langevin.K, "recon_steps": cfg.langevin.recon_steps,
             "size_mb": round(path.stat().st_size / 2**20, 2), "sha256": sha,
             "description": info.get("description"), "training_data": info.get("train_data", info.get("training_data")),
             "training_seconds": training_seconds(info),
             "command": info.get("command"), "test_metrics": None}
    recorded = recorded_metrics(name, sha)
    if recorded is not None:
        entry["test_metrics"] = recorded
    elif isinstance(info.get("test_metrics"), dict):
        entry["test_metrics"] = info["test_metrics"]
    return entry


def _data_summary(data: Any) -> str | None:
    """One line for the training-data record written by ``lsdebm train``."""
    if isinstance(data, dict) and data.get("source") == "generated":
        thick = (data.get("ranges") or {}).get("thickness")
        return (f"{data.get('n')} generated phantoms, seed {data.get('seed')}, {data.get('grid')}^3 @ "
                f"{data.get('spacing_mm')} mm" + (f", slices {thick[0]:g}-{thick[1]:g} mm" if thick else ""))
    if isinstance(data, dict) and data.get("source") == "slab examples":
        redraw = 100 * float(data.get("redraw_per_epoch") or 0)
        return (f"{data.get('real_examples')} examples from {len(data.get('real_masks') or [])} real masks + "
                f"{data.get('phantom_examples')} phantom examples, {redraw:g} % re-drawn per epoch")
    if isinstance(data, dict) and data.get("source") == "mixed":
        thick = (data.get("simulator_ranges") or {}).get("thickness")
        return (f"{data.get('real_pairs')} pairs from {len(data.get('real_masks') or [])} real masks "
                f"(split {data.get('split')}) + {data.get('phantom_pairs')} phantom pairs, "
                f"{100 * float(data.get('redraw_per_epoch') or 0):g} % re-drawn per epoch, {data.get('frame')} frame"
                + (f", slices {thick[0]:g}-{thick[1]:g} mm" if thick else ""))
    return data if isinstance(data, str) or data is None else json.dumps(data, default=str)


def _headline(metrics: dict[str, Any] | None) -> str:
    if not metrics:
        return "not evaluated"
    rows = metrics.get("rows", {})
    parts = []
    for row, cols in rows.items():
        dsc = cols.get("dsc", {})
        if dsc.get("mean") is not None:
            parts.append(f"{row} DSC {dsc['mean']:.3f}" + (f"±{dsc['std']:.3f}" if dsc.get("std") is not None else ""))
    return "; ".join(parts) or "recorded"


def run(args) -> int:
    """Print the table (or JSON)."""
    from lsdebm.errors import LsdebmError
    from lsdebm.runtime.checkpoint import bundled_checkpoints
    from lsdebm.runtime.loading import DEFAULT_SLAB, SLAB_DIR

    if args.files:
        items = [(Path(f), None) for f in args.files]
    else:
        items = [(p, name) for name, p in bundled_checkpoints().items()]
        slab = SLAB_DIR / f"{DEFAULT_SLAB}.safetensors"
        items += [(slab, DEFAULT_SLAB)] if slab.is_file() else []
    entries = []
    for path, name in items:
        try:
            entries.append(describe(path, name))
        except LsdebmError as exc:  # list the others; a single bad file must not hide them
            if args.files:
                raise
            entries.append({"name": name or path.stem, "path": str(path), "error": str(exc)})
    if args.json:
        print(json.dumps(entries, indent=2, default=str))
        return 0
    if not entries:
        print("no bundled checkpoints installed")
        return 0
    for e in entries:
        if "error" in e:
            print(f"{e['name']}  unreadable: {e['error']}")
            continue
        data = _data_summary(e["training_data"])
        if e["kind"] == "slabnet":  # not a model-frame method: its own line
            print(f"{e['name']}  [slabnet, the output step's learned slab interpolation at 1 mm]  "
                  f"{e['size_mb']:.1f} MB  sha256 {e['sha256'][:12]}")
            print(f"    {e['description']}\n    training data: {data or 'n/a'}")
            continue
        sampler = {"lsdebm": f", T={e['T']} K={e['K']} t*={e['recon_steps']}"}.get(e["kind"], "")
        trained = f", trained {e['training_seconds'] / 60:.0f} min" if e["training_seconds"] else ""
        print(f"{e['name']}  [{e['kind']}, preset {e['preset']}]  {e['grid']}^3 @ {e['spacing_mm']:g} mm{sampler}"
              f"{trained}  {e['size_mb']:.1f} MB  sha256 {e['sha256'][:12]}")
        if e["description"]:
            print(f"    {e['description']}")
        print(f"    training data: {data or 'n/a'}")
        print(f"    test metrics: {_headline(e['test_metrics'])}")
    return 0
