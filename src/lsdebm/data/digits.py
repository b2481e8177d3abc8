"""2D teaching data: scikit-learn's bundled 8x8 digits, and MNIST-format files a user already has.

The paper validates the method on 2D images first (Appendix F, Table 2). Here the digits that
ship with scikit-learn (1797 images, 8x8, no download) are upsampled to the model grid
(16x16 or 32x32): each digit is resized to 3/4 of the grid with bilinear interpolation and
centred with a zero border, like MNIST's 20x20 digit in a 28x28 frame. Values are in [0, 1].
A fixed, seeded split keeps 20 % of the digits aside as the held-out set used by the Digits
Fréchet Distance (``lsdebm.teach.fid``).

MNIST-format ``idx`` files (``train-images-idx3-ubyte[.gz]`` and the labels) are read without
any download by :func:`read_idx`; :func:`load_mnist` resizes them to the same grids.
"""
from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from lsdebm.errors import InputError

DIGIT_SIZES = (16, 32)
SPLITS = ("train", "test", "all")
TEST_FRACTION = 0.2
SPLIT_SEED = 0
FILL = 0.75
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class DigitSet:
    """Images ``(N, size, size)`` float32 in [0, 1], integer ``labels`` ``(N,)`` and where they came from."""

    images: np.ndarray
    labels: np.ndarray
    source: str

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return self.images.shape[-1]


def _check_size(size: int) -> None:
    if size not in DIGIT_SIZES:
        raise InputError(f"digit size {size!r} is not supported; expected one of {DIGIT_SIZES}")


def resize_digits(images: np.ndarray, size: int, fill: float = FILL) -> np.ndarray:
    """Resize ``(N, h, w)`` images in [0, 1] so the digit spans ``fill * size`` pixels, centred.

    Bilinear, pixel-area aligned (``grid_mode``); the result is clipped to [0, 1], float32.
    """
    images = np.asarray(images, dtype=np.float32)
    inner = max(1, int(round(size * fill)))
    n, h, w = images.shape
    zoomed = ndimage.zoom(images, (1, inner / h, inner / w), order=1, grid_mode=True, mode="grid-constant")
    out = np.zeros((n, size, size), np.float32)
    off = (size - inner) // 2
    out[:, off:off + inner, off:off + inner] = zoomed[:, :inner, :inner]
    return np.clip(out, 0.0, 1.0)


def split_indices(n: int, split: str, seed: int = SPLIT_SEED, test_fraction: float = TEST_FRACTION) -> np.ndarray:
    """Indices of the fixed seeded ``train``/``test`` split (or ``all``) of ``n`` items."""
    if split not in SPLITS:
        raise InputError(f"split {split!r} is not known; expected one of {', '.join(SPLITS)}")
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    if split == "all":
        return np.arange(n)
    return np.sort(order[:n_test] if split == "test" else order[n_test:])


def load_digits(size: int = 16, split: str = "train") -> DigitSet:
    """scikit-learn's 8x8 digits resized to ``size`` x ``size`` (16 or 32), values in [0, 1]."""
    _check_size(size)
    try:
        from sklearn.datasets import load_digits as sk_load_digits
    except ImportError:  # pragma: no cover - depends on the environment
        raise InputError("the teaching digits need scikit-learn; install it with `pip install scikit-learn`") from None
    data = sk_load_digits()
    idx = split_indices(len(data.images), split)
    images = resize_digits(data.images[idx] / 16.0, size)
    return DigitSet(images, data.target[idx].astype(np.int64), f"sklearn-digits/{split}")


def read_idx(path: str | Path) -> np.ndarray:
    """Read an MNIST-format ``idx`` file (optionally ``.gz``) into a numpy array.

    Raises:
        InputError: naming the file when it is missing, truncated or not an idx file.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: idx file not found")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as exc:
        raise InputError(f"{path}: cannot read idx file ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise InputError(f"{path}: not an MNIST idx file (bad magic number); expected e.g. "
                         "train-images-idx3-ubyte or train-labels-idx1-ubyte")
    dtype, ndim = np.dtype(_IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise InputError(f"{path}: idx header is truncated")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise InputError(f"{path}: idx body has {len(raw) - header} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def load_mnist(images_path: str | Path, labels_path: str | Path | None = None, size: int = 16,
               limit: int | None = None) -> DigitSet:
    """MNIST-format digits (28x28 uint8 idx) resized to ``size`` x ``size`` in [0, 1].

    The whole 28x28 frame (whose digit spans about 20 pixels) is resized, so the digit covers
    about the same fraction of the grid as :func:`load_digits`. Labels are -1 without a file.
    """
    _check_size(size)
    images = read_idx(images_path)
    if images.ndim != 3:
        raise InputError(f"{images_path}: expected a 3D idx image array (N, rows, cols), got shape {images.shape}")
    if limit is not None:
        images = images[:limit]
    scale = 255.0 if images.dtype == np.uint8 else max(float(images.max()), 1.0)
    images = resize_digits(images / scale, size, fill=1.0)
    if labels_path is None:
        labels = np.full(len(images), -1, np.int64)
    else:
        labels = read_idx(labels_path)[:len(images)].astype(np.int64)
        if labels.shape != (len(images),):
            raise InputError(f"{labels_path}: {labels.shape} labels do not match {len(images)} images")
    return DigitSet(images, labels, f"mnist:{Path(images_path).name}")


def digit_mosaic(images: np.ndarray, cols: int, gap: int = 1, fill: float = 0.0) -> np.ndarray:
    """Tile ``(N, h, w)`` images into one 2D array with ``cols`` columns and a ``gap`` pixel border."""
    images = np.asarray(images)
    n, h, w = images.shape[-3:]
    lead = images.shape[:-3]
    rows = -(-n // cols)
    out = np.full(lead + (rows * (h + gap) - gap, cols * (w + gap) - gap), fill, images.dtype)
    for i in range(n):
        r, c = divmod(i, cols)
        out[..., r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = images[..., i, :, :]
    return out
