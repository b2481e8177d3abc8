"""Import the authors' plain PyTorch state dicts into our checkpoint format (``reference`` preset).

The authors' code (github Seven-year-promise/LSD_EBM_MRI, 3D/LSD_EBM/LSD_EBM_code, docs/reference-code.md §2)
saves ``model.state_dict()`` per network: the VAE as one file (``VAE_new``), LSD-EBM as
encoder (``VAE_new_Enc_small``), decoder (``VAE_new_Dec_small``) and energy (``E_func``), LEBM
as generator (``GenModel_vert``) and energy (``E_func``). Files are read with
``torch.load(path, weights_only=True, map_location="cpu")`` only; nothing else unpickles.

Key mapping (:data:`MAPPING`; ``<j>`` keeps the position inside a Conv-BN-ReLU-Conv-BN-ReLU
block or inside the energy MLP, which are laid out identically in both codes)::

    conv_initial.<j>.*        -> encoder.features.0.<j>.*
    conv_rest_x_<r>.<j>.*     -> encoder.features.<2i+2>.<j>.*   (i-th block by decreasing r: 64, 32, 16)
    linear_enc.*              -> encoder.mean.*                  (their shared mean/log-variance head)
    linear_dec.*              -> decoder.linear.*
    conv_rest_u_<r>.<j>.*     -> decoder.features.<2i+1>.<j>.*   (i-th block by increasing r: 32, 64, 128)
    conv_final.*              -> decoder.features.<2L>.*         (L up blocks; their sigmoid is applied outside)
    ebm.<i>.*                 -> energy.net.<i>.*

Sizes (channels, latent size, grid, energy width/depth, BatchNorm in the LEBM energy) are
inferred from the tensor shapes; every key must be mapped and every shape must match the
model built from the inferred config, or a :class:`CheckpointError` names the offending key.
"""
from __future__ import annotations

import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from lsdebm.config import Config, get_preset
from lsdebm.errors import CheckpointError, InputError
from lsdebm.nn import build_model
from lsdebm.nn.registry import kind_info
from lsdebm.runtime.checkpoint import save_checkpoint, sha256_of

MAPPING = (
    (r"conv_initial\.(.+)", "encoder", "encoder.features.0.{0}"),
    (r"conv_rest_x_(\d+)\.(.+)", "encoder", "encoder.features.{pos}.{1}"),
    (r"linear_enc\.(weight|bias)", "encoder", "encoder.mean.{0}"),
    (r"linear_dec\.(weight|bias)", "decoder", "decoder.linear.{0}"),
    (r"conv_rest_u_(\d+)\.(.+)", "decoder", "decoder.features.{pos}.{1}"),
    (r"conv_final\.(weight|bias)", "decoder", "decoder.features.{pos}.{0}"),
    (r"ebm\.(\d+\..+)", "energy", "energy.net.{0}"),
)
KIND_ROLES = {"lsdebm": ("encoder", "decoder", "energy"), "vae": ("encoder", "decoder"), "lebm": ("decoder", "energy")}


