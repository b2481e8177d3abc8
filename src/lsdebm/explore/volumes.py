"""Decoded volumes of a recorded trajectory as a lazy (t, k, Z, Y, X) array (Qt-free).

Axis 0 (``t``) is the frame index s over the whole process (:meth:`Trajectory.frame_info`:
forward z_0..z_t*, then every reverse step of Algorithm 2); axis 1 (``k``) is the recorded
Langevin iteration (eqs. 3-4) inside a reverse step. Each position is decoded with the
generation network, p(x | z) = sigmoid(decoder(z)), only when it is looked at, and kept in a
:class:`DecodeCache` so a frame is never decoded twice. Neighbouring positions are decoded in
one batch on a background thread (:class:`JobQueue`), behind the frame under the slider.

Viewers index it like a numpy array (napari does). In ``nonblocking`` mode a frame that is not
cached yet is decoded in the background, ``on_ready(key)`` is called from that thread when it
is, and meanwhile the last decoded volume is returned so the screen never goes blank. With
``wait_s`` > 0 a request first waits that long for its decode, so a fast decoder (GPU, small
grid) puts the new frame on screen in one step, without a placeholder and a second redraw.

With ``meshes`` on, every decode job (requests and prefetch alike) also extracts the frame's
p = 0.5 iso-surface (:func:`lsdebm.explore.meshes.frame_mesh`, in voxel-index coordinates
scaled by ``mesh_spacing``) on the background thread and caches it beside the volume, so a
viewer drawing frames as surfaces (:meth:`shown_mesh`) never meshes on its own thread and never
meshes a frame twice while it stays cached.
"""
from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

import numpy as np

from lsdebm.errors import InputError
from lsdebm.explore.background import JobQueue
from lsdebm.explore.decode_cache import DecodeCache
from lsdebm.explore.meshes import LEVEL, frame_mesh
from lsdebm.review.surface import Mesh, empty_mesh
from lsdebm.sampling import Trajectory

DecodeFn = Callable[[np.ndarray], np.ndarray]
Key = tuple[int, int, int, int, bool]  # (volumes id, repeat, s, k index or -1 for forward frames, clean)
MAX_STACK = 16  # frames one indexing call may decode when it asks for a range along t or k
_ids = itertools.count()


def make_decoder(model) -> DecodeFn:
    """A thread-safe ``(n, latent) -> (n, *grid)`` probability decoder on the model's device."""
    import torch

    from lsdebm.methods import decode

    device = next(model.parameters()).device
    lock = threading.Lock()

    def decode_latents(z: np.ndarray) -> np.ndarray:
        with lock:
            probs = decode(model, torch.as_tensor(np.asarray(z), dtype=torch.float32, device=device))
            return probs[:, 0].float().cpu().numpy()

    return decode_latents


