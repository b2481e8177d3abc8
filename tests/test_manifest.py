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


def test_sample_data_commands_are_declared():
    manifest = Path(__file__).resolve().parents[1] / "napari.yaml"
    contributions = yaml.safe_load(manifest.read_text())["contributions"]
    commands = {c["id"] for c in contributions["commands"]}
    samples = {s["key"]: s for s in contributions["sample_data"]}
    assert {"phantom_pair", "teach_digits", "real_pair"} <= set(samples)
    assert all(s["command"] in commands for s in samples.values())
    assert "CC BY-SA 4.0" in samples["real_pair"]["display_name"]
    assert len(samples) == len(contributions["sample_data"])  # keys are unique
