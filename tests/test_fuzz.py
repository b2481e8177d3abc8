"""Property-based fuzzing (hypothesis) of the NIfTI reader, crop/paste, the metrics and the checkpoint loader.

Every outcome must be either a correct result or a one-line :class:`LsdebmError`; any other
exception (or a crash) fails the test, and so does a *wrong-but-silent* result: a volume whose
voxels or affine differ from what was written, a checkpoint whose weights or config differ from
the original, a metric outside its range. Example budgets keep the whole file near 30-60 s on a
shared 2-core CI machine; ``FUZZ_COUNTS`` records how many inputs each property saw.
"""
from __future__ import annotations

import gzip
import json
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from reliability_helpers import read_header, write_header

from lsdebm.config import get_preset
from lsdebm.data.frame import crop_label, paste_back
from lsdebm.data.nifti import read_volume
from lsdebm.errors import CheckpointError, InputError, LsdebmError
from lsdebm.evaluation.metrics import compute_metrics
from lsdebm.nn import build_model
from lsdebm.runtime.checkpoint import load_checkpoint, save_checkpoint

FUZZ_COUNTS: Counter = Counter()
FAST = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

DTYPES = [np.uint8, np.int8, np.int16, np.uint16, np.int32, np.float32, np.float64, np.complex64]


@pytest.fixture(scope="module", autouse=True)
def report_counts():
    yield
    print("\nfuzz inputs tried:", dict(FUZZ_COUNTS))


# --- NIfTI reader: valid files with random shapes, types, spacings and affines --------------------------


def rotation(q) -> np.ndarray:
    w, x, y, z = np.asarray(q, float) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


