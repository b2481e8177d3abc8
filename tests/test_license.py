"""The MIT licence file exists, is declared in pyproject, and the README separates the code's
licence from the shipped real masks' own licences."""
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_license_file_declared_and_readme_section():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) 2026 the napari-lsdebm authors\n")
    assert "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND" in text
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "MIT" and project["license-files"] == ["LICENSE"]
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Licence\n", 1)[1]
    assert "MIT" in section and "src/lsdebm/realdata/README.md" in section
    for licence in ("CC BY-SA 4.0", "BSD-3-Clause", "Apache-2.0"):  # as listed in the realdata README
        assert licence in section and licence in (ROOT / "src/lsdebm/realdata/README.md").read_text()
