"""The one model loader: a refinement method with an optional ReconNet stage, or several methods at once.

Every feature that runs models (``lsdebm reconstruct``, evaluation, Compare, uncertainty, the
benchmarks) loads them here, so they share the bundled defaults (``<kind>-default``), the kind
checks and one *same-frame* rule: models that feed each other must work on the same model grid,
spacing and number of spatial dimensions (:func:`same_frame`).

* :func:`load_models` -- the pipeline of ``lsdebm reconstruct``: ``method`` (or ReconNet alone)
  and, unless disabled, a ReconNet first stage in the same frame; returns :class:`Models`.
* :func:`load_checkpoints` -- one checkpoint per kind (evaluation rows, Compare's methods);
  all in one frame.
"""
from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from lsdebm.config import ConsistencyConfig
from lsdebm.errors import CheckpointError, InputError
from lsdebm.methods import RunSettings, consistency_config
from lsdebm.methods.slab import SlabInterpolator
from lsdebm.nn.registry import REFINEMENT_KINDS, is_first_stage, is_refinement
from lsdebm.nn.slabnet import LAYOUT, SlabNet
from lsdebm.provenance import checkpoint_record
from lsdebm.runtime.checkpoint import BUNDLED_DIR, LoadedCheckpoint, bundled_checkpoints, load_checkpoint
from lsdebm.runtime.device import model_device

METHODS = REFINEMENT_KINDS
#: What ``lsdebm reconstruct`` runs when no method is named: ReconNet with the measurement-aware
#: output (shape interpolation + projection onto the observed slabs). Chosen on the real
#: validation subjects, where every refinement model lowered ReconNet's Dice (docs/real-anatomy.md).
DEFAULT_METHOD = "reconnet"
PIPELINE_METHODS = ("reconnet", *METHODS)
#: The bundled learned slab interpolation (:mod:`lsdebm.nn.slabnet`), outside the method folder
#: so that it is never offered as a refinement method.
SLAB_DIR = BUNDLED_DIR / "slab"
DEFAULT_SLAB = "slabnet-default"


def default_checkpoint(kind: str) -> str:
    """Name of the bundled checkpoint of ``kind`` (``lsdebm-default``, ...)."""
    return f"{kind}-default"


@dataclass
class Models:
    """The loaded post-processing model (``method``) and optional ReconNet stage."""

    method: LoadedCheckpoint | None
    reconnet: LoadedCheckpoint | None = None
    slab: LoadedCheckpoint | None = None

    def any(self) -> LoadedCheckpoint:
        """The method checkpoint, or the ReconNet when it runs alone (both share one frame)."""
        return self.method if self.method is not None else self.reconnet

    @property
    def grid(self) -> int:
        return self.any().config.model.grid

    @property
    def spacing(self) -> float:
        return self.any().config.model.spacing

    @property
    def input_values(self) -> str:
        """How the first stage (ReconNet if loaded) wants its input crop: ``binary`` or ``fraction``."""
        first = self.reconnet if self.reconnet is not None else self.method
        return getattr(first.config.model, "input_values", "binary")

    @property
    def device(self) -> torch.device:
        return model_device(self.any().model)

    def records(self) -> list[dict[str, Any]]:
        pairs = (("reconnet", self.reconnet), ("method", self.method), ("slab interpolation", self.slab))
        return [checkpoint_record(c, role) for role, c in pairs if c is not None]

    def output_step(self, settings: RunSettings = RunSettings()) -> tuple[ConsistencyConfig, SlabInterpolator | None]:
        """The measurement-aware output step of a run: its consistency settings and slab interpolator."""
        return output_step(self.any().model, self.slab, settings)


def output_step(model: torch.nn.Module, slab: LoadedCheckpoint | None, settings: RunSettings = RunSettings()
                ) -> tuple[ConsistencyConfig, SlabInterpolator | None]:
    """``model``'s consistency settings with the run's overrides, and the learned interpolator.

    With a slab model loaded, the interpolation weight is the one stored with the slab model
    (chosen for it on validation; the method's when it stores none) unless the run sets one; a
    run without interpolation (the paper's unguided sampler, or ``interpolation=0``) does not use
    the slab model.
    """
    ccfg = consistency_config(model, settings)
    if slab is None or ccfg.interpolation <= 0:
        return ccfg, None
    own = slab.config.consistency.interpolation
    if settings.interpolation is None and own > 0:
        ccfg = replace(ccfg, interpolation=own)
    name = slab.path.stem if slab.path is not None else SlabNet.kind
    return ccfg, SlabInterpolator(slab.model, name)


