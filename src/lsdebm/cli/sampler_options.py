"""Sampler options of ``lsdebm reconstruct`` and ``lsdebm evaluate``; a warning for those no chosen method reads.

A VAE has no chain, LEBM's posterior chain has no K and no data term, the ReconNet stage has neither: an option
given for a method that does not read it was silently ignored. Each :class:`lsdebm.methods.base.Method` declares
the :class:`lsdebm.methods.RunSettings` fields it ``uses``.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Iterable

from lsdebm.errors import InputError, InputWarning

#: Command-line option (argparse dest) -> the RunSettings field it sets.
SAMPLER_OPTIONS = {"steps": "steps", "langevin_steps": "K", "step_size": "step_size",
                   "consistency_weight": "consistency_weight"}


def check_sampler_values(args) -> None:
    """One line for a bad ``--steps``, ``--langevin-steps``, ``--step-size``, ``--consistency-weight``,
    ``--projection`` or ``--consistency-steps`` (those the command has), before anything is loaded or run."""
    if args.steps is not None and args.steps < 0:
        raise InputError(f"--steps {args.steps} must be >= 0")
    if args.langevin_steps is not None and args.langevin_steps < 1:
        raise InputError(f"--langevin-steps {args.langevin_steps} must be >= 1")
    if args.step_size is not None and not (math.isfinite(args.step_size) and args.step_size > 0):
        raise InputError(f"--step-size {args.step_size} must be a finite number > 0")
    weight, projection = getattr(args, "consistency_weight", None), getattr(args, "projection", None)
    if weight is not None and not (math.isfinite(weight) and weight >= 0):
        raise InputError(f"--consistency-weight {weight} must be a finite number >= 0")
    if projection is not None and not 0 <= projection <= 1:  # NaN too
        raise InputError(f"--projection {projection} must be between 0 and 1")
    if getattr(args, "consistency_steps", None) is not None and args.consistency_steps < 0:
        raise InputError(f"--consistency-steps {args.consistency_steps} must be >= 0")


def option(dest: str) -> str:
    return f"--{dest.replace('_', '-')}"


def unread(args, uses: Iterable[str]) -> list[str]:
    """The sampler options given in ``args`` whose field is not in ``uses``."""
    uses = set(uses)
    return [option(d) for d, field in SAMPLER_OPTIONS.items() if getattr(args, d, None) is not None
            and field not in uses]


def warn_unread(args, kinds: Iterable[str], what: str) -> None:
    """Warn once about the sampler options that no method of ``kinds`` reads; ``what`` names the methods."""
    from lsdebm.methods import method_class

    kinds = list(kinds)
    uses = {field for kind in kinds for field in method_class(kind).uses}
    unused = unread(args, uses)
    if not unused:
        return
    reads = ", ".join(option(d) for d, field in SAMPLER_OPTIONS.items() if field in uses)
    warnings.warn(f"{', '.join(unused)}: not used by {what} (" + (f"only {reads} are read" if reads else
                  "no sampling chain") + "); ignored", InputWarning, stacklevel=3)
