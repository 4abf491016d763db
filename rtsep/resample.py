"""A low-latency streaming polyphase resampler for the live path (numpy only).

soxr's streams (`rtsep.audio.StreamResampler`, what `rtsep file` uses) withhold output in internal
blocks: at 48 kHz its HQ pair added 70 ms to live's 64 ms algorithmic latency. This one emits every
output sample as soon as the input its filter needs has arrived: the filter is the one
`scipy.signal.resample_poly` designs (a Kaiser-windowed sinc, beta 5, 10 zero crossings per side
of the lower Nyquist), so its delay is half the filter, about 0.6 ms at 48 <-> 16 kHz and at 44.1 <-> 16 kHz.
Output samples are aligned with the input (the filter's delay is compensated, not added), and the
output of successive `process` calls concatenates to the one-shot result. Cost at live sizes (one
input channel down, four stems up): about RTF 0.013 at 48 kHz, 0.017 at 44.1 kHz, against soxr's 0.002.
"""

from __future__ import annotations

from math import gcd

import numpy as np

__all__ = ["PolyphaseResampler"]

HALF_ZEROS = 10
"""Zero crossings of the sinc on each side of its centre (resample_poly's half_len factor)."""
KAISER_BETA = 5.0
FEW_PHASES = 16
"""Up to this many polyphase filters, outputs are grouped by filter (a matrix product per filter)."""


def design(up: int, down: int) -> tuple[np.ndarray, int]:
    """(taps, half): the centred lowpass at the upsampled rate, gain `up`, cut-off at the lower Nyquist."""
    big = max(up, down)
    half = HALF_ZEROS * big
    n = np.arange(-half, half + 1, dtype=np.float64)
    h = np.sinc(n / big) * np.kaiser(2 * half + 1, KAISER_BETA)
    return h * (up / h.sum()), half


class PolyphaseResampler:
    """Chunked resampling from `sr_in` to `sr_out` of (channels, n) float32 audio, sample-exact streaming.

    `lookahead` is how many input samples past an output sample's position it needs before emitting it.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int) -> None:
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.sr_in, self.sr_out, self.channels = int(sr_in), int(sr_out), int(channels)
        g = gcd(self.sr_in, self.sr_out)
        self.up, self.down = self.sr_out // g, self.sr_in // g
        self._done = False
        self._fed = 0  # input samples received
        self._emitted = 0  # output samples returned
        if self.up == self.down:
            self.lookahead = 0
            return
        h, half = design(self.up, self.down)
        L = self.up
        # Output j sits at upsampled position j*down; with r = (j*down) % L and b = (j*down - r) // L it reads
        # input b + t for t in [t_lo, t_hi], weighted by h[half + r - t*L].
        self._t_lo, t_hi = -(half // L), (L - 1 + half) // L
        taps = t_hi - self._t_lo + 1
        r = np.arange(L)[:, None]
        k = half + r - (self._t_lo + np.arange(taps))[None, :] * L
        valid = (k >= 0) & (k < h.size)
        self._weights = np.where(valid, h[np.clip(k, 0, h.size - 1)], 0.0).astype(np.float32)  # (L, taps)
        self._taps = taps
        self.lookahead = t_hi
        self._buf = np.zeros((self.channels, 0), np.float32)
        self._buf_start = 0  # input index of self._buf[:, 0]

    def _ready(self, total_in: int, last: bool) -> int:
        """How many outputs can be emitted once `total_in` input samples are known (all of them if `last`)."""
        if last:
            return -(-total_in * self.up // self.down)  # ceil: the one-shot length
        # output j needs input index b_j + t_hi < total_in, with b_j = floor(j*down / up)
        limit = total_in - 1 - self.lookahead  # largest usable b_j
        if limit < 0:
            return 0
        return min((limit * self.up + self.up - 1) // self.down + 1, -(-total_in * self.up // self.down))

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample one (channels, n) chunk; returns (channels, m) float32. `last=True` flushes the tail."""
        if chunk.ndim != 2 or chunk.shape[0] != self.channels:
            raise ValueError(f"expected ({self.channels}, n) audio, got shape {chunk.shape}")
        if self._done:
            raise RuntimeError("PolyphaseResampler already flushed with last=True")
        self._done = last
        chunk = np.asarray(chunk, dtype=np.float32)
        self._fed += chunk.shape[1]
        if self.up == self.down:
            return np.ascontiguousarray(chunk)
        self._buf = np.concatenate([self._buf, chunk], axis=1)
        end = self._ready(self._fed, last)
        js = np.arange(self._emitted, end, dtype=np.int64)
        if js.size == 0:
            return np.zeros((self.channels, 0), np.float32)
        pos = js * self.down
        r = pos % self.up
        first = (pos - r) // self.up + self._t_lo - self._buf_start  # (J,) buffer index of each output's first tap
        lo_pad = max(0, -int(first.min()))  # inputs before the stream's start are zeros
        hi_pad = max(0, int(first.max()) + self._taps - self._buf.shape[1])  # and so are those after its end
        buf = np.pad(self._buf, ((0, 0), (lo_pad, hi_pad))) if lo_pad or hi_pad else self._buf
        buf = np.ascontiguousarray(buf, dtype=np.float32)
        # (C, n - taps + 1, taps) windows as a strided view (numpy's sliding_window_view costs 80 us a call)
        windows = np.ndarray((self.channels, buf.shape[1] - self._taps + 1, self._taps), np.float32, buffer=buf,
                             strides=(buf.strides[0], buf.strides[1], buf.strides[1]))
        start = first + lo_pad
        if self.up <= FEW_PHASES:  # 48 <-> 16 kHz: outputs j, j + up, ... share a filter, inputs `down` apart
            out = np.empty((self.channels, js.size), np.float32)
            for o in range(min(self.up, js.size)):
                count = len(range(o, js.size, self.up))
                s0 = int(start[o])
                inputs = windows[:, s0 : s0 + self.down * (count - 1) + 1 : self.down]
                out[:, o :: self.up] = inputs @ self._weights[r[o]]
        else:  # 16 -> 44.1 kHz: 441 filters, each output its own
            out = np.einsum("cjt,jt->cj", windows[:, start], self._weights[r])
        self._emitted = end
        # keep the input the next outputs still read: from the next output's first tap on
        nxt = end * self.down
        keep_from = (nxt - nxt % self.up) // self.up + self._t_lo
        drop = max(0, min(keep_from - self._buf_start, self._buf.shape[1]))
        self._buf, self._buf_start = self._buf[:, drop:], self._buf_start + drop
        return np.ascontiguousarray(out.astype(np.float32))
