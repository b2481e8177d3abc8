"""Checkpoints: safetensors weights with the full config and metadata inside. Never pickle.

A checkpoint file holds the model's state dict (optionally stored as float16) and string
metadata ``{"format", "format_version", "kind", "config", "info"}`` where ``config`` is the
JSON of :class:`lsdebm.config.Config` (the schedule included) and ``info`` free JSON (training
data, command, test metrics, library version, ...). Loading rebuilds the model from the file
alone. ``.pt``/``.pth``/``.pkl`` files are refused without being opened.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lsdebm import __version__
from lsdebm.config import MODEL_KINDS, Config
from lsdebm.errors import CheckpointError, LsdebmError
from lsdebm.fileio import atomic_write

FORMAT = "lsdebm-checkpoint"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
BUNDLED_DIR = Path(__file__).parent / "checkpoints"


@dataclass
class LoadedCheckpoint:
    model: torch.nn.Module
    config: Config
    kind: str
    info: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""
    path: Path | None = None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save_checkpoint(model: torch.nn.Module, path: str | Path, info: dict[str, Any] | None = None,
                    half: bool = False, overwrite: bool = False) -> Path:
    """Write ``model`` (with ``model.cfg`` and ``model.kind``) atomically as safetensors."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": model.kind,
            "config": model.cfg.to_json(),
            "info": json.dumps({"library_version": __version__, **(info or {})}, default=str)}
    return atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta), overwrite=overwrite)


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Header-only read: kind, config and info of a checkpoint, without loading tensors."""
    path = _check_path(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{path}: safetensors file without lsdebm metadata (format={meta.get('format')!r}); "
                              "expected a checkpoint written by napari-lsdebm")
    try:
        version = int(meta.get("format_version", "0"))
    except ValueError:
        raise CheckpointError(f"{path}: corrupt format_version {meta.get('format_version')!r}") from None
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: checkpoint format version {version} is newer than supported "
                              f"({FORMAT_VERSION}); upgrade napari-lsdebm")
    kind = meta.get("kind")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{path}: unknown model kind {kind!r}; expected one of {', '.join(MODEL_KINDS)}")
    try:
        config = Config.from_json(meta["config"])
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError, TypeError, LsdebmError) as exc:
        raise CheckpointError(f"{path}: checkpoint config is missing or invalid ({exc})") from None
    return {"kind": kind, "config": config, "info": info, "keys": keys}


def _check_path(path: Path) -> Path:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints ({path.suffix}) are never loaded because unpickling can run code; "
            f"convert authors' state dicts with `lsdebm convert` or save with lsdebm.checkpoint.save_checkpoint")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size < 16:
        raise CheckpointError(f"{path}: checkpoint file is empty or truncated")
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu",
                    expect_kind: str | None = None) -> LoadedCheckpoint:
    """Rebuild a model from a checkpoint file alone (eval mode, float32, on ``device``)."""
    from lsdebm.models import build_model

    path = Path(resolve_checkpoint(path))
    meta = read_metadata(path)
    if expect_kind and meta["kind"] != expect_kind:
        raise CheckpointError(f"{path}: checkpoint holds a {meta['kind']} model, expected {expect_kind}")
    model = build_model(meta["kind"], meta["config"])
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: checkpoint tensors unreadable or truncated ({exc})") from None
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(state), set(state) - set(expected)
    bad = [k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or bad:
        parts = [f"missing {sorted(missing)[:3]}" if missing else "", f"unexpected {sorted(unexpected)[:3]}"
                 if unexpected else "", f"shape mismatch {sorted(bad)[:3]}" if bad else ""]
        raise CheckpointError(f"{path}: tensors do not match its config ({'; '.join(p for p in parts if p)})")
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedCheckpoint(model, meta["config"], meta["kind"], meta["info"], sha256_of(path), path)


def bundled_checkpoints() -> dict[str, Path]:
    """Bundled checkpoints by name (file stem), e.g. ``lsdebm-default``."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.safetensors"))}


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A bundled name (``lsdebm-default``) or a path to a ``.safetensors`` file."""
    bundled = bundled_checkpoints()
    if str(name_or_path) in bundled:
        return bundled[str(name_or_path)]
    path = Path(name_or_path)
    if path.suffix.lower() in PICKLE_SUFFIXES or path.exists():
        return path
    names = ", ".join(bundled) or "none installed"
    raise CheckpointError(f"{name_or_path}: no such checkpoint file or bundled name (bundled: {names})")