class TrajectoryVolumes:
    """Lazy array of decoded volumes, shape ``(n_frames, n_k, *grid)``, float32 in [0, 1].

    Args:
        traj: The recorded trajectory.
        decode: ``(n, latent) -> (n, *grid)`` probabilities (see :func:`make_decoder`).
        grid_shape: Spatial shape of a decoded volume.
        cache: Shared cache (default 512 MB).
        prefetch: Decode the neighbours (s +- 1, k +- 1) in the background after each access.
        nonblocking: Never decode on the calling thread (see module docstring).
    """

    def __init__(self, traj: Trajectory, decode: DecodeFn, grid_shape: tuple[int, ...],
                 cache: DecodeCache | None = None, prefetch: bool = True, nonblocking: bool = False) -> None:
        self.traj, self.decode = traj, decode
        self.cache = cache if cache is not None else DecodeCache(512 * 2 ** 20)
        self.prefetch, self.nonblocking = prefetch, nonblocking
        self.wait_s = 0.0  # nonblocking: how long a request may wait for its decode before a placeholder
        self.prefetch_delay_s = 0.0  # neighbours are decoded no earlier than this after an access
        self.repeat, self.clean = 0, False
        self.uid = next(_ids)  # keeps keys of trajectories sharing one cache apart
        self.on_ready: Callable[[Key], None] | None = None
        self.shape = (traj.n_frames, traj.n_k, *map(int, grid_shape))
        self.dtype = np.dtype(np.float32)
        self.jobs = JobQueue()
        self.decoded = 0  # volumes decoded so far (tests and benchmarks read it)
        self.last_key: Key | None = None  # key of the last real (non-placeholder) volume returned
        self.wanted: Key | None = None  # key of the newest request (the frame under the slider)
        self.meshes = False  # decode jobs also extract and cache each frame's iso-surface
        self.mesh_level, self.mesh_spacing = LEVEL, 1.0
        self._last: np.ndarray | None = None
        self._last_mesh: Mesh | None = None
        self._inflight: dict[Key, threading.Event] = {}
        self._lock = threading.Lock()

    # array protocol --------------------------------------------------------------------------
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, index) -> np.ndarray:
        index = _expand(index, self.ndim)
        s_idx, k_idx, spatial = index[0], index[1], index[2:]
        if _is_int(s_idx) and _is_int(k_idx):
            return self.volume(int(s_idx), int(k_idx))[spatial]
        s_list = np.arange(self.shape[0])[s_idx]
        k_list = np.arange(self.shape[1])[k_idx]
        if np.size(s_list) * np.size(k_list) > MAX_STACK:
            raise InputError(f"asked for {np.size(s_list) * np.size(k_list)} decoded frames at once; "
                             f"at most {MAX_STACK} (index one t and one k position)")
        out = np.stack([np.stack([self.volume(int(s), int(k))[spatial] for k in np.atleast_1d(k_list)])
                        for s in np.atleast_1d(s_list)])
        return out[(0 if np.ndim(s_list) == 0 else slice(None), 0 if np.ndim(k_list) == 0 else slice(None))]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        if self.shape[0] * self.shape[1] > MAX_STACK:
            raise InputError(f"a trajectory of {self.shape[0]}x{self.shape[1]} decoded volumes is not loaded "
                             "into memory at once; index single (t, k) positions")
        return np.asarray(self[:, :], dtype=dtype)

    # frames ----------------------------------------------------------------------------------
    def key(self, s: int, k: int) -> Key:
        """Cache key of position (s, k); forward frames have no Langevin axis (k is ignored)."""
        s, k = self.position(s, k)
        phase, _ = self.traj.frame_info(s)
        return (self.uid, self.repeat, s, -1 if phase == "forward" else k, self.clean)

    def position(self, s: int, k: int) -> tuple[int, int]:
        """(s, k) with negative indices resolved; IndexError outside the array."""
        n_s, n_k = self.shape[:2]
        if not (-n_s <= s < n_s and -n_k <= k < n_k):
            raise IndexError(f"position (t={s}, k={k}) outside ({n_s}, {n_k})")
        return s % n_s, k % n_k

    def latent(self, key: Key) -> np.ndarray:
        _, repeat, s, k, clean = key
        return self.traj.latent(s, k, repeat, clean)

    def cached(self, s: int, k: int) -> np.ndarray | None:
        """The decoded volume if it is already cached, else None (never decodes)."""
        key = self.key(s, k)
        return self._from_cache(key) if key in self.cache else None

    def frame(self, s: int, k: int) -> np.ndarray:
        """Decoded volume at (s, k), decoding it on this thread if needed (blocking)."""
        s, k = self.position(s, k)
        key = self.key(s, k)
        vol = self._wait_ready(key)
        if vol is None:
            vol = self._decode([key])[0]
        self._after_access(key, vol, s, k)
        return vol

    def request(self, s: int, k: int) -> np.ndarray | None:
        """The volume if cached or decoded within ``wait_s``; else None, and ``on_ready(key)`` follows.

        A missing frame is decoded first on the background thread (urgent), its neighbours after.
        """
        s, k = self.position(s, k)
        key = self._fetch(s, k)
        if key is None:
            return None
        vol = self._from_cache(key)
        self._after_access(key, vol, s, k)
        return vol

    def volume(self, s: int, k: int) -> np.ndarray:
        """What a viewer shows at (s, k): ``frame`` or, when nonblocking, ``request`` or a placeholder."""
        if not self.nonblocking:
            return self.frame(s, k)
        vol = self.request(s, k)
        if vol is not None:
            return vol
        return self._last if self._last is not None else np.zeros(self.shape[2:], np.float32)

    # meshes ----------------------------------------------------------------------------------
    def mesh_key(self, key: Key) -> tuple:
        """Cache key of the iso-surface mesh of the frame ``key``."""
        return (*key, "mesh", self.mesh_level, self.mesh_spacing)

    def mesh(self, s: int, k: int) -> Mesh:
        """Iso-surface at (s, k), decoding and meshing on this thread if needed (blocking)."""
        self.frame(s, k)
        mesh = self._last_mesh = self._mesh_of(self.key(s, k))
        return mesh

    def request_mesh(self, s: int, k: int) -> Mesh | None:
        """Like :meth:`request`, for the iso-surface (needs ``meshes`` on to be meshed in the background)."""
        s, k = self.position(s, k)
        key = self._fetch(s, k)
        if key is None:
            return None
        mesh = self._last_mesh = self._mesh_of(key)
        self._after_access(key, None, s, k)
        return mesh

    def shown_mesh(self, s: int, k: int) -> Mesh:
        """What a surface view shows at (s, k): ``mesh`` or, when nonblocking, ``request_mesh`` or the last one."""
        if not self.nonblocking:
            return self.mesh(s, k)
        mesh = self.request_mesh(s, k)
        if mesh is not None:
            return mesh
        return self._last_mesh if self._last_mesh is not None else empty_mesh()

    def neighbours(self, s: int, k: int) -> list[Key]:
        """Keys one step away from slider position (s, k) along t and k, nearest first."""
        own = self.key(s, k)
        out = [self.key(s + ds, k + dk) for ds, dk in ((1, 0), (-1, 0), (0, 1), (0, -1))
               if 0 <= s + ds < self.shape[0] and 0 <= k + dk < self.shape[1]]
        return [n for n in dict.fromkeys(out) if n != own]

    def preload(self, s: int, k: int, mesh: bool = False) -> None:
        """Decode (s, k) into the cache on this thread, and extract its iso-surface too when ``mesh``; nothing
        is prefetched. A run's worker thread does it for the frame the result opens at, so the viewer's thread
        then finds it ready instead of decoding it or waiting for it."""
        key = self.key(s, k)
        if key not in self.cache:
            self._decode([key])
        if mesh:
            self._mesh_of(key)

    def close(self) -> None:
        self.jobs.close()

    # internals -------------------------------------------------------------------------------
    def _from_cache(self, key: Key) -> np.ndarray:
        return np.asarray(self.cache.get(key, lambda: self._decode([key], store=False)[0]), dtype=np.float32)

    def _fetch(self, s: int, k: int) -> Key | None:
        """Key of (s, k) once it is ready (cached, and meshed when ``meshes`` is on) within ``wait_s``.

        A frame that is not ready is queued first on the background thread (urgent), its
        neighbours after; None when it is not ready in time (``on_ready(key)`` follows).
        """
        key = self.wanted = self.key(s, k)
        if not self._ready(key):
            done = threading.Event()
            self.jobs.submit(lambda: self._job([key], notify=True, done=done), urgent=True)
            if self.prefetch:
                self._prefetch(s, k)
            if not (self.wait_s > 0 and done.wait(self.wait_s) and self._ready(key)):
                return None
        return key

    def _ready(self, key: Key) -> bool:
        return key in self.cache and (not self.meshes or self.mesh_key(key) in self.cache)

    def _mesh_of(self, key: Key) -> Mesh:
        return self.cache.get_mesh(self.mesh_key(key), lambda: frame_mesh(
            self._from_cache(key), self.mesh_level, self.mesh_spacing))

    def _after_access(self, key: Key, vol: np.ndarray | None, s: int, k: int) -> None:
        self.last_key = key
        if vol is not None:
            self._last = vol
        if self.prefetch:
            self._prefetch(s, k)

    def _prefetch(self, s: int, k: int) -> None:
        """Queue the neighbours of (s, k) behind any request, replacing an older prefetch."""
        self.jobs.submit(lambda: self._job(self.neighbours(s, k)), replace="prefetch", delay=self.prefetch_delay_s)

    def _wait_ready(self, key: Key) -> np.ndarray | None:
        with self._lock:
            event = self._inflight.get(key)
        if event is not None:
            event.wait()
        return self._from_cache(key) if key in self.cache else None

    def _decode(self, keys: list[Key], store: bool = True) -> list[np.ndarray]:
        with self._lock:
            events = {k: self._inflight.setdefault(k, threading.Event()) for k in keys}
        try:
            probs = self.decode(np.stack([self.latent(k) for k in keys]))
            self.decoded += len(keys)
            vols = [np.asarray(p, dtype=np.float32) for p in probs]
            if store:
                for k, v in zip(keys, vols):
                    self.cache.get(k, lambda v=v: v)
            return vols
        finally:
            with self._lock:
                for k, ev in events.items():
                    self._inflight.pop(k, None)
                    ev.set()

    def _job(self, keys: list[Key], notify: bool = False, done: threading.Event | None = None) -> None:
        todo = []
        for k in keys:
            if k in self.cache:
                continue
            with self._lock:
                busy = k in self._inflight
            if busy:
                self._wait_ready(k)
            else:
                todo.append(k)
        if todo:
            self._decode(todo)
        if self.meshes:  # here, on the background thread, never on the viewer's
            for k in keys:
                self._mesh_of(k)
        if done is not None:
            done.set()
        if notify and self.on_ready is not None:
            for k in keys:
                self.on_ready(k)


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer))


def _expand(index, ndim: int) -> tuple:
    """Normalise an index to a tuple of length ``ndim`` (Ellipsis and missing axes become ``:``)."""
    if not isinstance(index, tuple):
        index = (index,)
    if any(i is Ellipsis for i in index):
        at = next(j for j, i in enumerate(index) if i is Ellipsis)
        index = index[:at] + (slice(None),) * (ndim - len(index) + 1) + index[at + 1:]
    return tuple(index) + (slice(None),) * (ndim - len(index))