def load_slab_model(source: str | Path | None = "default", device: str | torch.device = "cpu"
                    ) -> LoadedCheckpoint | None:
    """The learned slab interpolation: ``default`` (the bundled one, None when not installed),
    ``none`` / None (the classical shape-based interpolation), or a ``.safetensors`` path."""
    if source is None or str(source) == "none":
        return None
    if str(source) in ("default", DEFAULT_SLAB):
        path = SLAB_DIR / f"{DEFAULT_SLAB}.safetensors"
        if not path.is_file():
            if str(source) == DEFAULT_SLAB:
                raise CheckpointError(f"bundled slab model {DEFAULT_SLAB} is not installed; pass a file or 'none'")
            return None
        source = path
    elif not Path(source).exists() and str(source) not in bundled_checkpoints():
        raise CheckpointError(f"slab model {source}: no such file; expected 'default' (the bundled "
                              f"{DEFAULT_SLAB}), 'none' (the classical interpolation) or a SlabNet .safetensors file")
    loaded = load_checkpoint(source, device, expect_kind=SlabNet.kind, extra_kinds={SlabNet.kind: SlabNet})
    loaded.model.to(memory_format=LAYOUT)  # once, at load: the layout its fast paths run in
    return loaded


def frame_of(ckpt: LoadedCheckpoint) -> tuple[int, float, int]:
    """``(grid, spacing, spatial_dims)`` of a checkpoint's model frame."""
    m = ckpt.config.model
    return int(m.grid), float(m.spacing), int(m.spatial_dims)


def same_frame(a: LoadedCheckpoint, b: LoadedCheckpoint) -> bool:
    """True when two checkpoints work on the same model grid, spacing and number of dimensions."""
    (ga, sa, da), (gb, sb, db) = frame_of(a), frame_of(b)
    return ga == gb and abs(sa - sb) < 1e-9 and da == db


def bundled_or_error(kind: str, hint: str) -> str:
    """The bundled ``<kind>-default`` name, or a CheckpointError ending with ``hint`` when it is not installed."""
    name = default_checkpoint(kind)
    if name not in bundled_checkpoints():
        raise CheckpointError(f"bundled checkpoint {name} is not installed; {hint}")
    return name


@functools.lru_cache(maxsize=1)
def bundled_slab() -> LoadedCheckpoint | None:
    """The bundled slab model on the CPU, loaded once per process (None when it is not installed);
    for the views that run a method checkpoint directly (Compare, the explorer's result)."""
    return load_slab_model("default")


def slab_of(choice) -> LoadedCheckpoint | None:
    """A slab model from a choice: ``default`` (the bundled one, loaded once), ``none`` / None (the
    classical interpolation), a loaded checkpoint, or a ``.safetensors`` path."""
    if isinstance(choice, LoadedCheckpoint):
        return choice
    return bundled_slab() if str(choice) == "default" else load_slab_model(choice)


def load_models(method: str | None = None, checkpoint: str | None = None, reconnet: bool | None = None,
                reconnet_checkpoint: str | None = None, device: str | torch.device = "cpu",
                slab: str | Path | None = "default") -> Models:
    """Load the method checkpoint and, unless disabled, a ReconNet in the same model frame.

    Args:
        method: ``reconnet`` (the ReconNet stage alone), ``lsdebm``, ``vae`` or ``lebm``; None takes
            the kind stored in ``checkpoint``, or :data:`DEFAULT_METHOD` without one.
        checkpoint: Bundled name or ``.safetensors`` path; default ``<method>-default``.
        reconnet: True requires the ReconNet stage, False disables it, None uses it when a
            ReconNet checkpoint is available and matches the method's grid and spacing.
        reconnet_checkpoint: Bundled name or path; default ``reconnet-default``.
        device: Torch device for every model.
        slab: The learned slab interpolation of the output step (:func:`load_slab_model`).
    """
    _check_choices(method, checkpoint, reconnet, reconnet_checkpoint, slab)
    models = _pipeline(method, checkpoint, reconnet, reconnet_checkpoint, device)
    return replace(models, slab=load_slab_model(slab, device))


