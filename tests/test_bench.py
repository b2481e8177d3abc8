"""Benchmarks run end to end in smoke mode (tiny preset); timings are reported, never asserted."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lsdebm.bench.runner import SECTIONS, run_benchmarks
from lsdebm.bench.timing import measure
from lsdebm.cli.main import main
from lsdebm.errors import InputError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    return run_benchmarks("tiny", "cpu", repeats=1, quick=True)


def test_every_section_reports(report):
    assert set(report["results"]) == set(SECTIONS)
    env = report["environment"]
    assert env["device"] == "cpu" and env["torch_threads"] >= 1 and env["cpu"]
    r = report["results"]
    for key in ("bare_fwd_bwd", "blas_only", "fast_iteration", "plain_iteration"):
        assert r["energy"][key]["median_s"] > 0
    assert r["chain"]["iterations"] == r["chain"]["T"] * r["chain"]["K"]
    assert r["decode"]["conv_gflop"] > 0 and all(r["decode"]["implementations"])
    assert set(r["end_to_end"]) >= {"vae", "lebm", "lsdebm", "reconnet", "reconnet+lsdebm", "lsdebm_plain"}
    assert all(r["training"][k]["samples_per_s"] > 0 for k in ("lsdebm", "vae", "lebm", "reconnet", "slabnet"))
    assert r["scrub"]["cache_hits"] >= 1 and r["scrub"]["cache_misses"] >= 2


def test_memory_stays_within_the_cache_bound(report):
    m = report["results"]["memory"]
    assert "error" not in m, m
    assert m["frames_decoded"] > m["frames_cached"] >= 1  # the cache had to evict
    assert m["cache_bytes"] <= m["cache_bound_bytes"]
    assert m["trajectory_frames"] == (m["T"] + 1) * m["K"]  # every iteration of every step kept


def test_targets_are_judged(report):
    names = [t["target"] for t in report["targets"]]
    assert any("Langevin iteration" in n for n in names) and any("uncached scrub" in n for n in names)
    assert all(t["met"] in (True, False) for t in report["targets"] if "128^3" not in t.get("note", ""))
    json.dumps(report)  # machine-readable


def test_cli_writes_json_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "bench.json"
    argv = ["bench", "--preset", "tiny", "--quick", "--repeats", "1", "--only", "energy,scrub", "--json", str(out)]
    assert main(argv) == 0
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"energy", "scrub"}
    assert "Langevin iteration" in capsys.readouterr().out
    assert main(argv) == 2  # exists, no --overwrite
    assert str(out) in capsys.readouterr().err
    assert main(argv + ["--overwrite"]) == 0


def test_cli_refuses_an_existing_json_before_measuring(tmp_path, capsys, monkeypatch):
    import lsdebm.bench.runner

    out = tmp_path / "bench.json"
    out.write_text("{}")
    monkeypatch.setattr(lsdebm.bench.runner, "run_benchmarks", lambda *a, **k: pytest.fail("measured first"))
    assert main(["bench", "--preset", "tiny", "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == "{}"


def test_bad_arguments_are_one_line_errors(capsys):
    assert main(["bench", "--preset", "tiny", "--only", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["bench", "--preset", "tiny", "--repeats", "0"]) == 2
    assert "--repeats" in capsys.readouterr().err
    for empty in ("", ","):  # printed the table's header and measured nothing
        assert main(["bench", "--preset", "tiny", "--only", empty]) == 2
        assert f"--only {empty!r} names no benchmark; expected one or more of" in capsys.readouterr().err


def test_cuda_request_without_cuda_is_an_input_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the request is valid")
    with pytest.raises(InputError, match="CUDA is not available"):
        run_benchmarks("tiny", "cuda", 1, True, ("energy",))


def test_measure_takes_medians():
    calls = []
    t = measure(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5 and t["repeats"] == 3 and t["min_s"] <= t["median_s"] <= t["max_s"]


def test_benchmark_script_prints_json():
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_sampler.py"), "--preset", "tiny",
                           "--repeats", "1", "--quick"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data["results"]) == {"energy", "chain"}


def test_the_real_anatomy_benchmark_times_and_scores_the_default():
    """benchmarks/bench_real.py's numbers come from real reconstructions that improve their inputs."""
    from lsdebm.bench.real import run

    out = run("cpu", n_vertebrae=1, fine_spacing=1.5)
    for block in (out, out["fine_grid"]):
        (case,) = block["per_vertebra"]
        assert case["seconds"] > 0 and case["dice_out"] > case["dice_in"]
        assert block["per_vertebra_median_s"] == case["seconds"]
    assert out["fine_grid"]["spacing_mm"] == 1.5
    assert out["spine"]["labels"] == [20, 21, 22, 23, 24] and out["spine"]["seconds"] > 0
    # the spine in a whole-body field of view comes back exactly as on its own map, nothing added elsewhere
    assert out["spine_in_body"]["shape"] == [400, 400, 500] and out["spine_in_body"]["same_result_as_spine"]
    assert [t["limit"] for t in out["targets"]] == [1.0, 10.0, 10.0]


@pytest.mark.parametrize("args, message", [(["--fine-spacing", "0"], "--fine-spacing 0: expected a grid spacing"),
                                           (["--vertebrae", "0"], "--vertebrae 0: expected at least 1"),
                                           (["--device", "cuda:99"], "--device cuda:99: ")])
def test_the_real_anatomy_benchmark_refuses_bad_options_in_one_line(args, message):
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_real.py"
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_bench_times_the_bundled_models_not_fresh_ones():
    """The bundled checkpoints carry the frame offset they were trained with; the benchmark still takes them."""
    import torch

    from lsdebm.bench.runner import bench_models

    models = bench_models("default", torch.device("cpu"), kinds=("reconnet", "lsdebm"))
    assert {kind: source for kind, (_, source) in models.items()} == {
        "reconnet": "bundled reconnet-default", "lsdebm": "bundled lsdebm-default"}


def test_cli_refuses_a_json_it_cannot_write_before_measuring(capsys, monkeypatch):
    """Under /proc (or any folder it cannot make a file in) it was found after the measurements."""
    import lsdebm.bench.runner

    monkeypatch.setattr(lsdebm.bench.runner, "run_benchmarks", lambda *a, **k: pytest.fail("measured first"))
    assert main(["bench", "--preset", "tiny", "--json", "/proc/lsdebm-test/bench.json"]) == 2
    assert "cannot make a file in /proc" in capsys.readouterr().err
