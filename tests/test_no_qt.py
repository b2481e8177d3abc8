import subprocess
import sys

CODE = """
import sys
import lsdebm, lsdebm.cli.main, lsdebm.evaluation.metrics, lsdebm.data.phantom_set, lsdebm.data.nifti
lsdebm.cli.main.build_parser()
bad = sorted(m for m in sys.modules
             if m.split('.')[0].startswith(('PyQt', 'PySide', 'qtpy', 'napari', 'magicgui', 'vispy')))
print(','.join(bad))
"""


def test_core_imports_without_qt_or_napari():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
