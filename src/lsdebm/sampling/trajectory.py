"""Trajectories: a recorder that consumes sampler events and a CPU-side, file-backed record.

Named axes (``Trajectory.AXES``):
  forward   (repeat, t, dim)        z_0 ... z_{t*} of the forward chain (t = 0 is the encoding)
  reverse   (repeat, t, k, dim)     z_t-space latent (y / a_{t+1}) at recorded Langevin iterations
  energy    (repeat, t, k)          conditional energy U at those iterations
  grad_norm (repeat, t, k)          |grad U|
  k_values  (k,)                    which 1-based Langevin iterations were recorded (last = K)
  guided    (repeat, j, dim)        measurement-guided iterations after the chain (y / a_1; may be empty)
  guided_energy (repeat, j, 2)      their prior and (weighted) data energy
Reverse arrays are indexed by t = 0 .. t*-1 (the step producing z_t). For LEBM the posterior
iterations are stored as a single reverse step t = 0.

A *frame* index s runs over the whole process for scrubbing: s = 0..t* is forward z_s,
s = t*+1 .. 2t* is the reverse step t = 2t* - s. A generation from noise (Algorithm 3) has one
forward frame, z_T ~ N(0, I); ``metadata["forward_start_t"] = T`` says so (:attr:`forward_start`).
"""
from __future__ import annotations

import json
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lsdebm.errors import InputError, InputWarning
from lsdebm.fileio import atomic_write
from lsdebm.limits import check_memory
from lsdebm.sampling.events import Event, LangevinEvent, ResultEvent, StepEvent

FORMAT = "lsdebm-trajectory"
FORMAT_VERSION = 1


def latent_variance(z: np.ndarray) -> np.ndarray:
    """Variance across latent coordinates (ddof 0), the y-axis of the paper's Fig. 5."""
    return np.var(z, axis=-1)


