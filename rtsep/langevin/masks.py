"""Langevin on the mask logits: refine how the mixture's STFT is shared out, under the priors.

The signal-space chain (`rtsep.langevin`) moves every source freely and projects the sum back onto
the mixture. Its residual is spread equally over all sources, so each step hands every source a
quarter of what the others' priors reject; on held-out music4 and toy4 it lowered SI-SDR (README).
Here the estimate is parameterised as in the STFT encoder,

    s_k = istft(N * softmax_k(theta) * stft(m)),

so mean_k s_k == m holds exactly at every step, and no source can hold content the mixture does
not have. The chain is preconditioned SGLD (Li et al. 2016) on theta, annealed over the priors'
noise levels like BASIS:

    g = grad_theta sum_k log p_k,sigma_i(s_k(theta))          (prior scores, chain rule below)
    v = beta v + (1 - beta) g^2;   G = 1 / (sqrt(v) + delta)
    theta <- theta + lr * G g + T * sqrt(2 lr G) * eps

A time-frequency bin the mixture does not use has a tiny gradient and so gets large noise, which
is harmless there; a bin that matters moves by about `lr` per step whatever the prior's scale.
The warm start is any estimate x0 (the encoder's means): theta_0 = log of each source's share of
the STFT magnitude. The STFT here is numpy's, the same frame as the encoder's (`rtsep.nn.encoder.STFT`:
sqrt-Hann, hop | n_fft / 2, exact inverse), so both backends run this with only a score function.
Measured (README): on toy4 it improves saw and square by 3-6 dB but can deepen a sine/triangle
swap; on music4 it lowers SI-SDR too, because those priors do not prefer the true sources.
"""

from __future__ import annotations

import functools

import numpy as np

from .config import LogProbsFn, ScoresFn
from .labels import best_labelling, permuter


