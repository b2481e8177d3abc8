"""Animations of a trajectory scrubbed along the diffusion step t (and the Langevin iteration k).

Frame orders: ``"t"`` walks the whole process (forward z_0..z_t*, then the reverse chain back to
z_0) showing the last recorded Langevin iteration of each reverse step; ``"tk"`` additionally
walks every recorded iteration k inside each reverse step; ``"k"`` walks the iterations of one
frame. Rendering without a viewer (:func:`render_volume`) shows three maximum-intensity
projections of the decoded probability volume; the plugin captures viewer screenshots
instead. Every frame carries a progress bar along its bottom edge (which also keeps
consecutive GIF frames distinct: Pillow merges identical ones). GIF via imageio/Pillow,
MP4 via imageio-ffmpeg.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from lsdebm.errors import InputError, LsdebmError
from lsdebm.fileio import check_target
from lsdebm.provenance import sidecar_path
from lsdebm.review.export import _check_targets, _write_with_sidecar, export_record
from lsdebm.tasks.progress import Cancelled

ORDERS = ("t", "tk", "k")
ANIMATION_SUFFIXES = (".gif", ".mp4")


def _check_order(along: str) -> None:
    if along not in ORDERS:
        raise InputError(f"animation order {along!r} is not one of {', '.join(ORDERS)}")


def grid_order(n_t: int, n_k: int, along: str, t0: int = 0, k0: int = -1) -> list[tuple[int, int]]:
    """(t, k) index pairs for a layer with ``t`` and ``k`` axes: along t at k0, along k at t0, or both."""
    _check_order(along)
    k0 = k0 % n_k
    if along == "t":
        return [(t, k0) for t in range(n_t)]
    if along == "k":
        return [(t0, k) for k in range(n_k)]
    return [(t, k) for t in range(n_t) for k in range(n_k)]


def trajectory_order(trajectory, along: str, frame: int = -1) -> list[tuple[int, int]]:
    """(frame s, k index) pairs over a :class:`lsdebm.sampling.Trajectory` (forward frames have no k)."""
    _check_order(along)
    n = trajectory.n_frames
    if along == "t":
        return [(s, -1) for s in range(n)]
    if along == "k":
        s = frame % n
        return [(s, k) for k in range(trajectory.n_k)] if trajectory.frame_info(s)[0] == "reverse" else [(s, -1)]
    return [(s, k) for s in range(n)
            for k in (range(trajectory.n_k) if trajectory.frame_info(s)[0] == "reverse" else (-1,))]


def with_progress(frame: np.ndarray, fraction: float, height: int = 4) -> np.ndarray:
    """A copy of an RGB(A) uint8 frame with a progress bar of ``fraction`` along its bottom edge."""
    out = np.array(frame, dtype=np.uint8, copy=True)
    h, w = out.shape[:2]
    bar = out[max(0, h - height):]
    bar[...] = 40
    bar[:, : int(round(np.clip(fraction, 0.0, 1.0) * w)), :3] = (230, 159, 0)  # Okabe-Ito orange
    if out.shape[2] == 4:
        bar[..., 3] = 255
    return out


def render_volume(volume: np.ndarray, zoom: int = 4) -> np.ndarray:
    """Three maximum-intensity projections (along each axis) of a [0, 1] volume as RGB uint8."""
    volume = np.clip(np.asarray(volume, np.float32), 0.0, 1.0)
    views = [volume.max(axis=a) for a in range(3)]
    height = max(v.shape[0] for v in views)
    pad = [np.pad(v, ((0, height - v.shape[0]), (0, 2))) for v in views]
    gray = (np.concatenate(pad, axis=1) * 255).astype(np.uint8)
    gray = np.repeat(np.repeat(gray, zoom, 0), zoom, 1)
    return np.repeat(gray[..., None], 3, axis=2)


def trajectory_frames(trajectory, decode: Callable[[np.ndarray], np.ndarray], along: str = "t", frame: int = -1,
                      repeat: int = 0, clean: bool = False, zoom: int = 4) -> Iterator[np.ndarray]:
    """Rendered frames of a trajectory; ``decode`` maps a latent (dim,) to a probability volume."""
    order = trajectory_order(trajectory, along, frame)
    for i, (s, k) in enumerate(order):
        volume = decode(trajectory.latent(s, k, repeat, clean))
        yield with_progress(render_volume(volume, zoom), (i + 1) / len(order))


def _rgb(frame) -> np.ndarray:
    """An RGB uint8 frame (alpha dropped: screenshots are opaque, and GIF frames must share one mode)."""
    frame = np.asarray(frame, np.uint8)
    if frame.ndim == 2:
        return np.repeat(frame[..., None], 3, axis=2)
    return frame[..., :3]


def _even_frames(frames: list[np.ndarray]) -> list[np.ndarray]:
    """Pad RGB frames to multiples of 16 px (what H.264 encoders need)."""
    h, w = frames[0].shape[:2]
    ph, pw = -h % 16, -w % 16
    return [np.pad(f, ((0, ph), (0, pw), (0, 0))) for f in frames] if ph or pw else frames


def format_duration(seconds: float) -> str:
    """``"45 s"``, ``"7 min 30 s"`` or ``"1 h 05 min"``."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