@st.composite
def nifti_cases(draw):
    ndim = draw(st.sampled_from([2, 3, 3, 3, 4, 5]))
    shape = [draw(st.integers(1, 6)) for _ in range(3 if ndim >= 3 else 2)]
    if ndim >= 4:
        shape += [draw(st.sampled_from([1, 1, 2])) for _ in range(ndim - 3)]
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    data = (rng.random(shape) * (100 if dtype.kind in "iuc" else 1)).astype(dtype)
    if dtype.kind == "f" and draw(st.integers(0, 4)) == 0:
        data.flat[draw(st.integers(0, data.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    spacing = [draw(st.sampled_from([0.001, 0.3, 0.8, 1.0, 1.7, 3.0, 6.0, 100.0])) for _ in range(3)]
    q = [draw(st.floats(-1, 1)) for _ in range(4)]
    assume(np.linalg.norm(q) > 0.1)
    linear = rotation(q) @ np.diag(spacing)
    if draw(st.booleans()):  # shear (non-orthogonal affine)
        linear = linear @ np.array([[1, draw(st.floats(-0.5, 0.5)), 0], [0, 1, draw(st.floats(-0.5, 0.5))],
                                    [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = [draw(st.floats(-500, 500)) for _ in range(3)]
    return data, affine, draw(st.sampled_from([".nii", ".nii.gz"]))


def expected_problem(data: np.ndarray) -> str | None:
    """What read_volume must refuse for this array (in the reader's order), or None when it must load it."""
    if data.dtype.kind == "c":
        return "not supported"
    shape = list(data.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape.pop()
    if len(shape) != 3:
        return "expected a single 3D volume"
    if data.dtype.kind == "f" and not np.all(np.isfinite(data)):
        return "NaN"
    return None


@settings(FAST, max_examples=100)
@given(case=nifti_cases())
def test_reader_loads_exactly_what_was_written_or_refuses(case):
    data, affine, suffix = case
    FUZZ_COUNTS["nifti_valid"] += 1
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"case{suffix}"
        nib.save(nib.Nifti1Image(data, affine, dtype=data.dtype), str(path))
        stored = nib.load(str(path)).affine  # the header stores the affine in float32
        problem = expected_problem(data)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                volume = read_volume(path)
            except InputError as exc:
                assert problem is not None and problem in str(exc), (problem, str(exc))
                assert str(path) in str(exc) and "\n" not in str(exc)
                return
        assert problem is None, f"loaded a file that should be refused ({problem})"
        assert np.array_equal(volume.data, data.reshape(volume.data.shape)) and volume.data.ndim == 3
        assert volume.data.dtype == data.dtype
        np.testing.assert_allclose(volume.affine, stored, rtol=0, atol=0)
        np.testing.assert_allclose(volume.affine, affine, rtol=1e-5, atol=1e-3 * max(1, np.abs(affine).max()))


# --- NIfTI reader: random and mutated bytes -----------------------------------------------------------

def _template(gz: bool) -> bytes:
    data = np.zeros((5, 4, 3), np.int16)
    data[1:4, 1:3, 1] = 7
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / ("t.nii.gz" if gz else "t.nii")
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 2.0, 3.0, 1.0]), dtype=np.int16), str(path))
        return path.read_bytes()


TEMPLATES = {False: _template(False), True: _template(True)}


@st.composite
def mutated_nifti(draw):
    gz = draw(st.booleans())
    raw = bytearray(gzip.decompress(TEMPLATES[True]) if gz else TEMPLATES[False])
    for _ in range(draw(st.integers(0, 6))):
        op = draw(st.sampled_from(["flip", "byte", "truncate", "header_field"]))
        if not raw:
            break
        if op == "flip":
            i = draw(st.integers(0, len(raw) - 1))
            raw[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif op == "truncate":
            raw = raw[: draw(st.integers(0, len(raw)))]
        else:  # overwrite a header field (dims, datatype, pixdim, vox_offset, scaling, sform) with junk
            offset = draw(st.sampled_from([40, 42, 44, 46, 48, 70, 72, 76, 80, 84, 108, 112, 116, 252, 254, 280]))
            if offset + 4 <= len(raw):
                raw[offset:offset + 4] = draw(st.binary(min_size=4, max_size=4))
    blob = bytes(raw)
    if gz:
        blob = gzip.compress(blob)
        if draw(st.booleans()):
            blob = blob[: draw(st.integers(0, len(blob)))]
    return blob, ".nii.gz" if gz else ".nii"


def _check_loaded(volume) -> None:
    """Invariants of anything read_volume returns (no silent garbage)."""
    assert volume.data.ndim == 3 and volume.data.size > 0 and volume.data.dtype.kind in "biuf"
    if volume.data.dtype.kind == "f":
        assert np.all(np.isfinite(volume.data))
    assert np.all(np.isfinite(volume.affine)) and abs(np.linalg.det(volume.affine[:3, :3])) > 0


@settings(FAST, max_examples=200)
@given(case=mutated_nifti())
def test_reader_on_mutated_files_loads_or_refuses(case):
    blob, suffix = case
    FUZZ_COUNTS["nifti_mutated"] += 1
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / f"m{suffix}"
        path.write_bytes(blob)
        try:
            _check_loaded(read_volume(path))
        except InputError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)


@settings(FAST, max_examples=120)
@given(blob=st.binary(max_size=1200), suffix=st.sampled_from([".nii", ".nii.gz"]), gz=st.booleans())
def test_reader_on_random_bytes_refuses(blob, suffix, gz):
    FUZZ_COUNTS["nifti_random_bytes"] += 1
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / f"r{suffix}"
        path.write_bytes(gzip.compress(blob) if gz else blob)
        try:
            _check_loaded(read_volume(path))
        except InputError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)


# --- crop / paste back --------------------------------------------------------------------------------


@st.composite
def blob_cases(draw):
    spacing = np.array([draw(st.floats(0.8, 2.5)) for _ in range(3)])
    semi = np.array([draw(st.floats(8.0, 14.0)) for _ in range(3)])  # mm
    q = [draw(st.floats(-1, 1)) for _ in range(4)]
    assume(np.linalg.norm(q) > 0.1)
    linear = rotation(q) @ np.diag(spacing)
    if draw(st.booleans()):
        linear = linear @ np.array([[1, draw(st.floats(-0.3, 0.3)), 0], [0, 1, 0], [0, 0, 1]])
    shape = tuple(int(np.ceil(2 * semi.max() * 1.5 / s)) + 4 for s in spacing)
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = [draw(st.floats(-200, 200)) for _ in range(3)]
    label = draw(st.sampled_from([1, 5, 255, 1000]))
    return shape, affine, semi, label, draw(st.integers(0, 10 ** 6))


@settings(FAST, max_examples=20)
@given(case=blob_cases())
def test_crop_paste_round_trip(case):
    shape, affine, semi, label, seed = case
    FUZZ_COUNTS["crop_paste"] += 1
    # An ellipsoid in world mm around the volume centre, with axes along the world axes.
    centre_vox = (np.array(shape) - 1) / 2 + np.random.default_rng(seed).uniform(-2, 2, 3)
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), -1).reshape(-1, 3)
    world = (grid - centre_vox) @ affine[:3, :3].T
    inside = (((world / semi) ** 2).sum(1) <= 1).reshape(shape)
    labels = np.zeros(shape, np.int16)
    labels[inside] = label
    labels[0, 0, 0] = 3  # another structure that paste-back must keep
    crop, info = crop_label(labels, affine, label, grid=32, spacing=2.0)
    assert crop.shape == (32, 32, 32) and set(np.unique(crop)) <= {0, 1}
    merged = paste_back(crop, info, base=labels)
    back = merged == label
    dsc = 2 * (back & inside).sum() / (back.sum() + inside.sum())
    assert dsc > 0.85, dsc
    assert merged[0, 0, 0] == 3 and merged.dtype == labels.dtype
    assert set(np.unique(merged)) <= {0, 3, label}
    centroid = np.argwhere(back).mean(0)
    assert np.abs((centroid - np.argwhere(inside).mean(0)) @ affine[:3, :3].T).max() < 2.5  # mm


