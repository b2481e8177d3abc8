"""Run a GUI scenario in a child Python of this checkout (for tests where a failure is a segfault or an exit code).

A segfault kills the process it happens in, so tests of crashes run the risky part in a child interpreter and look
at how it ended. :data:`PUMP` is source text the child scripts start from (or append after their own prelude):
napari imported, and ``pump(seconds)`` / ``wait_until(cond, seconds)`` that spin Qt's event loop.
"""
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PUMP = textwrap.dedent("""
    import os, sys, time, faulthandler
    faulthandler.enable()
    import numpy as np
    import napari
    from qtpy.QtWidgets import QApplication

    def pump(seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            QApplication.instance().processEvents()
            time.sleep(0.01)

    def wait_until(cond, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end and not cond():
            pump(0.02)
        assert cond(), "timed out"
""")


def run_child(args: list, timeout: float, **env_extra: str) -> subprocess.CompletedProcess:
    """``python ARGS`` with this checkout's ``src`` and ``plugin`` first on the path (not another editable
    install), napari's error catching off and ``env_extra`` set; output captured as text."""
    env = dict(os.environ)
    ours = [str(ROOT / "src"), str(ROOT / "plugin")]
    env["PYTHONPATH"] = os.pathsep.join(ours + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    env.setdefault("NAPARI_CATCH_ERRORS", "0")
    env.update(env_extra)
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT)


def told(proc: subprocess.CompletedProcess) -> str:
    """How a child ended, for an assertion message."""
    return f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