@dataclass
class Trajectory:
    forward: np.ndarray
    reverse: np.ndarray
    energy: np.ndarray
    grad_norm: np.ndarray
    k_values: np.ndarray
    a_cum: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)
    guided: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0), np.float32))
    guided_energy: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), np.float32))

    AXES = {"forward": ("repeat", "t", "dim"), "reverse": ("repeat", "t", "k", "dim"),
            "energy": ("repeat", "t", "k"), "grad_norm": ("repeat", "t", "k"), "k_values": ("k",)}
    OPTIONAL = ("guided", "guided_energy")

    @property
    def depth(self) -> int:
        return self.reverse.shape[1]

    @property
    def repeats(self) -> int:
        return self.forward.shape[0]

    @property
    def n_frames(self) -> int:
        return self.forward.shape[1] + self.reverse.shape[1]

    @property
    def n_k(self) -> int:
        return len(self.k_values)

    @property
    def forward_start(self) -> int:
        """Diffusion step t of the first forward frame: 0 (the encoding) or T for generation from noise."""
        return int(self.metadata.get("forward_start_t", 0))

    def frame_info(self, s: int) -> tuple[str, int]:
        """(phase, t) of frame ``s``: t is the paper's diffusion step (z_t), not the frame index (negative ``s``
        counts from the end; outside the trajectory: InputError)."""
        s = self._index("frame", s, self.n_frames, "frames")
        nf = self.forward.shape[1]
        return ("forward", self.forward_start + s) if s < nf else ("reverse", self.depth - 1 - (s - nf))

    def latent(self, s: int, k_index: int = -1, repeat: int = 0, clean: bool = False) -> np.ndarray:
        """Latent at frame ``s`` and recorded iteration ``k_index`` (forward frames ignore k).

        Negative indices count from the end, as in :func:`lsdebm.decode_frame` (``s=-1``: the final reverse
        step); an index outside the trajectory is an InputError naming the valid range.
        With ``clean`` the predicted clean latent z_t / a_cum[t] is returned instead.
        """
        s = self._index("frame", s, self.n_frames, "frames")
        k_index = self._index("k_index", k_index, max(self.n_k, 1), "recorded Langevin iterations")
        repeat = self._index("repeat", repeat, self.repeats, "chains (repeats)")
        phase, t = self.frame_info(s)
        z = self.forward[repeat, s] if phase == "forward" else self.reverse[repeat, t, k_index]
        return z / self.a_cum[t] if clean else z

    @staticmethod
    def _index(name: str, value, n: int, what: str) -> int:
        """``value`` as an index into ``n`` items (negative counts from the end); else one line naming the range."""
        whole = not isinstance(value, bool) and isinstance(value, (int, np.integer))
        if not (whole and -n <= value < n):
            raise InputError(f"{name}={value!r:.60} is outside the trajectory's {n} {what}; expected a whole number "
                             f"in {-n}..{n - 1} (negative counts from the end)")
        return int(value) % n

    def forward_variance(self) -> np.ndarray:
        return latent_variance(self.forward)

    def reverse_variance(self) -> np.ndarray:
        """Variance of the final latent of each reverse step, (repeat, t)."""
        return latent_variance(self.reverse[:, :, -1])

    def process_variance(self) -> np.ndarray:
        """Variance per frame s over the whole forward+reverse process, (repeat, n_frames)."""
        rev = self.reverse_variance()[:, ::-1]
        return np.concatenate([self.forward_variance(), rev], axis=1)

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write an ``.npz`` (no pickles) atomically, under exactly the name given, which must end in ``.npz`` (any
        case): what :meth:`load` and the viewer open. Another name is an InputError (numpy would have appended
        ``.npz`` to it, so the name asked for would not be the file written)."""
        path = Path(path)
        if path.suffix.lower() != ".npz":
            raise InputError(f"{path}: a trajectory is saved as an .npz archive; expected a file name ending in .npz "
                             f"(e.g. {path.with_suffix('.npz') if path.name else 'run.npz'})")
        meta = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, **self.metadata})
        arrays = {name: getattr(self, name) for name in ("forward", "reverse", "energy", "grad_norm",
                                                          "k_values", "a_cum")}
        arrays.update({name: getattr(self, name) for name in self.OPTIONAL if getattr(self, name).size})

        def write(tmp: Path) -> None:  # through a handle: numpy appends ".npz" to a name not ending in exactly that
            with open(tmp, "wb") as handle:
                np.savez_compressed(handle, metadata=np.array(meta), **arrays)

        atomic_write(path, write, overwrite=overwrite)
        return path

    @classmethod
    def load(cls, path: str | Path, expect_checkpoint: str | None = None) -> "Trajectory":
        """Read a trajectory file; errors name the file and the problem."""
        path = Path(path)
        if not path.is_file():
            raise InputError(f"{path}: trajectory file not found")
        try:
            with zipfile.ZipFile(path) as archive:  # sizes from the zip directory, before decompressing
                unpacked = sum(info.file_size for info in archive.infolist())
        except Exception as exc:  # not a zip, truncated (no central directory), ...
            raise InputError(f"{path}: not a readable trajectory .npz ({type(exc).__name__}: {exc}); expected a "
                             "complete file saved by napari-lsdebm") from None
        check_memory(unpacked, f"{path}: the trajectory")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in data.files}
        except Exception as exc:  # zip/npz corruption of any kind
            raise InputError(f"{path}: not a readable trajectory .npz ({type(exc).__name__}: {exc}); expected a "
                             "complete file saved by napari-lsdebm") from None
        try:
            meta = json.loads(str(arrays.pop("metadata")))
            if not isinstance(meta, dict):
                raise ValueError("not a JSON object")
            version = int(meta.get("format_version", 0))
        except (KeyError, ValueError, TypeError, RecursionError):
            raise InputError(f"{path}: trajectory metadata missing or corrupt; expected a file saved by "
                             "napari-lsdebm") from None
        if meta.get("format") != FORMAT:
            raise InputError(f"{path}: not an lsdebm trajectory (format={meta.get('format')!r})")
        if version > FORMAT_VERSION:
            raise InputError(f"{path}: trajectory format version {meta['format_version']} is newer than this "
                             f"library supports ({FORMAT_VERSION}); upgrade napari-lsdebm")
        missing = {"forward", "reverse", "energy", "grad_norm", "k_values", "a_cum"} - set(arrays)
        if missing:
            raise InputError(f"{path}: trajectory is missing arrays {sorted(missing)}")
        meta.pop("format"), meta.pop("format_version", None)
        traj = cls(metadata=meta, **{k: arrays[k] for k in cls.AXES.keys() | {"a_cum"}},
                   **{k: arrays[k] for k in cls.OPTIONAL if k in arrays})
        traj.validate(str(path))
        recorded = meta.get("checkpoint_sha256")
        if expect_checkpoint and recorded is None:
            warnings.warn(f"{path}: the trajectory does not record which checkpoint made it, so it cannot be "
                          "checked against the loaded one", InputWarning, stacklevel=2)
        elif expect_checkpoint and recorded != expect_checkpoint:
            raise InputError(f"{path}: trajectory was recorded with checkpoint {str(recorded)[:12]}…, "
                             f"not the loaded one ({expect_checkpoint[:12]}…); load the checkpoint that made it")
        return traj

    def validate(self, name: str = "trajectory") -> None:
        """Check array ranks, numeric types and that the named axes agree; raise InputError if not."""
        arrays = {n: getattr(self, n) for n in ("forward", "reverse", "energy", "grad_norm", "k_values", "a_cum")}
        odd = [n for n, a in arrays.items() if not isinstance(a, np.ndarray) or a.dtype.kind not in "iuf"]
        if odd or self.reverse.ndim != 4 or self.a_cum.ndim != 1:
            raise InputError(f"{name}: trajectory arrays have the wrong type or rank ({', '.join(odd) or 'reverse'}"
                             "); expected numeric arrays with the axes of Trajectory.AXES")
        r, t, k, d = self.reverse.shape
        ok = (self.forward.ndim == 3 and self.forward.shape[0] == r and self.forward.shape[2] == d
              and self.forward.shape[1] >= 1 and r >= 1
              and self.energy.shape == (r, t, k) and self.grad_norm.shape == (r, t, k)
              and self.k_values.shape == (k,) and len(self.a_cum) >= max(self.forward.shape[1], t + 1)
              and bool(np.all(self.a_cum[: max(self.forward.shape[1], t + 1)] != 0)))
        if not ok:
            raise InputError(f"{name}: inconsistent trajectory array shapes (reverse {self.reverse.shape}, forward "
                             f"{self.forward.shape}, energy {self.energy.shape}, k_values {self.k_values.shape}, "
                             f"a_cum {self.a_cum.shape}); expected the axes of Trajectory.AXES")


class TrajectoryRecorder:
    """Consumes events; keeps latents on the CPU, every ``every``-th Langevin iteration (and the last).

    Use as ``for ev in run_events(...): recorder(ev)`` or ``recorder.consume(events)``.
    """

    def __init__(self, K: int, a: np.ndarray, a_cum: np.ndarray, every: int = 1,
                 metadata: dict[str, Any] | None = None) -> None:
        if every < 1:
            raise InputError(f"record every={every} must be >= 1")
        self.K, self.every = K, every
        self.a, self.a_cum = np.asarray(a), np.asarray(a_cum)
        self.k_values = np.unique(np.r_[np.arange(every, K + 1, every), K]).astype(np.int64)
        self._kpos = {int(k): i for i, k in enumerate(self.k_values)}
        self.forward: dict[int, np.ndarray] = {}
        self.reverse: dict[int, np.ndarray] = {}
        self.energy: dict[int, np.ndarray] = {}
        self.grad: dict[int, np.ndarray] = {}
        self.result: ResultEvent | None = None
        self.metadata = dict(metadata or {})
        self.guided: list[tuple[np.ndarray, np.ndarray]] = []

    def __call__(self, ev: Event) -> None:
        if isinstance(ev, StepEvent) and ev.phase in ("encode", "forward"):
            self.forward[ev.t] = ev.z.detach().cpu().float().numpy()
        elif isinstance(ev, LangevinEvent) and ev.phase == "consistency":
            total = ev.energy.detach().cpu().float().numpy()
            data = ev.data_energy.detach().cpu().float().numpy() if ev.data_energy is not None else 0 * total
            self.guided.append((ev.z.detach().cpu().float().numpy() / self.a[1], np.stack([total - data, data], -1)))
        elif isinstance(ev, LangevinEvent):
            pos = self._kpos.get(ev.k)
            if pos is None:
                return
            scale = self.a[ev.t + 1] if ev.phase == "reverse" else 1.0
            z = ev.z.detach().cpu().float().numpy() / scale
            if ev.t not in self.reverse:
                n, d = z.shape
                nk = len(self.k_values)
                self.reverse[ev.t] = np.zeros((n, nk, d), np.float32)
                self.energy[ev.t] = np.zeros((n, nk), np.float32)
                self.grad[ev.t] = np.zeros((n, nk), np.float32)
            self.reverse[ev.t][:, pos] = z
            self.energy[ev.t][:, pos] = ev.energy.detach().cpu().float().numpy()
            self.grad[ev.t][:, pos] = ev.grad_norm.detach().cpu().float().numpy()
        elif isinstance(ev, ResultEvent):
            self.result = ev

    def consume(self, events) -> ResultEvent | None:
        for ev in events:
            self(ev)
        return self.result

    def trajectory(self) -> Trajectory:
        if not self.forward:
            raise InputError("no events were recorded")
        fwd = np.stack([self.forward[t] for t in sorted(self.forward)], axis=1)
        ts = sorted(self.reverse)
        n, d = fwd.shape[0], fwd.shape[2]
        nk = len(self.k_values)
        if ts:
            rev = np.stack([self.reverse[t] for t in ts], axis=1)
            en = np.stack([self.energy[t] for t in ts], axis=1)
            gn = np.stack([self.grad[t] for t in ts], axis=1)
        else:
            rev, en, gn = (np.zeros((n, 0, nk, d), np.float32), np.zeros((n, 0, nk), np.float32),
                           np.zeros((n, 0, nk), np.float32))
        traj = Trajectory(fwd.astype(np.float32), rev, en, gn, self.k_values.copy(),
                          self.a_cum.astype(np.float64), dict(self.metadata))
        if self.guided:
            traj.guided = np.stack([z for z, _ in self.guided], axis=1).astype(np.float32)
            traj.guided_energy = np.stack([e for _, e in self.guided], axis=1).astype(np.float32)
        return traj
