"""Iso-surface meshes of decoded frames (Qt-free): location, empty frames, background meshing and caching."""
import threading

import numpy as np
import pytest

pytest.importorskip("skimage")

from lsdebm.explore import TrajectoryVolumes  # noqa: E402
from lsdebm.explore import volumes as volumes_module  # noqa: E402
from lsdebm.explore.decode_cache import DecodeCache  # noqa: E402
from lsdebm.explore.meshes import frame_mesh  # noqa: E402
from lsdebm.sampling import Trajectory  # noqa: E402


def box_probs(shape=(12, 14, 16), lo=(3, 4, 5), hi=(8, 10, 11)) -> np.ndarray:
    vol = np.zeros(shape, np.float32)
    vol[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = 0.9
    return vol


def test_mesh_lies_on_the_mask_boundary_in_layer_coordinates():
    lo, hi = np.array([3, 4, 5]), np.array([8, 10, 11])
    mesh = frame_mesh(box_probs(lo=lo, hi=hi))
    assert len(mesh.faces) > 0 and mesh.faces.dtype == np.int32 and mesh.vertices.dtype == np.float32
    v = mesh.vertices
    # between the last voxel inside (p = 0.9) and the first outside (p = 0): inside the mask's bounds +- 1 voxel
    assert np.all(v >= lo - 1) and np.all(v <= hi) and np.all(v.min(0) > lo - 1) and np.all(v.max(0) < hi)
    scaled = frame_mesh(box_probs(lo=lo, hi=hi), spacing=(2.0, 3.0, 4.0), origin=(10.0, 0.0, -5.0))
    np.testing.assert_allclose(scaled.vertices, v * [2, 3, 4] + [10, 0, -5], atol=1e-5)
    np.testing.assert_array_equal(scaled.faces, mesh.faces)


def test_mesh_vertices_sit_where_the_volume_crosses_the_level():
    from scipy.ndimage import map_coordinates

    grid = np.indices((24, 24, 24), np.float32) - 11.5
    probs = 1.0 / (1.0 + np.exp(np.sqrt((grid ** 2).sum(0)) - 7.0))  # a soft ball, p = 0.5 at radius 7
    mesh = frame_mesh(probs)
    assert len(mesh.faces) > 100
    radius = np.linalg.norm(mesh.vertices - 11.5, axis=1)
    assert np.abs(radius - 7.0).max() < 0.3
    at = map_coordinates(probs, mesh.vertices.T, order=1)
    np.testing.assert_allclose(at, 0.5, atol=0.05)
    normals = np.cross(*np.diff(mesh.vertices[mesh.faces], axis=1).transpose(1, 0, 2))
    outward = np.einsum("ij,ij->i", normals, mesh.vertices[mesh.faces].mean(1) - 11.5)
    assert (outward > 0).mean() > 0.99  # triangles wound with normals pointing out of the surface


@pytest.mark.parametrize("probs", [np.zeros((8, 8, 8), np.float32), np.full((8, 8, 8), 0.4, np.float16)])
def test_empty_frames_give_an_empty_mesh(probs):
    mesh = frame_mesh(probs)
    assert mesh.vertices.shape == (0, 3) and mesh.faces.shape == (0, 3)


class ShiftingBoxDecoder:
    """Decodes latent z to a box whose x position is round(z[0]) + 8 (a different mesh per frame)."""

    def __init__(self, delay_event=None):
        self.latents, self.gate = 0, delay_event

    def __call__(self, z):
        if self.gate is not None:
            self.gate.wait(10)
        self.latents += len(z)
        out = []
        for zi in z:
            x = int(np.clip(round(float(zi[0]) * 2) + 8, 2, 12))
            out.append(box_probs((12, 12, 16), (3, 3, x), (9, 9, x + 3)))
        return np.stack(out)


def trajectory(depth=3, nk=4, dim=4) -> Trajectory:
    rng = np.random.default_rng(1)
    return Trajectory(forward=rng.normal(size=(1, depth + 1, dim)).astype(np.float32),
                      reverse=rng.normal(size=(1, depth, nk, dim)).astype(np.float32),
                      energy=np.zeros((1, depth, nk), np.float32), grad_norm=np.zeros((1, depth, nk), np.float32),
                      k_values=np.arange(1, nk + 1), a_cum=np.linspace(1.0, 0.5, depth + 1), metadata={})


def counting_meshes(monkeypatch):
    """Count frame_mesh calls and the threads they run on."""
    calls = []

    def counted(*args, **kwargs):
        calls.append(threading.current_thread().name)
        return frame_mesh(*args, **kwargs)

    monkeypatch.setattr(volumes_module, "frame_mesh", counted)
    return calls


def test_meshes_are_made_on_the_decode_thread_prefetched_and_cached(monkeypatch):
    calls = counting_meshes(monkeypatch)
    vols = TrajectoryVolumes(trajectory(), ShiftingBoxDecoder(), (12, 12, 16), nonblocking=True)
    vols.meshes, vols.mesh_spacing = True, 2.0
    ready = threading.Event()
    vols.on_ready = lambda key: ready.set()
    assert vols.request_mesh(5, 1) is None  # nothing decoded yet: queued, and announced when ready
    assert ready.wait(10) and vols.jobs.wait_idle(10)
    mesh = vols.request_mesh(5, 1)
    assert mesh is not None and len(mesh.faces) > 0
    np.testing.assert_array_equal(mesh.vertices, frame_mesh(vols.frame(5, 1), spacing=2.0).vertices)
    assert set(calls) == {"lsdebm-decode"}  # every mesh was made on the background thread
    assert vols.jobs.wait_idle(10)
    for s, k in ((4, 1), (6, 1), (5, 0), (5, 2)):  # the neighbours were meshed by the prefetch
        assert vols.mesh_key(vols.key(s, k)) in vols.cache
    made = len(calls)
    again = vols.request_mesh(6, 1)
    assert again is not None and not np.array_equal(again.vertices, mesh.vertices)  # another frame, another mesh
    assert vols.jobs.wait_idle(10)
    made = len(calls)
    assert vols.request_mesh(5, 1) is mesh and vols.request_mesh(6, 1) is again  # revisits: the cached objects
    assert vols.jobs.wait_idle(10) and len(calls) == made  # nothing meshed again
    vols.close()


def test_blocking_mesh_and_shown_mesh_and_the_byte_budget():
    dec = ShiftingBoxDecoder()
    cache = DecodeCache(10 ** 9)
    vols = TrajectoryVolumes(trajectory(), dec, (12, 12, 16), cache=cache, prefetch=False)
    mesh = vols.shown_mesh(4, 2)  # blocking: decodes and meshes at once
    assert len(mesh.faces) > 0 and dec.latents == 1
    assert vols.shown_mesh(4, 2) is mesh and dec.latents == 1
    volume_bytes = 12 * 12 * 16 * 2  # float16
    assert cache.nbytes == volume_bytes + mesh.nbytes
    small = DecodeCache(volume_bytes + mesh.nbytes // 2)  # room for one volume, not for its mesh too
    vols.cache = small
    last = vols.mesh(3, 1)
    assert small.nbytes <= small.max_bytes
    vols.nonblocking = True
    vols.meshes = True
    gate = threading.Event()
    vols.decode = ShiftingBoxDecoder(gate)
    assert vols.shown_mesh(1, 0) is last  # not ready: the last mesh stands in
    gate.set()
    assert vols.jobs.wait_idle(10)
    vols.close()


def test_preload_decodes_and_meshes_one_frame_on_the_calling_thread(monkeypatch):
    """A run's worker thread prepares the frame the result opens at: decoded (and meshed when asked) into the
    cache on that thread, nothing prefetched, so the viewer's thread then finds it ready at once."""
    calls = counting_meshes(monkeypatch)
    dec = ShiftingBoxDecoder()
    vols = TrajectoryVolumes(trajectory(), dec, (12, 12, 16))
    vols.mesh_spacing = 2.0
    vols.preload(5, 1)
    assert dec.latents == 1 and vols.key(5, 1) in vols.cache and calls == []  # decoded, not meshed
    vols.preload(5, 1, mesh=True)
    assert dec.latents == 1 and calls == [threading.current_thread().name]  # not decoded again; meshed here
    assert vols.jobs._thread is None  # nothing was queued for the background thread (no prefetch)
    vols.nonblocking, vols.meshes, vols.prefetch = True, True, False
    mesh = vols.request_mesh(5, 1)  # ready at once: no wait, no placeholder
    np.testing.assert_array_equal(mesh.vertices, frame_mesh(vols.frame(5, 1), spacing=2.0).vertices)
    assert dec.latents == 1 and len(calls) == 1
    vols.close()
