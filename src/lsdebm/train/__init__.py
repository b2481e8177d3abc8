"""Training: losses per model (Algorithm 1 for LSD-EBM) and the training loop."""
