"""Checkpoints: safetensors weights with the full config and metadata inside. Never pickle.

A checkpoint file holds the model's state dict (optionally stored as float16) and string
metadata ``{"format", "format_version", "kind", "config", "info"}`` where ``config`` is the
JSON of :class:`lsdebm.config.Config` (the schedule included) and ``info`` free JSON (training
data, command, test metrics, library version, ...). Loading rebuilds the model from the file
alone. ``.pt``/``.pth``/``.pkl`` files are refused without being opened.

Loading is defensive, in this order: the header is parsed without reading tensors; the
model is built from the config on PyTorch's ``meta`` device (no memory) and its tensor names
and shapes must equal the header's (so a small file cannot make the loader allocate a huge
model); the tensors are read; ``content_sha256`` (written since this check exists: a SHA-256
over the metadata and every tensor) must match, so a bit flip or an edit anywhere is refused
rather than loaded silently; every weight must be finite. Each failure is a one-line
:class:`~lsdebm.errors.CheckpointError` naming the file.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from lsdebm import __version__
from lsdebm.config import MODEL_KINDS, Config
from lsdebm.data.validate import as_path
from lsdebm.errors import CheckpointError, LsdebmError
from lsdebm.fileio import atomic_write
from lsdebm.limits import check_memory
from lsdebm.runtime.device import resolve_device

FORMAT = "lsdebm-checkpoint"
FORMAT_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin")
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"
DIGEST_KEY = "content_sha256"
_DIGESTED = ("format", "format_version", "kind", "config", "info")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


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
                    half: bool = False, overwrite: bool = False, config: Config | None = None) -> Path:
    """Write ``model`` (with ``model.cfg`` and ``model.kind``) atomically as safetensors.

    ``config`` stores another config than ``model.cfg`` with the same weights (new sampling
    defaults, :func:`with_sampling_settings`); the model itself is not changed.
    """
    config = model.cfg if config is None else config
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    meta = {"format": FORMAT, "format_version": str(FORMAT_VERSION), "kind": model.kind,
            "config": config.to_json(),
            "info": json.dumps({"library_version": __version__, **(info or {})}, default=str)}
    meta[DIGEST_KEY] = content_digest(state, meta)
    return atomic_write(Path(path), lambda tmp: save_file(state, str(tmp), metadata=meta), overwrite=overwrite)


def content_digest(state: dict[str, torch.Tensor], meta: dict[str, str]) -> str:
    """SHA-256 over the metadata fields ``_DIGESTED`` and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps([meta.get(k) for k in _DIGESTED]).encode())
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(json.dumps([name, str(t.dtype), list(t.shape)]).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _unreadable(path: Path, what: str, exc: BaseException) -> CheckpointError:
    message = " ".join(str(exc).split()) or type(exc).__name__
    return CheckpointError(f"{path}: {what} ({message}); expected a complete safetensors checkpoint written by "
                           "napari-lsdebm")


def _finite(t: torch.Tensor) -> bool:
    """All values finite (numpy: far faster than torch's threaded kernels on a busy CPU)."""
    return bool(np.isfinite((t.float() if t.dtype == torch.bfloat16 else t).numpy()).all())


def _is_panic(exc: BaseException) -> bool:
    """safetensors' Rust code reports some malformed files as a pyo3 ``PanicException`` (a BaseException)."""
    return type(exc).__name__ == "PanicException"


# checkpoints of this package that another command reads: named, not called "unknown", where they are refused
USED_ELSEWHERE = {"slabnet": "the output step's slab interpolation: pass it as --slab-model",
                  "pixel_ebm": "a teaching model: lsdebm teach", "digits_classifier": "a teaching model: lsdebm teach",
                  "toy": "a teaching model: lsdebm teach"}


def read_metadata(path: str | Path, extra_kinds: Iterable[str] = ()) -> dict[str, Any]:
    """Header-only read: kind, config and info of a checkpoint, without loading tensors.

    ``extra_kinds`` are model kinds accepted besides :data:`lsdebm.config.MODEL_KINDS` (the
    teaching models, :mod:`lsdebm.teach.checkpoints`).
    """
    path = _check_path(Path(path))
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            keys = list(f.keys())
            shapes = {k: (f.get_slice(k).get_dtype(), tuple(f.get_slice(k).get_shape())) for k in keys}
    except Exception as exc:  # SafetensorError, OSError, ValueError, ... for any malformed header
        raise _unreadable(path, "not a readable safetensors checkpoint", exc) from None
    except BaseException as exc:
        if _is_panic(exc):
            raise _unreadable(path, "not a readable safetensors checkpoint", exc) from None
        raise
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
    kinds = (*MODEL_KINDS, *extra_kinds)
    if kind not in kinds:
        what = f"holds a {kind} model ({USED_ELSEWHERE[kind]})" if kind in USED_ELSEWHERE else \
            f"unknown model kind {kind!r}"
        raise CheckpointError(f"{path}: {what}; expected one of {', '.join(kinds)}")
    try:
        config = Config.from_json(meta["config"])
        info = json.loads(meta.get("info", "{}"))
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError, LsdebmError) as exc:
        raise CheckpointError(f"{path}: checkpoint config is missing or invalid ({exc})") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{path}: checkpoint info is not a JSON object; expected a checkpoint written by "
                              "napari-lsdebm")
    return {"kind": kind, "config": config, "info": info, "keys": keys, "shapes": shapes,
            "digest": meta.get(DIGEST_KEY), "meta": meta}


