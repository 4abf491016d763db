"""Separation metrics through a maintained implementation (fast_bss_eval)."""

from __future__ import annotations

import numpy as np
from fast_bss_eval import si_sdr as _si_sdr


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> np.ndarray:
    """SI-SDR in dB of estimates against references, both (..., samples); returns (...)."""
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    return np.asarray(_si_sdr(ref[..., None, :], est[..., None, :], zero_mean=False, clamp_db=60.0))[..., 0]


def si_sdr_improvement(reference: np.ndarray, estimate: np.ndarray, mixture: np.ndarray) -> np.ndarray:
    """SI-SDR(estimate) - SI-SDR(mixture as the estimate), per source. reference (N, T), mixture (T,)."""
    base = si_sdr(reference, np.broadcast_to(mixture, reference.shape))
    return si_sdr(reference, estimate) - base
