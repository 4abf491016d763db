"""Full band: share what the model cannot hear (above its Nyquist) by what it heard just below.

A 16 kHz model sees nothing above 8 kHz of a 44.1 or 48 kHz input, so the mixture projection used to
give that band to every stem equally (a cymbal's top octave a quarter in the bass). Here the residual
of the projection, which at a higher input rate is that high band, goes to each source in proportion to
its stem's short-time high-frequency energy: cymbals and hats in the drums, a guitar's air in the
guitar. Shares sum to one at every sample, so the stems still sum to the input exactly.

Causal and streaming: a band-pass FIR picks the top of the model's band (5.6-7.4 kHz for a 16 kHz
model: from 4.4 kHz a drums-only high band landed 0.86-0.96 in the drums stem, from 5.6 kHz 0.92-0.97
over three songs), a causal moving average of its square over `window` seconds gives the energy; the
last samples of each stem are the only state, so any split of a stream gives the offline result up to float
rounding.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

EPS = 1e-10


class HighBandShare:
    """Shares of a residual (C, T) among N stems (N, C, T) by their energy in the top of the model's band."""

    def __init__(self, sample_rate: int, model_rate: int = 16000, window: float = 0.02, taps: int = 129,
                 sharpen: float = 2.0) -> None:
        self.width = max(1, round(window * sample_rate))
        self.sharpen = sharpen
        """Weights go as energy ** sharpen: the stem that holds most of the band's top likely holds its air."""
        nyq = model_rate / 2
        self.fir = bandpass(0.7 * nyq, 0.92 * nyq, sample_rate, taps)  # 5.6-7.4 kHz for a 16 kHz model
        self.keep = self.width + taps - 1
        self.tail: np.ndarray | None = None  # (N, C, keep) last stem samples, float64

    def __call__(self, stems: np.ndarray, residual: np.ndarray) -> np.ndarray:
        n, c, t = stems.shape
        if self.tail is None:
            self.tail = np.zeros((n, c, self.keep))
        x = np.concatenate([self.tail, stems.astype(np.float64)], axis=-1)  # (N, C, keep + T)
        self.tail = x[..., -self.keep:]
        band = np.stack([np.stack([np.convolve(row, self.fir, mode="valid") for row in ch]) for ch in x])
        energy = window_sum(band**2, self.width, t)
        # Energy 40 dB below the stems' whole-band energy counts as none (a loud bass leaks that much
        # through the filter): where no stem reaches it, the residual is split equally, as at the model rate.
        floor = 1e-4 * window_sum(x[..., -band.shape[-1]:] ** 2, self.width, t).sum(axis=0) / n
        energy = np.where(energy > floor, energy, 0.0) + EPS
        energy = energy**self.sharpen
        weights = energy / energy.sum(axis=0, keepdims=True)
        return (weights * residual[None]).astype(np.float32)


def window_sum(x: np.ndarray, width: int, t: int) -> np.ndarray:
    """Sums of `width` consecutive values of x (..., width + T) ending at each of its last T values."""
    power = np.concatenate([np.zeros(x.shape[:-1] + (1,)), np.cumsum(x, axis=-1)], axis=-1)
    return power[..., width + 1:] - power[..., 1 : t + 1]


def bandpass(low: float, high: float, sample_rate: int, taps: int) -> np.ndarray:
    """A Hann-windowed sinc band-pass FIR from `low` to `high` Hz."""
    k = np.arange(taps) - (taps - 1) / 2
    lp = lambda f: 2 * f / sample_rate * np.sinc(2 * f / sample_rate * k)  # noqa: E731
    return (lp(high) - lp(low)) * np.blackman(taps)


def equal_share(stems: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The model-rate projection: the residual split equally (DESIGN.md §2)."""
    return np.broadcast_to(residual[None] / stems.shape[0], stems.shape).astype(np.float32)


Share = Callable[[np.ndarray, np.ndarray], np.ndarray]


def residual_share(sample_rate: int, model_rate: int, learned: dict[str, np.ndarray] | None = None) -> Share:
    """How a stream at `sample_rate` shares the projection's residual (above the model's rate, the band it
    cannot hear): by the `learned` high-band network's weights where given, else by the stems' energy at the
    top of the model's band; equally at the model's rate."""
    if sample_rate <= model_rate:
        return equal_share
    if learned is not None:
        return LearnedHighBandShare(learned, sample_rate, model_rate)
    return HighBandShare(sample_rate, model_rate)


def project(stems: np.ndarray, mix: np.ndarray, share: Share = equal_share) -> np.ndarray:
    """Stems (N, C, T) made to sum to mix (C, T) exactly: the one mixture projection of the runtime."""
    stems = np.asarray(stems, dtype=np.float32)
    return (stems + share(stems, mix - stems.sum(axis=0))).astype(np.float32)


# --- the learned high band -----------------------------------------------------------------------

HIGHBAND_FILE = "highband.npz"
GUIDE_EDGES = (0.35, 0.55, 0.7, 0.92)
"""Guide bands of each stem, as fractions of the model's Nyquist (2.8-4.4, 4.4-5.6, 5.6-7.4 kHz at 16 kHz)."""
HIGH_EDGES = (1.0, 1.4, 2.0)
"""The residual's own bands from these multiples of the model's Nyquist to the input's (8-11.2, 11.2-16, 16+ kHz)."""


def frame_size(sample_rate: int) -> int:
    """About 23 ms of the input (1024 samples at 44.1 or 48 kHz), a power of two."""
    return int(2 ** round(np.log2(0.0232 * sample_rate)))