def _check_path(path: Path) -> Path:
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise CheckpointError(
            f"{path}: pickle checkpoints ({path.suffix}) are never loaded because unpickling can run code; "
            "convert authors' state dicts with `lsdebm convert` or save with "
            "lsdebm.runtime.checkpoint.save_checkpoint")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; expected a .safetensors checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size < 16:
        raise CheckpointError(f"{path}: checkpoint file is empty or truncated")
    return path


def verify_state(path: str | Path, metadata: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """Check tensors read from ``path`` against its raw safetensors ``metadata``.

    The content SHA-256 (when the file has one) must match and every floating-point weight must
    be finite. Loaders of other model kinds (e.g. the teaching models) call this too.

    Raises:
        CheckpointError: On a checksum mismatch (corrupted or edited file) or NaN/inf weights.
    """
    digest = metadata.get(DIGEST_KEY)
    if digest is not None and content_digest(state, metadata) != digest:
        raise CheckpointError(f"{path}: contents do not match the checksum stored when it was saved (the file is "
                              "corrupted or was edited); expected an intact checkpoint")
    bad = [k for k, v in state.items() if v.is_floating_point() and not _finite(v)]
    if bad:
        raise CheckpointError(f"{path}: weights contain NaN or infinite values (e.g. {sorted(bad)[0]}); the training "
                              "run probably diverged, expected finite weights")


def _build_checked(path: Path, meta: dict[str, Any], build: Callable[[str, Config], torch.nn.Module]
                   ) -> torch.nn.Module:
    """Build the model on the ``meta`` device, check names/shapes against the header, then build it for real."""
    try:
        with torch.device("meta"):
            skeleton = build(meta["kind"], meta["config"])
    except Exception as exc:  # a config that passes validation but cannot build a network
        raise CheckpointError(f"{path}: its config cannot build a {meta['kind']} model ({exc})") from None
    expected = skeleton.state_dict()
    stored = meta["shapes"]
    missing, unexpected = set(expected) - set(stored), set(stored) - set(expected)
    bad = [k for k in set(expected) & set(stored) if tuple(expected[k].shape) != stored[k][1]
           or (expected[k].is_floating_point() and stored[k][0] not in ("F16", "BF16", "F32", "F64"))]
    if missing or unexpected or bad:
        parts = [f"missing {sorted(missing)[:3]}" if missing else "", f"unexpected {sorted(unexpected)[:3]}"
                 if unexpected else "", f"shape/dtype mismatch {sorted(bad)[:3]}" if bad else ""]
        raise CheckpointError(f"{path}: tensors do not match its config ({'; '.join(p for p in parts if p)}); "
                              "expected the tensors of the model its config describes")
    need = sum(t.numel() * t.element_size() for t in expected.values())
    need += sum(math.prod(shape) * _DTYPE_BYTES.get(dtype, 8) for dtype, shape in stored.values())
    check_memory(need, f"{path}: the {meta['kind']} model")
    return build(meta["kind"], meta["config"])


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", expect_kind: str | None = None,
                    extra_kinds: Mapping[str, Callable[[Config], torch.nn.Module]] | None = None
                    ) -> LoadedCheckpoint:
    """Rebuild a model from a checkpoint file alone (eval mode, float32, on ``device``).

    ``extra_kinds`` maps further model kinds to their constructors (``cls(config)``); the
    teaching models load through it with the same checks as the 3D models.

    Raises:
        InputError: For a ``device`` that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` of this machine, or a
            ``path`` that is no str or os.PathLike.
        CheckpointError: If the file is a pickle, missing, truncated, corrupt, edited, from a
            newer format version, of another kind than ``expect_kind``, has tensors that do not
            match its config, or non-finite weights (see the module docstring).
    """
    device = resolve_device(device)  # an unknown device, or CUDA without CUDA: one InputError, not torch's
    as_path(path, "checkpoint", "; give a .safetensors file or a bundled checkpoint name")  # None: TypeError
    path = Path(resolve_checkpoint(path))
    extra_kinds = dict(extra_kinds or {})
    meta = read_metadata(path, extra_kinds)
    if expect_kind and meta["kind"] != expect_kind:
        raise CheckpointError(f"{path}: checkpoint holds a {meta['kind']} model, expected {expect_kind}")

    def build(kind: str, config: Config) -> torch.nn.Module:
        if kind in extra_kinds:
            return extra_kinds[kind](config)
        from lsdebm.nn import build_model

        return build_model(kind, config)

    model = _build_checked(path, meta, build)
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:
        raise _unreadable(path, "checkpoint tensors unreadable or truncated", exc) from None
    except BaseException as exc:
        if _is_panic(exc):
            raise _unreadable(path, "checkpoint tensors unreadable or truncated", exc) from None
        raise
    verify_state(path, meta["meta"], state)
    expected = model.state_dict()
    state = {k: v.to(expected[k].dtype) for k, v in state.items()}
    model.load_state_dict(state)
    model.to(device).eval()
    return LoadedCheckpoint(model, meta["config"], meta["kind"], meta["info"], sha256_of(path), path)


