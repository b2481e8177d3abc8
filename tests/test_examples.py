"""Every script in examples/ runs, as a user would start it, and prints or writes what it says."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, *args: str, timeout: float = 600) -> str:
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(EXAMPLES / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=ROOT)
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


def test_every_example_is_tested():
    tested = {"inspect_latents.py", "teach_diffusion.py", "review_region.py", "compare_methods.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_inspect_latents(tmp_path):
    out = run_example("inspect_latents.py", "--out", str(tmp_path))
    lines = [line for line in out.splitlines() if line.strip().startswith(("forward t=", "reverse t="))]
    assert len(lines) == 5 and lines[-1].strip().startswith("reverse t=0")
    for line in lines:  # variance, then two Dice values in [0, 1]
        dsc = [float(v) for v in line.split()[-2:]]
        assert all(0.0 <= v <= 1.0 for v in dsc)
    assert (tmp_path / "L3_verse009_run.npz").is_file()
    assert "the full pipeline" in out


def test_teach_diffusion(tmp_path):
    png = tmp_path / "teach.png"
    out = run_example("teach_diffusion.py", "--n", "3", "--out", str(png))
    assert png.is_file() and png.stat().st_size > 0
    rows = [line.split() for line in out.splitlines() if line.strip() and line.split()[0].isdigit()]
    assert [int(r[0]) for r in rows[:10]] == list(range(9, -1, -1))  # LSD-EBM: t = T-1 ... 0
    assert float(rows[9][1]) == 0.0  # t = 0 is the final image itself


def test_review_region(tmp_path):
    out = run_example("review_region.py", "--out", str(tmp_path))
    rows = {tuple(line.split()[:2]) for line in out.splitlines() if line.strip().startswith(("input", "result"))}
    assert ("result", "posterior") in rows and ("input", "whole") in rows
    assert (tmp_path / "L2_verse009_result.nii.gz").is_file() and (tmp_path / "L2_verse009_result.stl").is_file()


@pytest.mark.skipif(not os.environ.get("DISPLAY"), reason="napari needs a display (the test script runs under Xvfb)")
def test_compare_methods_screenshot(tmp_path):
    png = tmp_path / "compare.png"
    out = run_example("compare_methods.py", "--out", str(png), "--size", "300", "500")
    assert png.is_file() and png.stat().st_size > 1000
    assert "metrics against" in out and "provenance" in out


def test_compare_methods_rerenders_the_cached_case_without_pick(tmp_path, monkeypatch):
    """docs/review.md's second command: re-render from --cache (a --pick run chose case 2) without --pick."""
    import importlib.util

    import numpy as np

    from lsdebm.review.compare import Comparison, MethodResult

    spec = importlib.util.spec_from_file_location("compare_methods_example", EXAMPLES / "compare_methods.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    metrics = dict.fromkeys(("dsc", "vs", "sen", "spec", "nmi", "ck", "hd95", "assd"), 0.5)
    cached = Comparison([MethodResult("input", "input", np.zeros((4, 4, 4), np.uint8), None, metrics, 0.0, {})],
                        np.eye(4), (1.0, 1.0, 1.0))
    cache = tmp_path / "compare.npz"
    example.save_results(cache, 2, cached)
    shown, generated, generate = [], [], example.generate_pairs
    monkeypatch.setattr(example, "generate_pairs", lambda *a: generated.extend(generate(*a)) or generated)
    monkeypatch.setattr(example, "compare_methods", lambda *a, **k: pytest.fail("the cached case was re-run"))
    monkeypatch.setattr(example, "screenshot", lambda args, pair, comparison: shown.append(pair))
    assert example.main(["--cache", str(cache), "--mode", "overlap", "--out", str(tmp_path / "overlap.png")]) == 0
    assert len(generated) == 3 and shown == [generated[2]]  # exactly the cached case, rendered from the cache