class HighBandFeatures:
    """Per-frame features of stems (N, C, F, n_fft) and residual (C, F, n_fft) frames: log band energies
    relative to the mixture's, so a gain on the input changes nothing."""

    def __init__(self, sample_rate: int, model_rate: int) -> None:
        self.n_fft = frame_size(sample_rate)
        self.window = np.hanning(self.n_fft + 2)[1:-1]
        f = np.fft.rfftfreq(self.n_fft, 1.0 / sample_rate)
        nyq = model_rate / 2
        g = [e * nyq for e in GUIDE_EDGES]
        h = [e * nyq for e in HIGH_EDGES] + [sample_rate / 2 + 1]
        self.guide = np.stack([(f >= a) & (f < b) for a, b in zip(g, g[1:])]).astype(np.float64)  # (G, bins)
        self.high = np.stack([(f >= a) & (f < b) for a, b in zip(h, h[1:])]).astype(np.float64)  # (H, bins)

    def count(self, n: int) -> int:
        return n * (len(self.guide) + 1) + len(self.high) + 1

    def __call__(self, stem_frames: np.ndarray, res_frames: np.ndarray) -> np.ndarray:
        """-> (C, F, features)."""
        spec = np.fft.rfft(np.concatenate([stem_frames, res_frames[None]]) * self.window, axis=-1)
        ps, pr = np.abs(spec[:-1]) ** 2, np.abs(spec[-1]) ** 2  # (N, C, F, bins), (C, F, bins)
        pm = np.abs(spec.sum(axis=0)) ** 2  # the mixture's: the transform is linear
        ref = pm.sum(axis=-1) + 1e-8 * self.n_fft  # (C, F): an absolute floor, so silence is not amplified
        rel = lambda e, r: np.log(e / r + 1e-6)  # noqa: E731  (-13.8: none of the mixture's energy)
        guide = rel(ps @ self.guide.T, ref[None, ..., None])  # (N, C, F, G)
        feats = [guide.transpose(1, 2, 0, 3).reshape(*ref.shape, -1),  # (C, F, N*G)
                 rel(ps.sum(axis=-1), ref[None]).transpose(1, 2, 0),  # (C, F, N): each stem's share of the mix
                 rel(pr @ self.high.T, ref[..., None]), rel(pr.sum(axis=-1), ref)[..., None]]
        return np.concatenate(feats, axis=-1).astype(np.float32)


def mlp_shares(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The high-band network: (…, features) -> softmax shares (…, N)."""
    h = (x - params["mean"]) / params["std"]
    i = 0
    while f"w{i + 1}" in params:
        h = np.tanh(h @ params[f"w{i}"] + params[f"b{i}"])
        i += 1
    z = h @ params[f"w{i}"] + params[f"b{i}"]
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


class LearnedHighBandShare:
    """Shares of the residual among the stems from a small network trained on rendered stems
    (`rtsep train highband`): it sees each stem's guide-band energies and the residual's own spectral
    shape (cymbals reach 16 kHz, a piano's air does not), where the rule above sees one guide band.

    Frames of `n_fft` samples end every hop samples of the stream (absolute positions); the weights
    ramp from frame j-1's to frame j's over the hop after frame j, so each sample's weight depends only
    on earlier samples and any split of a stream gives the offline result."""

    def __init__(self, params: dict[str, np.ndarray], sample_rate: int, model_rate: int) -> None:
        self.params = {k: np.asarray(v, dtype=np.float32) for k, v in params.items()}
        self.features = HighBandFeatures(sample_rate, model_rate)
        self.n_fft = self.features.n_fft
        self.hop = self.n_fft // 4
        self.pos = 0  # samples of the stream seen before this call
        self.tail: np.ndarray | None = None  # (N + 1, C, n_fft - 1) last stem and residual samples
        self.last: np.ndarray | None = None  # (2, C, N) weights of the last two frames (older first)

    def shares(self, stems: np.ndarray, residual: np.ndarray) -> np.ndarray:
        """The per-sample weights (N, C, T) for this piece of the stream."""
        n, c, t = stems.shape
        if self.tail is None:
            self.tail = np.zeros((n + 1, c, self.n_fft - 1))
            self.last = np.full((2, c, n), 1.0 / n)
        x = np.concatenate([self.tail, np.concatenate([stems, residual[None]]).astype(np.float64)], axis=-1)
        self.tail = x[..., -(self.n_fft - 1):] if self.n_fft > 1 else x[..., :0]
        last_j = (self.pos - self.hop) // self.hop  # the latest frame ending before this piece (-1: none)
        new_j = (self.pos + t - self.hop) // self.hop  # ... before the next piece
        table = self.last  # table[i] holds frame (last_j - 1 + i)'s weights
        if new_j > last_j:
            ends = np.arange(last_j + 1, new_j + 1) * self.hop + self.hop - 1 - self.pos  # in this piece
            # piece sample e is x[e + n_fft - 1]: the frame ending there starts at x[e]
            frames = np.lib.stride_tricks.sliding_window_view(x, self.n_fft, axis=-1)[..., ends, :]
            w = mlp_shares(self.params, self.features(frames[:n], frames[n])).transpose(1, 0, 2)  # (F, C, N)
            table = np.concatenate([self.last, w])
            self.last = table[-2:]
        tt = self.pos + np.arange(t)
        k = (tt - self.hop) // self.hop  # the latest frame ending before each sample
        frac = ((tt - k * self.hop - self.hop + 1) / self.hop)[:, None, None]
        i = k - last_j + 1
        self.pos += t
        w = table[i - 1] + frac * (table[i] - table[i - 1])  # (T, C, N)
        return w.transpose(2, 1, 0)

    def __call__(self, stems: np.ndarray, residual: np.ndarray) -> np.ndarray:
        return (self.shares(stems, residual) * residual[None]).astype(np.float32)
