"""Pieces the docks share: panels, plots, layers and the one thread helper (jobs)."""
