"""Closed docks at interpreter exit: end their threads and delete their widgets before PyQt's own clean-up.

When a dock is closed, napari takes the inner widget out of it (``setParent(None)``) and deletes only the
dock. The widget lives on while anything refers to it (the script that added it, a viewer callback it left
connected) as a parentless QWidget owned by Python. If the interpreter then exits with the viewer still open,
PyQt's exit clean-up (``cleanup_on_exit``) walks SIP's table of wrappers and deletes each such widget *during
the walk*. Deleting a widget tree sends events to its children, and napari's main window filters every event
of the application in Python (``QApplication.installEventFilter``): the filter wraps each child it meets for
the first time (a spin box's line edit, a scroll area's scroll bars), each new wrapper enters that table, and
once the table is full enough SIP moves it to a new one. The walk goes on in the freed table and segfaults
(``cleanup_qobject`` -> ``sip_api_get_address(w=0x180)``); how full the table is varies, so it was one exit
in two on a loaded machine.

:func:`retire` records the widget of a closed dock. At exit, before PyQt's clean-up (this module's ``atexit``
handler is registered after PyQt's, which was registered when QtCore was imported, so it runs first),
:func:`delete_retired` calls each widget's ``stop`` (which may join the dock's threads, briefly) and deletes
the widgets that are still alive and undocked, while napari's filter may still wrap whatever it likes.
"""
from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Callable

from qtpy.QtCore import QCoreApplication, QEvent

log = logging.getLogger(__name__)

# widget -> stop(widget) or None; weak keys: a closed widget nobody keeps is deleted by Python, not here
_retired: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def retire(widget, stop: Callable[[object], None] | None = None) -> None:
    """Delete ``widget``, the inner widget of a closed dock, at interpreter exit (after ``stop(widget)``).

    ``stop`` must not refer to the widget itself (it is given the widget), or the widget would never be freed.
    Retiring a widget again replaces its ``stop``; a widget docked again by then is left to its window.
    """
    if widget is not None:
        _retired[widget] = stop


def retired() -> list:
    """The retired widgets still referenced somewhere (for tests)."""
    return list(_retired.keys())


def delete_retired() -> int:
    """Stop and delete the retired widgets that are still alive and have no parent; returns how many."""
    deleted = 0
    for widget, stop in list(_retired.items()):
        try:
            if stop is not None:
                stop(widget)
        except Exception:  # noqa: BLE001 - the interpreter is exiting: log it and delete the widget anyway
            log.exception("napari-lsdebm: stopping a closed dock at exit failed")
        try:
            if widget.parent() is not None:  # docked again: deleted with its window
                continue
            widget.deleteLater()
        except RuntimeError:  # its C++ object is already deleted
            continue
        QCoreApplication.sendPostedEvents(widget, QEvent.Type.DeferredDelete)  # now, outside any event loop
        deleted += 1
    _retired.clear()
    return deleted


atexit.register(delete_retired)
