"""The STFT encoder at run time: FFT analysis, the exported network between the transforms, masked
FFT synthesis and the mixture projection, in numpy (no torch).

Why the transforms are not in the graph: as dense (de)convolutions (1024 taps, 1026 channels, one
synthesis per source) they were two thirds of a live block's encoder time on one core, and ONNX
Runtime's DFT operator is slower still; numpy's FFT does both in a few hundred microseconds. The graph
(`Encoder.spectral`) keeps everything learned. Equal to the torch encoder within float32 rounding
(`rtsep export` checks it).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .langevin.masks import numpy_stft

SPECTRAL_INPUTS = ("spec",)
SPECTRAL_OUTPUTS = ("logits", "log_scale")
INTERFACE = "spectrum"
"""The encoder graph's `interface` metadata for this split; graphs without it take the waveform."""


class SpectralEncoder:
    """mix (B, T), T % hop == 0 -> mean, log-scale (B, N, T) around a graph runner `run(spec) -> (logits,
    log_scale)` with spec (B, 2F, L) real parts then imaginary, logits (B, N, F, L)."""

    def __init__(self, run: Callable[[np.ndarray], Any], n_fft: int, hop: int, consistency: bool = True) -> None:
        self.run, self.consistency = run, consistency
        self.stft = numpy_stft(n_fft, hop, np.float32)

    def __call__(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mix = np.asarray(mix, dtype=np.float32)
        spec = self.stft.forward(mix).astype(np.complex64)  # (B, L, F)
        feed = np.ascontiguousarray(np.concatenate([spec.real, spec.imag], axis=-1).transpose(0, 2, 1))
        logits, log_scale = self.run(feed)
        n = logits.shape[1]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        masks = (n / e.sum(axis=1, keepdims=True)) * e  # (B, N, F, L): softmax over sources, times N
        means = self.stft.inverse(masks.transpose(0, 1, 3, 2) * spec[:, None]).astype(np.float32)
        if self.consistency:
            means += mix[:, None] - means.mean(axis=1, keepdims=True)
        return means, log_scale


def encoder_runner(sess: Any) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """mix (B, T) -> (mean, log_scale) through an encoder.onnx session, whichever interface it has
    (graphs exported before the split take the waveform)."""
    from .runtime import metadata

    meta = metadata(sess) or {}
    if meta.get("interface") == INTERFACE:
        return SpectralEncoder(lambda spec: sess.run(list(SPECTRAL_OUTPUTS), {"spec": spec}), int(meta["n_fft"]),
                               int(meta["stride"]), bool(meta.get("consistency", True)))
    return lambda mix: tuple(sess.run(["mean", "log_scale"], {"mix": np.ascontiguousarray(mix[:, None], np.float32)}))
