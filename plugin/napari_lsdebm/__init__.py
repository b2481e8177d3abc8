"""napari plugin for LSD-EBM: the UI layer over the Qt-free ``lsdebm`` core."""

from lsdebm import __version__

__all__ = ["__version__"]
