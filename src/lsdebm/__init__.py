"""LSD-EBM: latent-space diffusion with an energy-based prior for 3D vertebra masks.

The Qt-free core of napari-lsdebm: data (phantoms, thick-slice simulation, NIfTI io),
models, sampling, training, metrics and the ``lsdebm`` command line. Importing this
package never imports Qt or napari.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