# --- metrics ------------------------------------------------------------------------------------------


@st.composite
def mask_pairs(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.integers(1, 10)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2 ** 32 - 1)))
    pa, pb = draw(st.sampled_from([0.0, 0.05, 0.3, 0.7, 1.0])), draw(st.sampled_from([0.0, 0.1, 0.5, 1.0]))
    a, b = rng.random(shape) < pa, rng.random(shape) < pb
    spacing = tuple(draw(st.sampled_from([0.5, 1.0, 2.3])) for _ in range(ndim))
    return a, b, spacing


BOUNDED = ("dsc", "vs", "sen", "spec", "nmi")
SYMMETRIC = ("dsc", "vs", "nmi", "ck", "hd95", "assd")


@settings(FAST, max_examples=200)
@given(case=mask_pairs(), compat=st.booleans())
def test_metric_bounds_symmetry_and_identity(case, compat):
    a, b, spacing = case
    FUZZ_COUNTS["metrics"] += 1
    m, swapped, same = (compute_metrics(p, g, spacing, reference_compat=compat) for p, g in ((a, b), (b, a), (a, a)))
    for r in (m, swapped, same):
        assert all(np.isfinite(v) for v in r.values()), r
        assert all(0.0 <= r[k] <= 1.0 for k in BOUNDED), r
        assert -1.0 <= r["ck"] <= 1.0 and r["hd95"] >= 0 and r["assd"] >= 0
    if not compat:
        for k in SYMMETRIC:
            assert m[k] == pytest.approx(swapped[k], abs=1e-9), k
        perfect = {"dsc": 1.0, "vs": 1.0, "sen": 1.0, "spec": 1.0, "nmi": 1.0, "ck": 1.0, "hd95": 0.0, "assd": 0.0}
        assert same == pytest.approx(perfect, abs=1e-12)
        # Sensitivity of the masks is the specificity of their complements.
        inv = compute_metrics(~a, ~b, spacing)
        assert m["sen"] == pytest.approx(inv["spec"]) and m["spec"] == pytest.approx(inv["sen"])


# --- checkpoint loader on mutated files ---------------------------------------------------------------


