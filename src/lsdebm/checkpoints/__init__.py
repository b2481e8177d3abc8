"""Bundled model checkpoints (``*.safetensors`` weights with ``*.json`` configs)."""
