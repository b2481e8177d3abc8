"""What an explorer run starts from: a structure of the user's volume on the model grid, and the way back.

:func:`run_input` is the explorer's counterpart of what ``lsdebm reconstruct`` does before refining:
it names the chosen vertebra (``label 22 (L3, VerSe)``), and when the input's thick slices are oblique
to its grid (:func:`lsdebm.tasks.tilted.slab_view`) the run observes them on their own slab grid, so that
the data term and the output step see the slabs as the command line does. :meth:`RunInput.result` then
brings the run's result back onto the input's grid.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lsdebm.data.frame import CropInfo
from lsdebm.data.labelmaps import describe, select_structures
from lsdebm.explore.record import prepare_input
from lsdebm.explore.result import result_layer_data
from lsdebm.runtime.loading import bundled_slab, output_step
from lsdebm.tasks.tilted import SlabView, slab_view


@dataclass(frozen=True)
class RunInput:
    """``x`` (model grid) and its ``crop`` (None: already on the model grid), made from ``data`` on the grid
    ``affine`` (the input's, or its slab grid's when ``view`` is set); ``named`` the chosen structure."""

    x: np.ndarray
    crop: CropInfo | None
    data: np.ndarray
    affine: np.ndarray
    view: SlabView | None
    named: str

    def note(self) -> str:
        """A clause for the status line when the run sees the slabs on their own grid, else ''."""
        if self.view is None:
            return ""
        return f"; slabs tilted {self.view.slabs.tilt_deg:.0f}° to the grid: run on their own grid"

    def result(self, output, model) -> tuple[np.ndarray, tuple | None]:
        """``(mask, grid)`` of the run's ``output`` as :func:`lsdebm.explore.result.result_layer_data` makes it;
        when the run saw the slab grid, the output step runs there and the mask is on the input's grid
        (``grid`` None), as ``lsdebm reconstruct`` writes it."""
        if self.view is None or self.crop is None:
            return result_layer_data(output, self.crop, self.data, model)
        ccfg, interpolator = output_step(model, bundled_slab())
        return self.view.output(output.probs.mean(0), self.crop, ccfg, interpolator, self.crop.label), None


def run_input(data, affine, grid: int, spacing: float, label: int | None = None, model_cfg=None,
              what: str = "the input") -> RunInput:
    """The :class:`RunInput` of ``data`` (grid ``affine``): :func:`prepare_input`'s arguments."""
    data, affine = np.asarray(data), np.asarray(affine, float)
    named = describe(select_structures(data, affine, [label]))[0].removeprefix("refining ") if label else ""
    view = slab_view(data, affine, label)
    seen, seen_affine = (data, affine) if view is None else (view.data, view.affine)
    x, crop = prepare_input(seen, seen_affine, grid, spacing, label, model_cfg=model_cfg, what=what)
    return RunInput(x, crop, seen, seen_affine, view, named)
