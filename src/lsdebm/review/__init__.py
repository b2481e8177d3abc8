"""Comparison and review of reconstructions against a reference (Qt-free).

Modules, one responsibility each:

* :mod:`lsdebm.review.overlap` -- TP/FP/FN label map, counts and legend colours.
* :mod:`lsdebm.review.roi` -- regions (whole volume, anatomical parts, a box or mask ROI) and
  the paper's metrics (Appendix D, plus HD95/ASSD) inside them.
* :mod:`lsdebm.review.table` -- metric rows as CSV / tab-separated text.
* :mod:`lsdebm.review.surface` -- smooth surface meshes of masks and signed distances in mm.
* :mod:`lsdebm.review.uncertainty` -- mean probability and per-voxel variance of N stochastic runs.
* :mod:`lsdebm.review.compare` -- VAE, LEBM and LSD-EBM (plus ReconNet and the raw input) on one input.
* :mod:`lsdebm.review.export` -- NIfTI masks, meshes, images and animations with provenance sidecars.

Nothing here imports Qt or napari; scikit-image, pyvista and imageio are imported lazily
inside the functions that need them (they come with the ``viewer`` extra).
"""
