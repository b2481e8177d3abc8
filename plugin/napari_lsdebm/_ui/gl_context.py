"""Removing a layer deletes its OpenGL objects in the canvas's own context (a segfault in Mesa otherwise).

napari (``VispyCanvas._remove_layer``) deletes a removed layer's GPU objects at once, outside a paint: it
garbage-collects the layer's vispy node and calls ``context.finish()``, which runs vispy's queued GL commands
(glDeleteProgram, glDeleteTextures, glDeleteBuffers) in whatever OpenGL context is current. The canvas, a
``QOpenGLWidget``, paints in a context of its own; after each repaint Qt leaves the window's compositing context
current (another ``QOpenGLContext``, on the window surface), so the deletions happen there. With Mesa (llvmpipe,
softpipe) a shader program deleted from that other context can make the canvas's next draw segfault when the
removed layer was hidden (drawn before, not since): the explorer's case, where a new run hides the previous
(t, k, z, y, x) trajectory and removing it takes the viewer from 5 to 3 dims; and plain 3D Labels in a 2D view
(Review's overlap view hides the prediction; then the reference and the hidden prediction are removed). Plain
napari crashes the same way (a hidden 5-dim image in 3D; four Labels layers in 2D: hide B, remove A, remove B).

:func:`keep_canvas_current` makes the canvas's context current whenever a layer is about to be removed, as vispy
does before it draws, so the objects are deleted in the context that made them. Every dock of the plugin installs
it in its viewer (a viewer the plugin never docked into is napari's alone).
"""
from __future__ import annotations

import weakref

_guarded: weakref.WeakSet = weakref.WeakSet()  # scene canvases whose viewer already has the hook


def scene_canvas(viewer):
    """The vispy ``SceneCanvas`` of a viewer shown in a Qt window, else None (headless viewers)."""
    viewer = getattr(viewer, "__wrapped__", viewer)  # napari hands plugins read-guarded proxies
    qt_viewer = getattr(getattr(viewer, "window", None), "_qt_viewer", None)
    return getattr(getattr(qt_viewer, "canvas", None), "_scene_canvas", None)


def make_current(canvas) -> bool:
    """Make ``canvas``'s OpenGL context current (nothing before it is first shown, or once it is closed)."""
    try:
        canvas.set_current()  # QOpenGLWidget.makeCurrent() when its context exists
    except RuntimeError:  # its Qt widget was deleted (the viewer closed)
        return False
    return True


def keep_canvas_current(viewer) -> bool:
    """Make the canvas's context current before every layer removal in ``viewer`` (once per viewer).

    Returns False when the viewer has no Qt canvas (nothing to guard)."""
    canvas = scene_canvas(viewer)
    if canvas is None:
        return False
    if canvas in _guarded:
        return True
    ref = weakref.ref(canvas)

    def before_removal(event=None) -> None:
        target = ref()
        if target is not None:
            make_current(target)

    getattr(viewer, "__wrapped__", viewer).layers.events.removing.connect(before_removal)
    _guarded.add(canvas)
    return True
