import subprocess
import sys

CODE = """
import sys
import lsdebm.review.animation, lsdebm.review.compare, lsdebm.review.export, lsdebm.data.frame
import lsdebm.review.overlap, lsdebm.review.roi, lsdebm.review.surface, lsdebm.review.table
import lsdebm.review.uncertainty
heavy = ('PyQt', 'PySide', 'qtpy', 'napari', 'magicgui', 'vispy', 'pyvista', 'vtk', 'skimage', 'imageio',
         'matplotlib')
print(','.join(sorted(m for m in sys.modules if m.split('.')[0].startswith(heavy))))
"""


def test_review_core_imports_no_gui_or_mesh_libraries():
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