def animation_estimate(n_frames: int, seconds_per_frame: float) -> str:
    """One line shown before an export starts: the frame count and about how long capturing takes."""
    return f"{n_frames:,} frames, about {format_duration(n_frames * seconds_per_frame)} to capture"


def _check_stop(should_stop: Callable[[], bool] | None, path: Path) -> None:
    if should_stop is not None and should_stop():
        raise Cancelled(f"{path.name}: animation export cancelled; nothing was written")


def _writer(path: Path, frames: list[np.ndarray], fps: float, should_stop: Callable[[], bool] | None = None):
    suffix = path.suffix.lower()
    if suffix == ".gif":
        import imageio.v3 as iio

        def write_gif(tmp):
            _check_stop(should_stop, path)
            iio.imwrite(tmp, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
            _check_stop(should_stop, path)  # the temporary file is removed, the target never appears
        return write_gif
    try:
        import imageio_ffmpeg  # noqa: F401
    except ImportError:
        raise LsdebmError(f"{path}: MP4 export needs imageio-ffmpeg (pip install imageio-ffmpeg); "
                          "or save a .gif") from None
    import imageio.v2 as iio2

    def write(tmp):
        with iio2.get_writer(str(tmp), format="FFMPEG", fps=fps, codec="libx264", quality=8,
                             macro_block_size=1, ffmpeg_log_level="error") as w:
            for f in _even_frames(frames):
                _check_stop(should_stop, path)
                w.append_data(f)
        _check_stop(should_stop, path)
    return write


def check_animation_target(path, overwrite: bool = False) -> Path:
    """The checks :func:`export_animation` makes of its file name, made before any frame is captured (capturing
    along t and k takes minutes; a name it then refuses wasted them): the suffix, MP4's encoder, the file and its
    sidecar (existing, a directory, under a file).

    Raises:
        InputError: If the suffix is not .gif or .mp4.
        LsdebmError: If the file cannot be written (see :func:`lsdebm.fileio.check_target`), or an MP4 has no encoder.
    """
    path = Path(path)
    if path.suffix.lower() not in ANIMATION_SUFFIXES:
        raise InputError(f"{path}: animations must end with {' or '.join(ANIMATION_SUFFIXES)}")
    if path.suffix.lower() == ".mp4":
        _writer(path, [], 1.0)  # raises when imageio-ffmpeg is missing; writes nothing
    for target in (path, sidecar_path(path)):
        check_target(target, overwrite=True)
    _check_targets(path, overwrite)
    return path


def export_animation(path, frames: Iterable[np.ndarray], fps: float = 8.0, provenance: dict | None = None,
                     overwrite: bool = False, should_stop: Callable[[], bool] | None = None,
                     **details) -> tuple[Path, Path]:
    """Write frames (gray, RGB or RGBA uint8, same size) as an RGB GIF or MP4 with a provenance sidecar.

    ``details`` (e.g. ``along="tk"``) are recorded in the sidecar's ``export`` entry. When
    ``should_stop()`` turns true while encoding, :class:`lsdebm.tasks.progress.Cancelled` is
    raised and neither the file nor its sidecar (nor a temporary file) is left behind.
    """
    path = check_animation_target(path, overwrite)
    if fps <= 0:
        raise InputError(f"fps={fps} must be > 0")
    frames = [_rgb(f) for f in frames]
    if not frames:
        raise InputError(f"{path}: no frames to write")
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"{path}: frames differ in size ({sorted({f.shape for f in frames})[:2]})")
    record = export_record(provenance, path, "animation", format=path.suffix.lower()[1:], frames=len(frames),
                           fps=fps, **details)
    return _write_with_sidecar(path, _writer(path, frames, fps, should_stop), record, overwrite)
