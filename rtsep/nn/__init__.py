"""PyTorch modules (need the `train` extra): flow priors, encoders, their score functions."""