class NumpySTFT:
    """sqrt-Hann real STFT with `hop` | n_fft / 2, T / hop frames, and its exact inverse and adjoint."""

    def __init__(self, n_fft: int = 1024, hop: int = 256, dtype: type = np.float64) -> None:
        if n_fft % (2 * hop):
            raise ValueError(f"hop {hop} must divide n_fft / 2 = {n_fft // 2}")
        self.n_fft, self.hop, self.pad = n_fft, hop, (n_fft - hop) // 2
        self._overlaps: dict[int, np.ndarray] = {}  # window-square sum per frame count: every step reuses it
        # float32 for the encoder's transforms (as fast as its graph's precision allows), float64 for the chains
        self.win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft)).astype(dtype)
        c = np.full(n_fft // 2 + 1, 2.0)
        c[0] = c[-1] = 1.0
        self.c = c / n_fft  # d irfft / d (Re, Im) is c * rfft

    def _frames(self, x: np.ndarray) -> np.ndarray:
        """x (..., T) -> windowed frames (..., T / hop, n_fft)."""
        pad = [(0, 0)] * (x.ndim - 1) + [(self.pad, self.pad)]
        xp = np.pad(x, pad)
        return np.lib.stride_tricks.sliding_window_view(xp, self.n_fft, axis=-1)[..., :: self.hop, :] * self.win

    def _overlap_add(self, frames: np.ndarray) -> np.ndarray:
        """frames (..., L, n_fft) -> (..., L * hop) summed at their hops, the padding cropped."""
        *lead, n_frames, _ = frames.shape
        r = self.n_fft // self.hop
        out = np.zeros((*lead, (n_frames + r - 1) * self.hop), dtype=frames.dtype)
        parts = frames.reshape(*lead, n_frames, r, self.hop)
        for i in range(r):
            out[..., i * self.hop : (i + n_frames) * self.hop] += parts[..., i, :].reshape(*lead, n_frames * self.hop)
        return out[..., self.pad : self.pad + n_frames * self.hop]

    def _overlap(self, n_frames: int) -> np.ndarray:
        if n_frames not in self._overlaps:
            self._overlaps[n_frames] = self._overlap_add(np.broadcast_to(self.win**2, (n_frames, self.n_fft)))
        return self._overlaps[n_frames]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """x (..., T), T % hop == 0 -> complex spectrum (..., T / hop, bins)."""
        if x.shape[-1] % self.hop:
            raise ValueError(f"length {x.shape[-1]} is not a multiple of the hop {self.hop}")
        return np.fft.rfft(self._frames(x), axis=-1)

    def inverse(self, spec: np.ndarray) -> np.ndarray:
        """complex (..., L, bins) -> (..., L * hop); inverse(forward(x)) == x."""
        return self._overlap_add(np.fft.irfft(spec, n=self.n_fft, axis=-1) * self.win) / self._overlap(spec.shape[-2])

    def inverse_adjoint(self, g: np.ndarray) -> np.ndarray:
        """The gradient of <g, inverse(Y)> in (Re Y, Im Y), as a complex array (..., T / hop, bins)."""
        return np.fft.rfft(self._frames(g / self._overlap(g.shape[-1] // self.hop)), axis=-1) * self.c


@functools.lru_cache(maxsize=8)
def numpy_stft(n_fft: int, hop: int, dtype: type = np.float64) -> NumpySTFT:
    """One NumpySTFT per frame shape, shared by every block of every stream (its overlap cache too)."""
    return NumpySTFT(n_fft, hop, dtype)


def softmax(theta: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(theta - theta.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def initial_logits(x0: np.ndarray, stft: NumpySTFT, warm: float = 1.0, floor: float = 1e-3) -> np.ndarray:
    """x0 (B, N, T) -> theta (B, N, L, F): `warm` times the log of each source's share of the STFT magnitude
    (the warm start of every mask-space chain)."""
    share = np.abs(stft.forward(x0.astype(np.float64)))
    return warm * np.log(share / (share.sum(axis=1, keepdims=True) + 1e-12) + floor)


def mask_chain(x0: np.ndarray, mix: np.ndarray, scores: ScoresFn, sigmas: np.ndarray, lr: float, temperature: float,
               rng: np.random.Generator, stft: NumpySTFT, beta: float = 0.9, delta: float = 1e-8,
               floor: float = 1e-3, warm: float = 1.0, log_probs: LogProbsFn | None = None,
               relabel_every: int = 0, polish: int = 0) -> np.ndarray:
    """x0 (B, N, T) warm start, mix (B, T) -> refined (B, N, T) with mean over sources == mix.

    One step per entry of `sigmas` (the annealing levels, largest first); T % hop == 0. The start
    logits are `warm` times x0's: 0 starts every source at an equal share (a cold start). With
    `log_probs` and `relabel_every` k > 0, every k steps (and after the last) the sources' masks
    are permuted to the labelling the priors rate highest (`best_labelling`). The last `polish`
    steps run without noise: they climb to the nearest mode, so the result carries no chain noise."""
    b, n, t = x0.shape
    spec = stft.forward(mix.astype(np.float64))[:, None]  # (B, 1, L, F)
    theta = initial_logits(x0, stft, warm, floor)
    v = None
    relabel = log_probs is not None and relabel_every > 0
    for i, sigma in enumerate(sigmas):
        p = softmax(theta, axis=1)
        x = stft.inverse(n * p * spec).astype(np.float32)
        if relabel and i and i % relabel_every == 0:  # permute what this step has already computed
            take = permuter(best_labelling(x, log_probs, sigma))
            theta, p, x = take(theta), take(p), take(x)
            v = None if v is None else take(v)
        g_x = scores(x, np.full(b, sigma, dtype=np.float32)).astype(np.float64)
        g_y = stft.inverse_adjoint(g_x)  # d/d(Re, Im) of the masked spectra
        g_p = n * (g_y.real * spec.real + g_y.imag * spec.imag)
        g = p * (g_p - (p * g_p).sum(axis=1, keepdims=True))
        v = g * g if v is None else beta * v + (1 - beta) * g * g
        precond = 1.0 / (np.sqrt(v) + delta)
        theta = theta + lr * precond * g
        if temperature > 0 and i < len(sigmas) - polish:
            theta = theta + temperature * np.sqrt(2 * lr * precond) * rng.standard_normal(theta.shape)
    x = stft.inverse(n * softmax(theta, axis=1) * spec).astype(np.float32)
    if relabel and len(sigmas):
        x = permuter(best_labelling(x, log_probs, sigmas[-1]))(x)
    return x
