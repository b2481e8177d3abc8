"""Sampler options of ``lsdebm reconstruct`` and ``lsdebm evaluate``; a warning for those no chosen method reads.

A VAE has no chain, LEBM's posterior chain has no K and no data term, the ReconNet stage has neither: an option
given for a method that does not read it was silently ignored. Each :class:`lsdebm.methods.base.Method` declares
the :class:`lsdebm.methods.RunSettings` fields it ``uses``.
"""
from __future__ import annotations

import warnings
from collections.abc import Iterable

from lsdebm.errors import InputWarning

#: Command-line option (argparse dest) -> the RunSettings field it sets.
SAMPLER_OPTIONS = {"steps": "steps", "langevin_steps": "K", "step_size": "step_size",
                   "consistency_weight": "consistency_weight"}


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
