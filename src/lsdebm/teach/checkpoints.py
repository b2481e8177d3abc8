"""The bundled teaching checkpoints and a loader for the teaching-only model kinds.

Files use the ordinary lsdebm checkpoint format (safetensors + config JSON, written by
:func:`lsdebm.runtime.checkpoint.save_checkpoint`, never pickle). ``lsdebm``/``lebm`` files load through
:func:`lsdebm.runtime.checkpoint.load_checkpoint`; the teaching-only kinds (``pixel_ebm``,
``digits_classifier``, ``toy``) load through the same function with their constructors added.
"""
from __future__ import annotations

from pathlib import Path

from lsdebm.errors import CheckpointError
from lsdebm.runtime.checkpoint import BUNDLED_DIR, LoadedCheckpoint, load_checkpoint

TEACH_DIR = BUNDLED_DIR / "teach"
#: role -> bundled file stem
TEACH_NAMES = {"lsdebm": "lsdebm-digits16", "lebm": "lebm-digits16", "ebm": "ebm-digits16",
               "classifier": "digits-classifier16", "toy": "toy-mog"}
TEACH_KINDS = ("pixel_ebm", "digits_classifier", "toy")


def teach_builders() -> dict:
    """Constructors (``cls(config)``) of the teaching-only kinds, for :func:`load_checkpoint`'s ``extra_kinds``."""
    from lsdebm.teach.fid import DigitsClassifier
    from lsdebm.teach.pixel_ebm import PixelEBM
    from lsdebm.teach.toy import ToyModel

    return {"pixel_ebm": PixelEBM, "digits_classifier": DigitsClassifier, "toy": ToyModel}


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
    path = Path(name_or_path)
    if not path.exists() and path.suffix.lower() in ("", ".safetensors"):  # not the 3D bundled names the loader
        # would list; other suffixes (.pt) reach it for its own answer (pickles are never loaded)
        what = "no such teaching checkpoint" if not path.suffix and len(path.parts) == 1 else "no such checkpoint file"
        raise CheckpointError(f"{text}: {what}; expected one of {', '.join(TEACH_NAMES)}, {', '.join(stems)} "
                              "or an existing .safetensors file")
    return path


def load_teach(name_or_path: str | Path, expect_kind: str | None = None, device: str = "cpu") -> LoadedCheckpoint:
    """Load any teaching checkpoint (eval mode, float32) and check its kind against ``expect_kind``.

    The one checkpoint loader (:func:`lsdebm.runtime.checkpoint.load_checkpoint`) does the work,
    with the teaching-only kinds added: the same header, shape, checksum and finite-weight checks.
    """
    return load_checkpoint(resolve_teach(name_or_path), device, expect_kind, extra_kinds=teach_builders())
