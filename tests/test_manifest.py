import importlib
import shutil
import subprocess
import sys
from pathlib import Path

import yaml


def test_npe2_validate_installed_plugin():
    npe2 = shutil.which("npe2") or str(Path(sys.executable).with_name("npe2"))
    out = subprocess.run([npe2, "validate", "napari-lsdebm"], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_every_python_name_imports():
    manifest = Path(__file__).resolve().parents[1] / "napari.yaml"
    commands = yaml.safe_load(manifest.read_text())["contributions"]["commands"]
    assert commands
    for command in commands:
        module, _, attr = command["python_name"].partition(":")
        assert callable(getattr(importlib.import_module(module), attr)), command["python_name"]


def test_manifest_ships_inside_package():
    from importlib.resources import files

    assert files("napari_lsdebm").joinpath("napari.yaml").is_file()
