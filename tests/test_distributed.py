"""``lsdebm train`` under torchrun: 2 CPU processes (gloo) with DistributedDataParallel."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import lsdebm
from lsdebm.runtime.checkpoint import load_checkpoint
from lsdebm.train.state import sidecar_path


@pytest.mark.parametrize("kind", ["lsdebm"])  # the hardest case: 3 sub-networks, Langevin in forward
def test_torchrun_two_cpu_processes(tmp_path, kind):
    out = tmp_path / f"{kind}.safetensors"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "lsdebm.cli.main", "train", "--model", kind, "--preset", "tiny", "--phantoms", "8",
           "--val-phantoms", "2", "--epochs", "2", "--batch-size", "2", "--device", "cpu", "--threads", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**_env(), "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = load_checkpoint(out, expect_kind=kind)
    info = ckpt.info
    assert info["world_size"] == 2
    # both ranks trained: 8 cases split over 2 ranks, 2 epochs -> 8 samples each
    assert info["samples_per_rank_this_run"] == [8, 8]
    assert info["samples_seen"] == 16
    assert sidecar_path(out).is_file()
    assert (tmp_path / f"{kind}.csv").read_text().count("\n") == 3  # header + 2 epochs, written once (rank 0)
    assert proc.stdout.count("wrote ") == 1 or proc.stdout.count("wrote ") == 2


def _env():
    import os

    return dict(os.environ)


def test_a_torchrun_worker_leaves_with_its_exit_code_and_its_output():
    """Under torchrun (WORLD_SIZE > 1) ``lsdebm`` leaves through os._exit: nothing printed may be lost."""
    env = {**_env(), "WORLD_SIZE": "2"}
    env.pop("PYTHONUNBUFFERED", None)  # buffered, as in a plain shell: the flush before os._exit is what keeps it
    one = Path(lsdebm.__file__).parent / "checkpoints" / "reconnet-default.safetensors"
    listed = subprocess.run([sys.executable, "-m", "lsdebm.cli.main", "checkpoints", str(one)], capture_output=True,
                            text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "reconnet" in listed.stdout and "sha256" in listed.stdout  # a short output, lost unless flushed
    failed = subprocess.run([sys.executable, "-m", "lsdebm.cli.main", "reconstruct", "/no/such/mask.nii.gz",
                             "--out", "/no/such/out.nii.gz"], capture_output=True, text=True, timeout=120, env=env)
    assert failed.returncode == 2
    assert "file not found" in failed.stderr