def load_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a plain state dict with ``torch.load(weights_only=True)``; a ``module.`` prefix is dropped."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: state-dict file not found")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol it refuses anyway
            warnings.simplefilter("ignore")
            obj = torch.load(path, weights_only=True, map_location="cpu")
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        reason = first.split(". ")[0].rstrip(".")
        raise CheckpointError(f"{path}: not a plain PyTorch state dict; the weights-only load refused it "
                              f"({reason}); only tensors saved with torch.save(model.state_dict()) can be "
                              "converted, nothing else is ever unpickled") from None
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()):
        raise CheckpointError(f"{path}: expected a state dict of named tensors (model.state_dict())")
    state = dict(obj)
    if all(k.startswith("module.") for k in state):  # saved from nn.DataParallel
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def map_keys(state: Mapping[str, torch.Tensor], roles: tuple[str, ...], source: str = "state dict") -> dict[str, str]:
    """Authors' key -> our key for every key of ``state``; keys outside ``roles`` are an error."""
    x_blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"conv_rest_x_(\d+)\.", k))}, reverse=True)
    u_blocks = sorted({int(m.group(1)) for k in state if (m := re.match(r"conv_rest_u_(\d+)\.", k))})
    out = {}
    for key in state:
        for pattern, role, target in MAPPING:
            m = re.fullmatch(pattern, key)
            if not m:
                continue
            if role not in roles:
                raise CheckpointError(f"{source}: key {key!r} belongs to the {role}, but this file was given as "
                                      f"{'/'.join(roles)}")
            pos = 2 * len(u_blocks)
            if key.startswith("conv_rest_x_"):
                pos = 2 * x_blocks.index(int(m.group(1))) + 2
            elif key.startswith("conv_rest_u_"):
                pos = 2 * u_blocks.index(int(m.group(1))) + 1
            out[key] = target.format(*m.groups(), pos=pos)
            break
        else:
            raise CheckpointError(f"{source}: unmatched key {key!r}; expected the authors' module names "
                                  "(conv_initial, conv_rest_x_*, linear_enc, linear_dec, conv_rest_u_*, conv_final, "
                                  "ebm.*)")
    return out


