"""Resumable training state in a safetensors sidecar ``FILE.optim.safetensors`` (no pickle).

Holds the float32 model weights (the checkpoint itself may be float16), every optimiser's
per-parameter tensors, LEBM's persistent posterior latents, and JSON metadata (the model kind, epoch,
step, optimiser hyper-parameters, elapsed time, CSV rows so far).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from lsdebm.errors import CheckpointError
from lsdebm.fileio import atomic_write

SIDECAR_FORMAT = "lsdebm-train-state"


def sidecar_path(checkpoint: str | Path) -> Path:
    """``run.safetensors`` -> ``run.optim.safetensors`` (any other name gets the suffix appended)."""
    p = Path(checkpoint)
    stem = p.name[: -len(".safetensors")] if p.name.endswith(".safetensors") else p.name
    return p.with_name(stem + ".optim.safetensors")


def save_state(path: Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
               latents: torch.Tensor | None, meta: dict[str, Any]) -> Path:
    tensors = {f"model.{k}": v.detach().float().cpu().contiguous() if v.is_floating_point()
               else v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    groups = []
    for i, opt in enumerate(optimizers):
        sd = opt.state_dict()
        for idx, st in sd["state"].items():
            for name, value in st.items():
                tensors[f"opt{i}.{idx}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
        groups.append(sd["param_groups"])
    if latents is not None:
        tensors["lebm.latents"] = latents.detach().cpu().contiguous()
    meta = {"kind": getattr(model, "kind", None), **meta, "param_groups": groups}  # the kind: whose state it is
    header = {"format": SIDECAR_FORMAT, "meta": json.dumps(meta, default=list)}
    return atomic_write(path, lambda tmp: save_file(tensors, str(tmp), metadata=header), overwrite=True)


def load_state(path: Path, model: torch.nn.Module, optimizers: list[torch.optim.Optimizer],
               checkpoint: str | Path | None = None) -> tuple[dict[str, Any], torch.Tensor | None]:
    """Restore weights and optimiser states in place; returns (meta, latents or None).

    A sidecar of another model kind (its metadata records the kind; older sidecars do not) or whose weights do
    not fit ``model`` is refused as not the state of ``checkpoint`` (the file resumed), naming both files."""
    try:
        with safe_open(str(path), framework="pt") as f:
            header = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: training-state sidecar unreadable ({exc})") from None
    if header.get("format") != SIDECAR_FORMAT:
        raise CheckpointError(f"{path}: not an lsdebm training-state sidecar")
    meta = json.loads(header["meta"])
    kind = getattr(model, "kind", type(model).__name__)
    owner = f"{checkpoint} (a {kind} model)" if checkpoint is not None else f"this {kind} model"
    if meta.get("kind") not in (None, kind):
        raise CheckpointError(f"{path}: the training state of a {meta['kind']} run, not of {owner}; expected the "
                              ".optim.safetensors written with that checkpoint")
    state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise CheckpointError(f"{path}: not the training state of {owner}: {_misfit(model, state)}; expected the "
                              ".optim.safetensors written with that checkpoint") from None
    if checkpoint is not None and Path(checkpoint).is_file():
        _check_same_run(path, Path(checkpoint), state, meta)
    groups = meta.get("param_groups", [])
    if len(groups) != len(optimizers):
        raise CheckpointError(f"{path}: holds {len(groups)} optimiser states, the model needs {len(optimizers)}")
    for i, (opt, pg) in enumerate(zip(optimizers, groups)):
        st: dict[int, dict[str, torch.Tensor]] = {}
        prefix = f"opt{i}."
        for key, value in tensors.items():
            if key.startswith(prefix):
                idx, name = key[len(prefix):].split(".", 1)
                st.setdefault(int(idx), {})[name] = value
        opt.load_state_dict({"state": st, "param_groups": pg})
    return meta, tensors.get("lebm.latents")


def _check_same_run(path: Path, checkpoint: Path, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    """Refuse a sidecar of another run of the same kind copied beside ``checkpoint``: the two are written together,
    so the checkpoint's epoch count and weights (float16 with ``--half``) are the sidecar's. Resuming from another
    run's state silently dropped the checkpoint's own training."""
    with safe_open(str(checkpoint), framework="pt") as f:
        epochs = json.loads((f.metadata() or {}).get("info", "{}")).get("epochs")
        saved = {k: f.get_tensor(k) for k in f.keys()}
    epoch, expected = meta.get("epoch"), "expected the .optim.safetensors written with that checkpoint"
    if isinstance(epochs, int) and isinstance(epoch, int) and epochs != epoch:
        raise CheckpointError(f"{path}: the training state after epoch {epoch}, but {checkpoint} was saved after "
                              f"epoch {epochs}; {expected}")
    differ = [k for k, v in saved.items() if k in state and not _same_tensor(v, state[k])]
    if differ:
        raise CheckpointError(f"{path}: its weights are not those of {checkpoint} ({len(differ)} of {len(saved)} "
                              f"tensors differ, e.g. {differ[0]}); {expected}")


def _same_tensor(saved: torch.Tensor, state: torch.Tensor) -> bool:
    """Equal, or equal to float16 rounding for floating-point weights (a ``--half`` checkpoint)."""
    if saved.shape != state.shape:
        return False
    if saved.is_floating_point():
        return bool(torch.allclose(saved.float(), state.float(), rtol=2e-3, atol=1e-5))
    return bool(torch.equal(saved, state))


def _misfit(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> str:
    """How the sidecar's weights ``state`` fail to fit ``model``, in counts and one example."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shaped = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    parts = [f"{len(keys)} {what}" for keys, what in ((missing, "of the model's weights missing"),
                                                     (extra, "weights the model lacks"),
                                                     (shaped, "of another shape")) if keys]
    example = (missing + extra + shaped or ["?"])[0]
    return f"its weights do not fit ({', '.join(parts)}; e.g. {example})"
