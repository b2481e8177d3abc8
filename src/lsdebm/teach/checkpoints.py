"""The bundled teaching checkpoints and a loader for the teaching-only model kinds.

Files use the ordinary lsdebm checkpoint format (safetensors + config JSON, written by
:func:`lsdebm.runtime.checkpoint.save_checkpoint`, never pickle). ``lsdebm``/``lebm`` files load through
:func:`lsdebm.runtime.checkpoint.load_checkpoint`; the teaching-only kinds (``pixel_ebm``,
``digits_classifier``, ``toy``) are rebuilt here from the same metadata.
"""
from __future__ import annotations

import json
from pathlib import Path

from safetensors import SafetensorError, safe_open

from lsdebm.runtime.checkpoint import BUNDLED_DIR, FORMAT, PICKLE_SUFFIXES, LoadedCheckpoint, load_checkpoint, sha256_of, verify_state
from lsdebm.config import MODEL_KINDS, Config
from lsdebm.errors import CheckpointError, LsdebmError

TEACH_DIR = BUNDLED_DIR / "teach"
#: role -> bundled file stem
TEACH_NAMES = {"lsdebm": "lsdebm-digits16", "lebm": "lebm-digits16", "ebm": "ebm-digits16",
               "classifier": "digits-classifier16", "toy": "toy-mog"}
TEACH_KINDS = ("pixel_ebm", "digits_classifier", "toy")


def _builder(kind: str):
    if kind == "pixel_ebm":
        from lsdebm.teach.pixel_ebm import PixelEBM
        return PixelEBM
    if kind == "digits_classifier":
        from lsdebm.teach.fid import DigitsClassifier
        return DigitsClassifier
    from lsdebm.teach.toy import ToyModel
    return ToyModel


def bundled_teach_path(role: str) -> Path:
    """Path of the bundled checkpoint for ``role`` (lsdebm, lebm, ebm, classifier, toy)."""
    if role not in TEACH_NAMES:
        raise CheckpointError(f"unknown teaching checkpoint {role!r}; expected one of {', '.join(TEACH_NAMES)}")
    path = TEACH_DIR / f"{TEACH_NAMES[role]}.safetensors"
    if not path.is_file():
        raise CheckpointError(f"{path}: bundled teaching checkpoint is missing; create it with "
                              f"`lsdebm teach train --model all --out {TEACH_DIR}`")
    return path


def resolve_teach(name_or_path: str | Path) -> Path:
    """A role (``lsdebm``), a bundled stem (``lsdebm-digits16``) or a path to a ``.safetensors`` file."""
    text = str(name_or_path)
    if text in TEACH_NAMES:
        return bundled_teach_path(text)
    stems = {v: k for k, v in TEACH_NAMES.items()}
    if text in stems:
        return bundled_teach_path(stems[text])
    return Path(name_or_path)


def load_teach(name_or_path: str | Path, expect_kind: str | None = None, device: str = "cpu") -> LoadedCheckpoint:
    """Load any teaching checkpoint (eval mode, float32) and check its kind against ``expect_kind``."""
    path = resolve_teach(name_or_path)
    if path.suffix.lower() in PICKLE_SUFFIXES or not path.is_file():
        return load_checkpoint(path, device, expect_kind)  # raises its clear error
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors checkpoint ({exc})") from None
    kind = meta.get("kind")
    if meta.get("format") != FORMAT or kind not in MODEL_KINDS + TEACH_KINDS:
        raise CheckpointError(f"{path}: not an lsdebm teaching checkpoint (format={meta.get('format')!r}, "
                              f"kind={kind!r}); expected one of {', '.join(MODEL_KINDS + TEACH_KINDS)}")
    if expect_kind and kind != expect_kind:
        raise CheckpointError(f"{path}: checkpoint holds a {kind} model, expected {expect_kind}")
    if kind in MODEL_KINDS:
        return load_checkpoint(path, device, expect_kind)
    verify_state(path, meta, state)  # checksum and finite weights, as for the 3D models
    try:
        config = Config.from_json(meta["config"])
        model = _builder(kind)(config)
        expected = model.state_dict()
        if set(expected) != set(state) or any(expected[k].shape != state[k].shape for k in expected):
            raise CheckpointError(f"{path}: tensors do not match the {kind} config")
        model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})
    except (KeyError, ValueError, TypeError) as exc:
        raise CheckpointError(f"{path}: checkpoint config is missing or invalid ({exc})") from None
    except LsdebmError as exc:
        raise CheckpointError(str(exc)) from None
    info = json.loads(meta.get("info", "{}"))
    return LoadedCheckpoint(model.to(device).eval(), config, kind, info, sha256_of(path), path)