def _channels(state: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    """Channels per level from the decoder blocks (else the encoder blocks)."""
    ups = sorted({int(m.group(1)) for k in state if (m := re.match(r"conv_rest_u_(\d+)\.0\.weight", k))})
    if ups:
        rev = [state[f"conv_rest_u_{ups[0]}.0.weight"].shape[1]] + [state[f"conv_rest_u_{r}.3.weight"].shape[0]
                                                                     for r in ups]
        return tuple(int(c) for c in rev[::-1])
    downs = sorted({int(m.group(1)) for k in state if (m := re.match(r"conv_rest_x_(\d+)\.3\.weight", k))},
                   reverse=True)
    return tuple(int(c) for c in [state["conv_initial.3.weight"].shape[0]]
                 + [state[f"conv_rest_x_{r}.3.weight"].shape[0] for r in downs])


def infer_config(kind: str, state: Mapping[str, torch.Tensor], spacing: float | None = None,
                 T: int | None = None) -> Config:
    """The ``reference`` preset with sizes read off the tensor shapes."""
    try:
        ch = _channels(state)
        if "linear_dec.weight" in state:
            flat, latent = state["linear_dec.weight"].shape
        else:
            latent, flat = state["linear_enc.weight"].shape
        side = round((flat / ch[-1]) ** (1 / 3))
        if side ** 3 * ch[-1] != flat:
            raise CheckpointError(f"linear layer size {flat} is not {ch[-1]} x side^3 for a cubic bottleneck")
        linears = sorted((int(k.split(".")[1]), v) for k, v in state.items()
                         if k.startswith("ebm.") and k.endswith(".weight") and v.dim() == 2)
    except KeyError as exc:
        raise CheckpointError(f"missing tensor {exc.args[0]!r} needed to infer the {kind} sizes") from None
    base = get_preset("reference")
    over: dict[str, Any] = {"preset": "reference", "model.grid": int(side) * 2 ** (len(ch) - 1), "model.channels": ch,
                            "model.latent_dim": int(latent),
                            "model.spacing": base.model.spacing if spacing is None else spacing}  # 0: refused, not 1 mm
    energy_of = kind_info(kind)
    if linears and energy_of.diffusion:  # LSD-EBM: the time-conditioned energy MLP of eq. (2)
        over.update({"model.energy_hidden": int(linears[0][1].shape[0]), "model.energy_layers": len(linears) - 1})
    elif linears and energy_of.has_energy:  # LEBM: the latent prior's energy
        over.update({"lebm.energy_hidden": int(linears[0][1].shape[0]), "lebm.energy_layers": len(linears) - 1,
                     "lebm.batchnorm": any(k.startswith("ebm.") and k.endswith("running_mean") for k in state)})
    if T is not None:
        over.update({"schedule.T": T, "langevin.recon_steps": T, "schedule.eval_T": max(T, base.schedule.eval_T or T)})
    return base.replace(**over)


def convert(kind: str, files: Mapping[str, str | Path], spacing: float | None = None,
            T: int | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build a ``kind`` model from the authors' files ``{role: path}`` (role ``model`` = encoder+decoder).

    Returns:
        ``(model, info)`` with ``info`` naming the source files and their sha256.
    """
    if kind not in KIND_ROLES:
        raise InputError(f"--kind {kind!r}: expected one of {', '.join(KIND_ROLES)}")
    if T is not None and not kind_info(kind).diffusion:  # it was ignored without a word
        raise InputError(f"T={T} only applies to an LSD-EBM (its diffusion steps); a {kind} has none")
    given: dict[str, Path] = {}
    for role, path in files.items():
        for r in (("encoder", "decoder") if role == "model" else (role,)):
            if r in given:
                raise InputError(f"the {r} is given twice ({given[r]} and {path})")
            given[r] = Path(path)
    need, extra = set(KIND_ROLES[kind]) - set(given), set(given) - set(KIND_ROLES[kind])
    if need or extra:
        raise InputError(f"--kind {kind} needs {', '.join(KIND_ROLES[kind])} files"
                         + (f"; missing {', '.join(sorted(need))}" if need else "")
                         + (f"; {', '.join(sorted(extra))} not used by {kind}" if extra else ""))
    merged: dict[str, torch.Tensor] = {}
    mapping: dict[str, str] = {}
    by_file: dict[Path, tuple[str, ...]] = {}
    for role, path in given.items():
        by_file[path] = by_file.get(path, ()) + (role,)
    for path, roles in by_file.items():
        state = load_state_dict(path)
        keys = map_keys(state, roles, str(path))
        for role in roles:
            if not any(v.startswith(role + ".") for v in keys.values()):
                raise CheckpointError(f"{path}: given as the {role} but holds no {role} tensors "
                                      f"(its keys start with {sorted({k.split('.')[0] for k in state})[:3]})")
        merged.update(state)
        mapping.update(keys)
    cfg = infer_config(kind, merged, spacing, T)
    model = build_model(kind, cfg)
    expected = model.state_dict()
    ours = {mapping[k]: v for k, v in merged.items()}
    missing = sorted(set(expected) - set(ours))
    unexpected = sorted(k for k in merged if mapping[k] not in expected)
    if missing or unexpected:
        detail = "; ".join(d for d in (f"missing {missing[:3]}" if missing else "",
                                       f"unexpected {unexpected[:3]}" if unexpected else "") if d)
        raise CheckpointError(f"the files do not form a {kind} model of the inferred config ({detail})")
    for theirs, key in mapping.items():
        if tuple(merged[theirs].shape) != tuple(expected[key].shape):
            raise CheckpointError(f"{theirs}: shape {tuple(merged[theirs].shape)} does not match "
                                  f"{key} {tuple(expected[key].shape)} of the inferred {kind} config")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in ours.items()})
    info = {"description": f"{kind} converted from the authors' reference code (reference preset)",
            "source": "github.com/Seven-year-promise/LSD_EBM_MRI", "converted_with": "lsdebm convert (mapping v1)",
            "source_files": [{"roles": list(r), "file": str(p), "sha256": sha256_of(p)} for p, r in by_file.items()]}
    return model.eval(), info


def convert_to_file(kind: str, files: Mapping[str, str | Path], out: str | Path, overwrite: bool = False,
                    spacing: float | None = None, T: int | None = None, info: dict | None = None) -> Path:
    """Convert and write a safetensors checkpoint atomically."""
    out = Path(out)
    if out.suffix != ".safetensors":
        raise InputError(f"{out}: output must end with .safetensors")
    if out.exists() and not overwrite:
        raise InputError(f"{out} already exists; pass --overwrite to replace it")
    model, meta = convert(kind, files, spacing, T)
    return save_checkpoint(model, out, info={**meta, **(info or {})}, overwrite=overwrite)
