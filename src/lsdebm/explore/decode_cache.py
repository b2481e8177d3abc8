"""Lazy, bounded decoding of trajectory frames: decode on demand, never twice, LRU in bytes.

The same LRU holds the iso-surface meshes of decoded frames (:mod:`lsdebm.explore.meshes`), so
one byte budget bounds volumes and meshes together.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable

import numpy as np

from lsdebm.review.surface import Mesh


class DecodeCache:
    """Thread-safe LRU cache of decoded volumes (and their meshes) bounded by ``max_bytes``.

    ``get(key, make)`` returns the cached volume for ``key`` or calls ``make()`` once to build it.
    Volumes are stored as float16 probabilities to halve memory. ``get_mesh(key, make)`` does the
    same for a :class:`Mesh` (under a key of its own, e.g. :meth:`TrajectoryVolumes.mesh_key`).
    """

    def __init__(self, max_bytes: int = 512 * 2 ** 20) -> None:
        if max_bytes <= 0:
            raise ValueError("cache size must be > 0 bytes")
        self.max_bytes = int(max_bytes)
        self.nbytes = 0
        self.hits = self.misses = 0
        self._items: OrderedDict[Hashable, np.ndarray | Mesh] = OrderedDict()
        self._lock = threading.Lock()

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """The cached volume for ``key``, else ``make()`` as float16, stored."""
        return self._get(key, lambda: np.asarray(make(), dtype=np.float16))

    def get_mesh(self, key: Hashable, make: Callable[[], Mesh]) -> Mesh:
        """The cached mesh for ``key``, else ``make()``, stored."""
        return self._get(key, make)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.nbytes = 0

    def _get(self, key: Hashable, make: Callable[[], np.ndarray | Mesh]):
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
        value = make()
        with self._lock:
            self.misses += 1
            if key not in self._items and value.nbytes <= self.max_bytes:
                self._items[key] = value
                self.nbytes += value.nbytes
                while self.nbytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self.nbytes -= old.nbytes
        return value
