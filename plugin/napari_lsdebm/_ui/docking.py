"""Docks that belong to another dock: add one under the canvas, notice when napari closes a dock widget, remove it.

When the person closes a dock, napari takes the inner widget out of it (``setParent(None)``) and
deletes the dock. :class:`CloseWatcher` turns that into one ``on_close()`` call, so a widget can
close the docks it added (the explorer's plots) and stop following the viewer's sliders. The widget itself
lives on while referenced; it is deleted at interpreter exit before PyQt's clean-up (:mod:`.closed_docks`).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

from qtpy.QtCore import QEvent, QObject, Qt, QTimer
from qtpy.QtWidgets import QGroupBox, QMainWindow, QScrollArea, QVBoxLayout, QWidget

from napari_lsdebm._ui.closed_docks import retire

EXIT_WAIT_S = 1.0  # at interpreter exit, the most a closed explorer waits for its run, then for its preview


def dock_viewer(napari_viewer):
    """The viewer itself, which every dock keeps instead of the ``PublicOnlyProxy`` napari hands it.

    Behind the proxy (Plugins menu, ``viewer.window.add_plugin_dock_widget``) each napari object a dock reaches
    is a new proxy: the layer ``add_*()`` returns, ``viewer.layers[name]``, ``layers.selection.active``; while
    iterating ``viewer.layers`` and event values give the layers themselves. ``==``, ``in`` and ``isinstance``
    see through a proxy, ``is`` and ``type()`` do not, so a layer a dock added was not the layer in the list
    (the explorer offered its own live preview as input). The proxy marshals nothing to the GUI thread: it warns
    of private attribute access and, with ``NAPARI_ENSURE_PLUGIN_MAIN_THREAD`` set, refuses attribute writes
    off it; no dock touches the viewer from its worker threads.
    """
    return getattr(napari_viewer, "__wrapped__", napari_viewer)


class CloseWatcher(QObject):
    """Calls ``on_close()`` once when ``widget`` leaves the dock napari put it in, or its window closes.

    Closing the viewer (``viewer.close()`` or the window's close button) takes no dock out of the
    window: it closes the main window, which is deleted later. The watcher watches that window too and
    calls ``on_close()`` once the window is closed for good (not when a confirmation dialog kept it).
    """

    def __init__(self, widget, on_close: Callable[[], None]) -> None:
        super().__init__(widget)
        self.on_close = on_close
        self.docked = widget.parent() is not None
        self._window = lambda: None  # weak reference to the QMainWindow watched for its Close event
        widget.installEventFilter(self)

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if obj is self._window():
            if kind == QEvent.Type.Close and self.docked:
                state = {"watcher": self, "window": weakref.ref(obj)}  # a closed window must not be kept alive
                QTimer.singleShot(0, lambda: _after_window_close(state))  # after closeEvent accepted (or not)
            return False
        if kind == QEvent.Type.ParentChange:
            if obj.parent() is not None:
                self.docked = True
                self._watch_window()
            elif self.docked:
                self.docked = False
                self._unwatch_window()
                retire(obj)  # out of its dock, owned by Python: deleted at exit before PyQt's clean-up
                self.on_close()
        elif kind == QEvent.Type.Show:
            self._watch_window()
        return False

    def _watch_window(self) -> None:
        """Watch the main window the widget is docked in (found once the dock is in it)."""
        parent = self.parent().parentWidget()  # self.parent(): the widget (no reference kept: no cycle)
        while parent is not None and not isinstance(parent, QMainWindow):
            parent = parent.parentWidget()
        if parent is not None and parent is not self._window():
            if self._window() is not None:
                self._window().removeEventFilter(self)
            self._window = weakref.ref(parent)  # the closed window must not be kept alive
            parent.installEventFilter(self)

    def _unwatch_window(self) -> None:
        window, self._window = self._window(), lambda: None
        if window is not None:
            try:
                window.removeEventFilter(self)
            except RuntimeError:  # already deleted
                pass

    def window_closed(self) -> None:
        """The main window was closed: the dock goes with it."""
        if self.docked:
            self.docked = False
            self.on_close()


def _after_window_close(state: dict) -> None:
    """Tell the watcher its window closed, unless the window stayed open (the close was refused)."""
    watcher, window = state["watcher"], state["window"]()
    try:
        if window is not None and window.isVisible():
            return
    except RuntimeError:  # the window (and perhaps the watcher's widget) is already deleted
        pass
    watcher.window_closed()


def dock_below_canvas(window, widget, name: str):
    """Add ``widget`` as a napari dock under the canvas (and the right-hand docks); returns the dock.

    The left column (layer controls and layer list, whose minimum heights napari sets) keeps the
    window's full height, so the plots under the canvas do not stack below it: stacked, the two
    minimum heights need more than an 800 px window and Qt grows the window past the screen.
    """
    dock = window.add_dock_widget(widget, area="bottom", name=name)
    main_window = dock.parentWidget()  # the QMainWindow (napari's Window._qt_window is private)
    if isinstance(main_window, QMainWindow):
        main_window.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
    return dock


def remove_dock(viewer, dock) -> None:
    """Remove ``dock`` from the viewer's window (nothing if it or the window is already gone)."""
    window = getattr(viewer, "window", None)
    if dock is None or window is None:
        return
    try:
        window.remove_dock_widget(dock)
    except (LookupError, RuntimeError, AttributeError):  # already removed, or deleted (closed) with the window
        pass


def disconnect(pairs) -> None:
    """Disconnect each (napari event emitter, callback) pair; unconnected ones are skipped."""
    for emitter, callback in pairs:
        if callback is not None:
            emitter.disconnect(callback)


def close_explorer(explorer) -> None:
    """Stop an explorer whose dock was closed: its run, live preview, plots dock, viewer callbacks and the mesh
    rendering of its trajectories (their Surface layers go; each trajectory Image layer is shown instead).

    Trajectory layers stay. Their decoders keep running, but hand frames over as a plain napari layer (decoded when
    asked): an explorer added later adopts them again. The layer-removed callback stays connected, so removing a
    trajectory layer still stops its decoder and prefetcher.
    """
    viewer = explorer.viewer
    explorer.closed = True
    if explorer.worker is not None:
        explorer.worker.cancel()
        if explorer.run_layers.active:  # the layers as at Run now, before the meshes go below (restored after that,
            explorer.run_layers.restore(explorer._run_context["source"])  # it hid the trajectories they hand over to)
    explorer.preview.stop()
    explorer.preview.close()  # its thread ends after a decode still running; joined (briefly) at exit
    disconnect([(viewer.layers.events.inserted, explorer._on_inserted),
                (viewer.layers.selection.events.active, explorer._on_active),
                (viewer.dims.events.current_step, explorer._on_dims),
                (viewer.dims.events.ndisplay, getattr(explorer, "_on_ndisplay", None))])
    for surface in explorer.surfaces.values():
        surface.detach()
    for refresher in explorer.refreshers.values():
        refresher.release()  # kept: removing its layer later still closes the decoder (the removed callback)
    explorer.surfaces = {}
    remove_dock(viewer, explorer.plots_dock)
    explorer.plots_dock = explorer.layer = None
    retire(explorer, stop_explorer)  # the explorer and its plots, both out of their docks now
    retire(explorer.plots)


def stop_explorer(explorer) -> None:
    """At interpreter exit: wait up to :data:`EXIT_WAIT_S` for a cancelled run to end, then for the preview thread.

    PyQt's exit clean-up deletes the run's Job and the LivePreview while other threads run; neither thread
    must still be emitting their signals then.
    """
    if explorer.worker is not None:
        explorer.worker.stop(EXIT_WAIT_S)
    explorer.preview.close(EXIT_WAIT_S)


def scroll_with_footer(widget, groups, footer) -> None:
    """Lay out ``widget``: titled groups in a vertical-only scroll area, ``footer`` widgets always below it.

    ``groups`` is a list of (title, [widget or layout, ...]); the footer (Run/Cancel, progress,
    status) stays on screen however long the groups grow.
    """
    inner_widget = QWidget()
    layout = QVBoxLayout(inner_widget)
    for title, contents in groups:
        box = QGroupBox(title)
        inner = QVBoxLayout(box)
        for content in contents:
            inner.addWidget(content) if isinstance(content, QWidget) else inner.addLayout(content)
        layout.addWidget(box)
    layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(inner_widget)
    outer = QVBoxLayout(widget)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll, 1)
    for item in footer:
        outer.addWidget(item)
