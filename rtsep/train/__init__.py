"""Training: priors on single sources, encoders on synthetic mixtures (need the `train` extra)."""