@pytest.fixture(scope="module")
def checkpoint_template(tmp_path_factory):
    torch.manual_seed(0)
    model = build_model("vae", get_preset("tiny").replace(**{"model.latent_dim": 4}))
    path = save_checkpoint(model, tmp_path_factory.mktemp("fuzz") / "vae.safetensors")
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return path.read_bytes(), state, model.cfg


@st.composite
def checkpoint_mutations(draw, size: int, header_len: int):
    ops = []
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip_header", "flip_data", "truncate", "edit_json", "length"]))
        if kind == "flip_header":
            ops.append(("flip", draw(st.integers(0, 8 + header_len - 1)), draw(st.integers(0, 7))))
        elif kind == "flip_data":
            ops.append(("flip", draw(st.integers(8 + header_len, size - 1)), draw(st.integers(0, 7))))
        elif kind == "truncate":
            ops.append(("truncate", draw(st.integers(0, size - 1)), 0))
        elif kind == "length":
            ops.append(("length", draw(st.integers(0, 2 ** 64 - 1)), 0))
        else:
            ops.append(("json", draw(st.sampled_from(["grid", "latent_dim", "kind", "format_version", "dtype",
                                                      "shape", "data_offsets", "channels", "T", "info"])),
                        draw(st.integers(0, 5))))
    return ops


JSON_EDITS = [0, 1, -1, 4096, "x", None]


def _apply(raw: bytes, ops) -> bytes:
    for op, a, b in ops:
        if op == "flip" and a < len(raw):
            raw = raw[:a] + bytes([raw[a] ^ (1 << b)]) + raw[a + 1:]
        elif op == "truncate":
            raw = raw[:a]
        elif op == "length" and len(raw) >= 8:
            raw = a.to_bytes(8, "little") + raw[8:]
        elif op == "json":
            raw = _edit_json(raw, a, JSON_EDITS[b])
    return raw


def _edit_json(raw: bytes, field: str, value) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "s.safetensors"
        src.write_bytes(raw)
        try:
            header, data = read_header(src)
            meta = header["__metadata__"]
            tensor = header[sorted(k for k in header if k != "__metadata__")[0]]
        except Exception:  # already broken by an earlier mutation: leave as is
            return raw
        if field in ("dtype", "shape", "data_offsets"):
            tensor[field] = value if field == "dtype" else [value, value]
        elif field in ("kind", "format_version", "info"):
            meta[field] = json.dumps(value) if field == "info" else str(value)
        else:
            try:
                config = json.loads(meta["config"])
                section = "schedule" if field == "T" else "model"
                config[section][field] = value
                meta["config"] = json.dumps(config, sort_keys=True)
            except Exception:
                return raw
        return write_header(src, header, data).read_bytes()


@pytest.mark.timeout(600)
def test_checkpoint_loader_on_mutated_files(checkpoint_template):
    raw, state, cfg = checkpoint_template
    header_len = int.from_bytes(raw[:8], "little")
    outcomes = Counter()

    @settings(FAST, max_examples=200)
    @given(ops=checkpoint_mutations(len(raw), header_len))
    def check(ops):
        FUZZ_COUNTS["checkpoint_mutated"] += 1
        mutated = _apply(raw, ops)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "m.safetensors"
            path.write_bytes(mutated)
            try:
                loaded = load_checkpoint(path)
            except CheckpointError as exc:
                assert "\n" not in str(exc) and str(path) in str(exc)
                outcomes["refused"] += 1
                outcomes["refused by checksum"] += "checksum" in str(exc)
                return
            except LsdebmError:  # e.g. the memory limit
                outcomes["refused"] += 1
                return
            # Loaded: it must be exactly the original (no silent change of weights or config).
            outcomes["loaded"] += 1
            assert loaded.config == cfg and loaded.kind == "vae"
            got = loaded.model.state_dict()
            assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)

    check()
    assert outcomes["refused"] > 0
    print("checkpoint mutation outcomes:", dict(outcomes))
