"""What a layer is for: the low-quality ``input``, the ground ``truth``, or a ``result`` of a method.

Samples, the NIfTI reader and the docks that make results write the role into
``layer.metadata[ROLE_KEY]``; Compare, Review and Uncertainty read it to preselect their layer
pickers, so they never start by comparing the ground truth with itself. A file's role comes from
explicit metadata (``lsdebm role: truth`` in the NIfTI ``descrip`` field) or, failing that, from a
hint in its name (``*_gt``, ``*truth*``, ``*hq*`` -> truth; ``*_lq``, ``*thick*``, ``*input*`` -> input).
"""
from __future__ import annotations

import itertools
import re

ROLE_KEY = "role"  # layer.metadata key (already used by the real sample pair)
ORDER_KEY = "lsdebm_result_order"  # results: a counter, so "newest" survives reordering the layer list
INPUT, TRUTH, RESULT = "input", "truth", "result"
ROLES = (INPUT, TRUTH, RESULT)

_TRUTH_HINT = re.compile(r"(^|[^a-z])(gt|hq|truth|ground[ _-]?truth|reference|ref)([^a-z]|$)|truth|groundtruth")
_INPUT_HINT = re.compile(r"(^|[^a-z])(lq|lr|input)([^a-z]|$)|thick|input")
_DESCRIP = re.compile(r"(?:lsdebm[ _]role|role)\s*[:=]\s*(input|truth|result)", re.IGNORECASE)
_counter = itertools.count(1)


def role_from_name(name: str) -> str | None:
    """``truth`` or ``input`` from a file or layer name hint, else None (a name hinting both: None)."""
    low = name.lower()
    truth, lq = bool(_TRUTH_HINT.search(low)), bool(_INPUT_HINT.search(low))
    return TRUTH if truth and not lq else INPUT if lq and not truth else None


def role_from_description(text) -> str | None:
    """The role written explicitly in a header text such as ``"lsdebm role: truth"``, else None."""
    if isinstance(text, bytes):
        text = text.decode("latin-1", "replace")
    match = _DESCRIP.search(str(text or ""))
    return match.group(1).lower() if match else None


def role_metadata(role: str | None) -> dict:
    """Metadata entries that tag a layer with ``role`` (nothing for None); results get an order too."""
    if role is None:
        return {}
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}; got {role!r}")
    return {ROLE_KEY: role, **({ORDER_KEY: next(_counter)} if role == RESULT else {})}


def tag_tuple(layer_tuple: tuple, role: str | None) -> tuple:
    """Tag a napari LayerDataTuple (data, kwargs, kind) with ``role`` in place; returns it."""
    layer_tuple[1].setdefault("metadata", {}).update(role_metadata(role))
    return layer_tuple


def tag_layer(layer, role: str | None):
    """Tag a layer with ``role``; returns it."""
    layer.metadata = {**dict(layer.metadata), **role_metadata(role)}
    return layer


def role_of(layer) -> str | None:
    """The role a layer was tagged with, else None."""
    return getattr(layer, "metadata", {}).get(ROLE_KEY)


def with_role(layers, role: str) -> list:
    """The layers tagged ``role``; results newest first, the others in layer-list order."""
    found = [lay for lay in layers if role_of(lay) == role]
    if role == RESULT:
        found.sort(key=lambda lay: -int(lay.metadata.get(ORDER_KEY, 0)))
    return found


def self_comparison(a, b) -> str | None:
    """A one-line refusal when ``a`` and ``b`` are the same layer (or hold the same array), else None."""
    if a is None or b is None:
        return None
    if a is b or a.name == b.name or a.data is b.data:
        return f"{a.name!r} is chosen twice: comparing a layer with itself gives 1.000 everywhere; choose another"
    return None


def guessed_role(layer) -> str | None:
    """The tagged role, else the one its name hints at (``HQ`` -> truth, ``LQ`` -> input), else None."""
    return role_of(layer) or role_from_name(getattr(layer, "name", ""))


def _first(layers, role: str):
    """The first layer tagged ``role``, else the first whose name hints at it, else None."""
    tagged = with_role(layers, role)
    return tagged[0] if tagged else next((lay for lay in layers if guessed_role(lay) == role), None)


def pick_input(layers) -> object | None:
    """The input a dock should start from: tagged or named input, else the first layer that is not truth/result."""
    return _first(layers, INPUT) or next((lay for lay in layers if guessed_role(lay) not in (TRUTH, RESULT)), None)


def pick_truth(layers) -> object | None:
    """The ground truth (tagged, else named like one), else None (the picker keeps its own choice)."""
    return _first(layers, TRUTH)


def pick_prediction(layers) -> object | None:
    """What Review starts with as prediction: the newest result, else the input."""
    results = with_role(layers, RESULT)
    return results[0] if results else pick_input(layers)


def newest(layers) -> object | None:
    """The layer added last (the top of napari's layer list)."""
    return layers[-1] if layers else None


class AutoPick:
    """Keeps a layer picker (:class:`napari_lsdebm._ui.pickers.LayerCombo`) on ``choose(layers)``.

    The choice follows the layer list (a sample opened after the dock, a new result) until the
    user picks a layer in the combo box themselves; from then on it is theirs.
    """

    def __init__(self, viewer, combo, choose) -> None:
        self.viewer, self.combo, self.choose = viewer, combo, choose
        self.user_chose = False
        combo.activated.connect(self._on_user)
        viewer.layers.events.inserted.connect(self.apply)
        viewer.layers.events.removed.connect(self.apply)
        self.apply()

    def _on_user(self, *_) -> None:
        self.user_chose = True

    def apply(self, event=None) -> None:
        """Select ``choose`` of the picker's candidates, unless the user chose a layer that still exists."""
        if self.user_chose and self.combo.layer() is not None:
            return
        self.user_chose = False
        self.combo.refresh()
        layer = self.choose(self.combo.layers())
        if layer is not None:
            self.combo.set_layer(layer)