def bundled_checkpoints() -> dict[str, Path]:
    """Bundled checkpoints by name (file stem), e.g. ``lsdebm-default``."""
    return {p.stem: p for p in sorted(BUNDLED_DIR.glob("*.safetensors")) if not p.stem.endswith(".optim")}


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


SAMPLING_FIELDS = ("lebm.posterior_steps", "lebm.posterior_step_size", "lebm.inference_prior_sigma",
                   "langevin.recon_steps", "langevin.K", "langevin.step_size", "langevin.noise_scale",
                   "langevin.init", "consistency.weight", "consistency.steps", "consistency.step_size",
                   "consistency.noise_scale", "consistency.projection", "consistency.margin",
                   "consistency.interpolation")


def with_sampling_settings(src: str | Path, dst: str | Path, settings: dict[str, Any], reason: str,
                           overwrite: bool = False,
                           extra_kinds: Mapping[str, Callable[[Config], torch.nn.Module]] | None = None) -> Path:
    """Write a copy of checkpoint ``src`` to ``dst`` whose config has new sampling defaults.

    Only the test-time sampling fields in ``SAMPLING_FIELDS`` may change (weights and training
    settings never do); the old and new values and ``reason`` are appended to the copy's
    ``info.sampling_changes`` so the provenance of every default stays in the file. Only fields whose value
    changes are recorded: a copy whose settings are already the asked ones (a fine-tuned checkpoint inherits its
    source's) gets no entry.
    ``extra_kinds`` as for :func:`load_checkpoint` (e.g. the slab interpolation model).
    """
    bad = sorted(set(settings) - set(SAMPLING_FIELDS))
    if bad:
        raise CheckpointError(f"{bad} are not sampling settings; expected some of {', '.join(SAMPLING_FIELDS)}")
    if not reason.strip():
        raise CheckpointError("say why the sampling defaults change (reason), e.g. which validation run chose them")
    loaded = load_checkpoint(src, extra_kinds=extra_kinds)
    old = {key: getattr(getattr(loaded.config, key.split(".")[0]), key.split(".")[1]) for key in settings}
    config = loaded.config.replace(**settings)  # a new value: the loaded model and its config stay as read
    changed = [key for key in settings if old[key] != getattr(getattr(config, key.split(".")[0]), key.split(".")[1])]
    changes = [*loaded.info.get("sampling_changes", [])]
    if changed:
        changes.append({"from": {k: old[k] for k in changed}, "to": {k: settings[k] for k in changed},
                        "reason": reason})
    info = {k: v for k, v in loaded.info.items() if k != "library_version"}
    return save_checkpoint(loaded.model, dst, {**info, "sampling_changes": changes}, overwrite=overwrite,
                           config=config)
