"""Headless PNGs of decoded volumes: an iso-surface at p = 0.5 (Qt-free).

Backends, tried in order for ``backend="auto"``:
  * ``pyvista``: VTK off-screen, smooth shading. Without an X or Wayland display VTK is told to
    open an EGL window (when libEGL is installed) instead of first trying X and printing a
    "bad X server connection" warning on the way to the same EGL window.
  * ``matplotlib``: marching cubes (scikit-image) drawn as a 3D polygon collection; works on
    any machine with no display at all.
Array axes are the model frame of :func:`lsdebm.data.phantoms.grid_affine`: (superior,
posterior, right). Every view looks at the vertebra from behind-left and above, superior up.
"""
from __future__ import annotations

import contextlib
import ctypes.util
import functools
import os
import sys
from pathlib import Path

import numpy as np

from lsdebm.errors import LsdebmError
from lsdebm.fileio import atomic_write

VIEW_DIR = np.array([0.45, 0.75, -0.55])  # camera direction from the centre, (sup, post, right)
BACKENDS = ("pyvista", "matplotlib")


def render_iso_png(prob: np.ndarray, spacing: float, path: str | Path, title: str = "", level: float = 0.5,
                   backend: str = "auto", overwrite: bool = False, size: int = 480) -> str:
    """Write an iso-surface PNG of ``prob`` and return the backend that drew it.

    ``LSDEBM_RENDER=matplotlib`` in the environment forces the fallback for ``auto``.
    """
    order = [os.environ.get("LSDEBM_RENDER", "")] if backend == "auto" else [backend]
    order = [b for b in order if b in BACKENDS] or list(BACKENDS)
    if backend == "auto":
        order += [b for b in BACKENDS if b not in order]
    errors = []
    for name in order:
        try:
            draw = _pyvista if name == "pyvista" else _matplotlib
            atomic_write(Path(path), lambda tmp: draw(np.asarray(prob, np.float32), spacing, tmp, title, level, size),
                         overwrite=overwrite)
            return name
        except LsdebmError:
            raise
        except Exception as exc:  # missing package or no OpenGL: try the next backend
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise LsdebmError(f"{path}: could not render a PNG ({'; '.join(errors)})")


WINDOW_VARIABLE = "VTK_DEFAULT_OPENGL_WINDOW"


def headless_window() -> str | None:
    """The VTK render window to ask for on a Linux machine with no display (None: VTK's own choice).

    VTK's default factory tries X first; with no ``DISPLAY`` it logs a warning and then opens an
    EGL window anyway. A user's choice in ``VTK_DEFAULT_OPENGL_WINDOW`` is always kept.
    """
    if not sys.platform.startswith("linux") or os.environ.get(WINDOW_VARIABLE):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return "vtkEGLRenderWindow" if _has_egl() else None


@functools.cache
def _has_egl() -> bool:
    """Whether libEGL is installed (asked once: ``find_library`` runs ``ldconfig`` each time)."""
    return ctypes.util.find_library("EGL") is not None


@contextlib.contextmanager
def _window_choice():
    """Set :func:`headless_window`'s choice while a plotter is created; the environment is restored after."""
    choice = headless_window()
    if choice is None:
        yield
        return
    os.environ[WINDOW_VARIABLE] = choice
    try:
        yield
    finally:
        os.environ.pop(WINDOW_VARIABLE, None)


def _pyvista(prob, spacing, tmp: Path, title: str, level: float, size: int) -> None:
    import pyvista as pv

    grid = pv.ImageData(dimensions=prob.shape, spacing=(spacing,) * 3)
    grid.point_data["p"] = prob.ravel(order="F")
    with _window_choice():
        plotter = pv.Plotter(off_screen=True, window_size=(size, size))
    try:
        plotter.set_background("white")
        if prob.max() >= level:
            surface = grid.contour([level], scalars="p")
            plotter.add_mesh(surface, color="#e8d8b0", smooth_shading=True, specular=0.3)
        else:
            plotter.add_text("(nothing above p = 0.5)", position="upper_right", font_size=10, color="black")
        plotter.add_mesh(grid.outline(), color="#999999")
        if title:
            plotter.add_text(title, position="upper_left", font_size=11, color="black")
        center = np.array(grid.center)
        plotter.camera_position = [tuple(center + VIEW_DIR / np.linalg.norm(VIEW_DIR) * 3.2 * grid.length / 2),
                                   tuple(center), (1.0, 0.0, 0.0)]
        plotter.screenshot(str(tmp))
    finally:
        plotter.close()


def _matplotlib(prob, spacing, tmp: Path, title: str, level: float, size: int) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size / 100, size / 100), dpi=100)
    ax = fig.add_subplot(projection="3d")
    extent = np.array(prob.shape) * spacing
    if prob.max() >= level:
        from skimage.measure import marching_cubes

        verts, faces, _, _ = marching_cubes(prob, level, spacing=(spacing,) * 3)
        # plot (right, posterior, superior) so that superior is matplotlib's z (up)
        ax.plot_trisurf(verts[:, 2], verts[:, 1], faces, verts[:, 0], color="#e8d8b0", lw=0, shade=True)
    else:
        ax.text2D(0.5, 0.5, "(nothing above p = 0.5)", transform=ax.transAxes, ha="center")
    ax.set_xlim(0, extent[2]), ax.set_ylim(0, extent[1]), ax.set_zlim(0, extent[0])
    ax.set_box_aspect((1, 1, 1))
    ax.view_init(elev=30, azim=-120)
    ax.set_xlabel("right (mm)"), ax.set_ylabel("posterior (mm)"), ax.set_zlabel("superior (mm)")
    if title:
        ax.set_title(title, fontsize=10)
    fig.savefig(tmp, format="png")
