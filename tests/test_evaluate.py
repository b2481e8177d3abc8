"""`lsdebm evaluate` and `lsdebm checkpoints` on tiny checkpoints; part Dice and quality bars."""
from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lsdebm.cli.main import main
from lsdebm.config import get_preset
from lsdebm.evaluation.metrics import METRIC_NAMES, confusion
from lsdebm.evaluation.phantoms import part_dice, part_regions, quality_bars
from lsdebm.evaluation.report import recorded_metrics
from lsdebm.evaluation.rows import ROW_KEYS, select_rows
from lsdebm.nn import build_model
from lsdebm.runtime import checkpoint as checkpoint_module
from lsdebm.runtime.checkpoint import save_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")

PARTS = ["body", "pedicles", "laminae", "spinous", "transverse", "articular", "posterior"]


def test_evaluate_writes_all_rows_and_columns(tmp_path, tiny_ckpts, capsys):
    out = tmp_path / "eval"
    argv = ["evaluate", "--out", str(out), "--phantoms", "5", "--seed", "90000", "--checkpoint-dir",
            str(Path(tiny_ckpts["vae"]).parent), "--batch-size", "3", "--timing-cases", "1", "--reference-compat",
            "--device", "cpu"]
    assert main(argv) == 0
    report = json.loads((out / "report.json").read_text())  # strict JSON: NaN became null
    assert list(report["summary"]) == list(ROW_KEYS)
    for row in report["summary"].values():
        assert {*METRIC_NAMES, "sen_ref", "spec_ref", "nmi_ref", *(f"dice_{p}" for p in PARTS)} <= set(row)
        assert row["dsc"]["n"] == 5
    raw = report["summary"]["raw"]
    assert 0.3 < raw["dsc"]["mean"] <= 1.0 and raw["dsc"]["std"] >= 0
    assert [t["row"] for t in report["timing"]] == list(ROW_KEYS[1:])
    lsd = next(t for t in report["timing"] if t["row"] == "reconnet+lsdebm")
    assert lsd["model_seconds_batched"] > 0 and lsd["pipeline_seconds_single"] > lsd["model_seconds_single"]
    assert report["meta"]["test_set"].startswith("5 phantoms generated with seed 90000")
    assert len(report["quality_bars"]) == 10 and "CPU" in report["meta"]["device"]
    with open(out / "cases.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 5 * len(ROW_KEYS) and {r["method"] for r in rows} == set(ROW_KEYS)
    assert {"case", "level", "seconds", "hd95", "dice_posterior"} <= set(rows[0])
    md = (out / "report.md").read_text()
    for title in ("Raw LQ input", "ReconNet+LSD-EBM", "LSD-EBM (raw input)", "Table 3", "SPEC* (NPV)", "Posterior"):
        assert title in md
    assert " ± " in md and "lsdebm evaluate" in md
    # Existing reports are refused before any work.
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err


def test_record_metrics_and_checkpoint_listing(tmp_path, tiny_ckpts, monkeypatch, capsys):
    bundled = tmp_path / "bundled"
    bundled.mkdir()
    for kind in ("reconnet", "lsdebm"):
        shutil.copy(tiny_ckpts[kind], bundled / f"{kind}-default.safetensors")
    monkeypatch.setattr(checkpoint_module, "BUNDLED_DIR", bundled)
    data = tmp_path / "testset"
    argv = ["evaluate", "--out", str(tmp_path / "ev"), "--data", str(data), "--n", "5", "--methods",
            "raw,reconnet+lsdebm,lsdebm", "--timing-cases", "0", "--batch-size", "5", "--record-test-metrics"]
    assert main(argv) == 0
    assert (data / "manifest.csv").is_file()  # generated where --data pointed
    assert main([*argv, "--overwrite"]) == 0  # second run reads the set back
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["meta"]["test_set"].startswith("read from")
    store = json.loads((bundled / "test_metrics.json").read_text())
    assert set(store) == {"reconnet-default", "lsdebm-default"}
    assert set(store["lsdebm-default"]["rows"]) == {"reconnet+lsdebm", "lsdebm"}
    capsys.readouterr()
    assert main(["checkpoints", "--json"]) == 0
    listed = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed["lsdebm-default"]["test_metrics"]["rows"]["lsdebm"]["dsc"]["mean"] >= 0
    assert listed["lsdebm-default"]["grid"] == 16 and listed["lsdebm-default"]["kind"] == "lsdebm"
    assert main(["checkpoints"]) == 0
    text = capsys.readouterr().out
    assert "lsdebm-default" in text and "reconnet+lsdebm DSC" in text and "sha256" in text
    # A retrained file (different sha256) no longer shows the old numbers.
    save_checkpoint(build_model("lsdebm", get_preset("tiny")), bundled / "lsdebm-default.safetensors",
                    info={"train_data": "other", "wall_time_s": 120.0}, overwrite=True)
    assert recorded_metrics("lsdebm-default", "0" * 64) is None
    assert main(["checkpoints", "--json"]) == 0
    entry = {e["name"]: e for e in json.loads(capsys.readouterr().out)}["lsdebm-default"]
    assert entry["test_metrics"] is None and entry["training_data"] == "other" and entry["training_seconds"] == 120


def test_part_dice_partitions_the_volume():
    rng = np.random.default_rng(0)
    parts = np.zeros((12, 12, 12), np.uint8)
    parts[2:6, 2:10, 2:10] = 1
    parts[6:10, 2:5, 2:10] = 2
    parts[6:10, 5:10, 2:6] = 4
    hq = parts > 0
    perfect = part_dice(hq, parts, part_regions(parts, (1.0, 1.0, 1.0)))
    assert perfect["dice_body"] == perfect["dice_pedicles"] == perfect["dice_posterior"] == 1.0
    assert np.isnan(perfect["dice_laminae"])  # absent in the reference
    pred = (hq ^ (rng.random(hq.shape) < 0.1)).astype(np.uint8)
    regions = part_regions(parts, (1.0, 2.0, 1.0))
    tp = sum(int((pred.astype(bool) & (regions == p) & (parts == p)).sum()) for p in (1, 2, 4))
    assert tp == confusion(pred, hq).tp  # regions tile the volume: part counts add up
    assert (regions > 0).all()
    got = part_dice(pred, parts, regions)
    assert 0 < got["dice_spinous"] < 1 and 0 < got["dice_posterior"] < 1


def test_quality_bars_and_row_selection():
    def stat(v):
        return {"mean": v, "std": 0.0, "n": 5}

    summary = {"raw": {"dsc": stat(0.7)}, "reconnet": {"dsc": stat(0.8)},
               "reconnet+vae": {"dsc": stat(0.85), "dice_posterior": stat(0.6)},
               "reconnet+lsdebm": {"dsc": stat(0.91), "dice_posterior": stat(0.5)}}
    bars = {b["bar"]: b["holds"] for b in quality_bars(summary)}
    assert bars["reconnet DSC > raw LQ DSC"] is True and bars["reconnet+lebm DSC > raw LQ DSC"] is None
    assert bars["reconnet+lsdebm mean DSC >= 0.90"] is True
    assert bars["reconnet+lsdebm dice_posterior >= reconnet+vae dice_posterior"] is False
    assert [r.key for r in select_rows(["lsdebm", "raw"])] == ["raw", "lsdebm"]
    with pytest.raises(Exception, match="unknown method row"):
        select_rows(["ddpm"])


def test_evaluate_bad_options(tmp_path, capsys):
    assert main(["evaluate", "--out", str(tmp_path / "e"), "--methods", "raw,ddpm"]) == 2
    assert "ddpm" in capsys.readouterr().err
    assert main(["evaluate", "--out", str(tmp_path / "e"), "--checkpoint-dir", str(tmp_path / "none")]) == 2
    assert "not found" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


@pytest.mark.parametrize("extra, fragment", [
    (["--seed", "-1"], "--seed -1: seeds must be >= 0"),  # a numpy ValueError traceback
    (["--seed", str(2**64)], "seeds must be >= 0 and < 2**63"),  # a torch OverflowError after the test set
    (["--step-size", "-1"], "--step-size -1.0 must be a finite number > 0"),  # math domain error in LEBM's chain
    (["--step-size", "nan"], "--step-size nan must be a finite number > 0"),  # LEBM: NaN latents, exit 0
    (["--langevin-steps", "0"], "--langevin-steps 0 must be >= 1"),
    (["--steps", "99"], "--steps 99 is outside 0..4"),  # found by the first LSD-EBM batch
])
def test_bad_values_are_refused_before_the_test_set_is_built(tmp_path, tiny_ckpts, monkeypatch, capsys, extra,
                                                              fragment):
    import lsdebm.data.phantom_set

    monkeypatch.setattr(lsdebm.data.phantom_set, "generate_pairs", lambda *a, **k: pytest.fail("built the test set"))
    out = tmp_path / "e"
    argv = ["evaluate", "--out", str(out), "--n", "2", "--methods", "raw,reconnet+lebm,lsdebm", "--checkpoint-dir",
            str(Path(tiny_ckpts["vae"]).parent), "--timing-cases", "0", "--device", "cpu", *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("lsdebm: error:") and "\n" not in err and fragment in err, err
    assert not out.exists()


@pytest.mark.parametrize("real", [False, True])
def test_an_out_that_cannot_be_written_is_refused_before_any_work(tmp_path, tiny_ckpts, monkeypatch, capsys, real):
    """It was found when the reports were written, after the whole evaluation."""
    import lsdebm.data.phantom_set
    import lsdebm.evaluation.real

    monkeypatch.setattr(lsdebm.data.phantom_set, "generate_pairs", lambda *a, **k: pytest.fail("built the test set"))
    monkeypatch.setattr(lsdebm.evaluation.real, "real_cases", lambda *a, **k: pytest.fail("built the test set"))
    (tmp_path / "a_file").write_text("mine")
    mode = ["--real"] if real else ["--n", "2", "--timing-cases", "0"]
    for out, fragment in ((tmp_path / "a_file" / "eval", "is a file, not a directory"),
                          ("/proc/lsdebm-test/eval", "cannot make a file in /proc")):
        assert main(["evaluate", *mode, "--out", str(out), "--methods", "raw", "--device", "cpu"]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"lsdebm: error: --out {out}: cannot write") and fragment in err and "\n" not in err
    assert (tmp_path / "a_file").read_text() == "mine"
