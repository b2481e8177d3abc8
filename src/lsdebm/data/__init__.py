"""Data: procedural phantoms, thick-slice simulation, phantom sets and NIfTI io."""