def _check_choices(method, checkpoint, reconnet, reconnet_checkpoint, slab) -> None:
    """Names and paths must be text or paths, ``reconnet`` a yes/no/auto: ``reconnet="no"`` loaded the ReconNet
    stage (a non-empty string is true) and ``checkpoint=3`` failed inside ``Path``."""
    if reconnet is not None and not isinstance(reconnet, bool):
        raise InputError(f"reconnet={reconnet!r}: expected True (require the ReconNet stage), False (none) or None "
                         "(use it when one matches)")
    for what, value in (("method", method), ("checkpoint", checkpoint), ("reconnet_checkpoint", reconnet_checkpoint),
                        ("slab", slab)):
        if value is not None and not isinstance(value, (str, Path)):
            raise InputError(f"{what}={value!r:.60}: expected a bundled name or a .safetensors path (str or Path)")


def _pipeline(method, checkpoint, reconnet, reconnet_checkpoint, device) -> Models:
    if method is not None and method not in PIPELINE_METHODS:
        raise InputError(f"method {method!r} is not one of {', '.join(PIPELINE_METHODS)}")
    if method is None and checkpoint is None:
        method = DEFAULT_METHOD
    if method == "reconnet":
        if reconnet is False:
            raise InputError("--method reconnet is the ReconNet stage itself; it cannot run with --no-reconnet")
        name = checkpoint or reconnet_checkpoint or bundled_or_error("reconnet", "pass --reconnet-checkpoint FILE")
        return Models(None, load_checkpoint(name, device, expect_kind="reconnet"))
    if checkpoint is None:
        checkpoint = bundled_or_error(method, "pass --checkpoint FILE")
    loaded = load_checkpoint(checkpoint, device, expect_kind=method)
    if is_first_stage(loaded.kind) and method is None and reconnet is not False:
        return Models(None, loaded)  # a ReconNet checkpoint given alone: the ReconNet stage
    if not is_refinement(loaded.kind):
        raise CheckpointError(f"{loaded.path}: holds a {loaded.kind} model; the refinement method must be one "
                              f"of {', '.join(METHODS)} (pass a ReconNet with --reconnet-checkpoint)")
    if reconnet is False:
        return Models(loaded)
    name = reconnet_checkpoint or default_checkpoint("reconnet")
    if reconnet_checkpoint is None and name not in bundled_checkpoints():
        if reconnet:
            raise CheckpointError(f"--reconnet: bundled checkpoint {name} is not installed; "
                                  "pass --reconnet-checkpoint FILE or --no-reconnet")
        return Models(loaded)
    stage1 = load_checkpoint(name, device, expect_kind="reconnet")
    if not same_frame(stage1, loaded):
        if reconnet or reconnet_checkpoint:
            raise CheckpointError(f"{stage1.path}: ReconNet grid {stage1.config.model.grid} at "
                                  f"{stage1.config.model.spacing} mm does not match {loaded.path} "
                                  f"({loaded.config.model.grid} at {loaded.config.model.spacing} mm)")
        return Models(loaded)
    return Models(loaded, stage1)


def load_checkpoints(sources: Mapping[str, str | Path | None], device: str | torch.device = "cpu",
                     optional: Sequence[str] = (), missing_hint: str = "choose a file",
                     mismatch_hint: str = "choose matching files") -> dict[str, LoadedCheckpoint]:
    """Load one checkpoint per kind, in the order of ``sources``; all must share one model frame.

    Args:
        sources: kind -> bundled name or ``.safetensors`` path; None takes the bundled
            ``<kind>-default``. Each file must hold a model of its kind.
        device: Torch device for every model.
        optional: Kinds skipped (left out of the result) when their source is None and no
            bundled default is installed.
        missing_hint, mismatch_hint: How the user fixes a missing default or a frame mismatch
            (the end of the one-line error, e.g. ``pass --checkpoint-dir DIR``).

    Raises:
        CheckpointError: A required default is not installed, a file holds another kind, or the
            models do not share one grid, spacing and dimension count.
    """
    bundled = bundled_checkpoints()
    loaded: dict[str, LoadedCheckpoint] = {}
    for kind, source in sources.items():
        if source is None and default_checkpoint(kind) not in bundled:
            if kind in optional:
                continue
            raise CheckpointError(f"no {kind} checkpoint: bundled {default_checkpoint(kind)} is not installed; "
                                  f"{missing_hint}")
        loaded[kind] = load_checkpoint(source or default_checkpoint(kind), device, expect_kind=kind)
    frames = {kind: frame_of(c) for kind, c in loaded.items()}
    if len(set(frames.values())) > 1:
        listing = ", ".join(f"{kind} {g}^{d} at {s:g} mm" for kind, (g, s, d) in frames.items())
        raise CheckpointError(f"the checkpoints do not share one model grid ({listing}); {mismatch_hint}")
    return loaded
