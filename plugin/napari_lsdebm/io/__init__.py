"""File contributions: NIfTI volumes, surface meshes, recorded trajectories."""
