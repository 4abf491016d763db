"""Band-split mask network for the STFT encoder (`EncoderConfig.arch == "bandsplit"`).

The TCN encoder squeezes each frame's 513 log-magnitudes through one 1x1 convolution into a
128-channel bottleneck and predicts every bin's mask from it: a rank-128 view of the spectrum, which
plateaued near +7.5 dB SI-SDRi on bass, guitar and piano even on its own training songs (research log,
session 25). Band-split separators (BSRNN, Luo & Yu 2023) instead give each band of bins its own
features, then alternate modelling along time (within a band) and across bands (within a frame),
and map each band's features back to that band's bins. Here: narrow bands at the bottom (bass
harmonics), wide ones at the top; time blocks are the TCN's dilated depthwise blocks, band blocks
depthwise convolutions over the band axis, all channels-last on (batch, band, frame, features) so
that norms and pointwise layers are fused kernels and no op loops over bands; per-band projections
are grouped convolutions over bands padded to one width. Every op exports to plain ONNX.
Not shipped: at 4000 CPU steps it trailed the TCN by 1-1.5 dB on guitar and piano at twice the compute
(research log, session 26); kept, tested, for a longer run where a GPU is lent.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import FrameNorm


def split_edges(bins: int, bands: int, corner: float = 16.0, min_width: int = 2) -> list[int]:
    """Band edges over `bins` STFT bins: even steps of log(1 + bin / corner), so bands are about
    `corner` bins apart in width below the corner and grow in proportion above it; each >= min_width."""
    if not 1 <= bands <= bins // min_width:
        raise ValueError(f"cannot split {bins} bins into {bands} bands of >= {min_width} bins")
    top = math.log1p(bins / corner)
    edges = [0]
    for b in range(1, bands):
        e = round(corner * math.expm1(top * b / bands))
        edges.append(max(e, edges[-1] + min_width))
    edges.append(bins)
    for b in range(bands - 1, 0, -1):  # the rounding pushes up from below: pull back from the top
        edges[b] = min(edges[b], edges[b + 1] - min_width)
    return edges


class Depthwise(nn.Module):
    """Depthwise convolution along `axis` of a channels-last tensor (B, bands, frames, C), as shifted
    slices times per-channel taps: no layout change, exports as Pad / Slice / Mul."""

    def __init__(self, channels: int, kernel: int, dilation: int, axis: int) -> None:
        super().__init__()
        self.taps = nn.Parameter(torch.randn(kernel, channels) / kernel)
        self.bias = nn.Parameter(torch.zeros(channels))
        self.dilation, self.axis = dilation, axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, d, n = self.taps.shape[0], self.dilation, x.shape[self.axis]
        r = d * (k - 1) // 2
        pad = (0, 0, r, r) if self.axis == 2 else (0, 0, 0, 0, r, r)
        xp = nn.functional.pad(x, pad)
        out = self.bias
        for i in range(k):
            out = out + xp.narrow(self.axis, i * d, n) * self.taps[i]
        return out


class Block(nn.Module):
    """Residual Linear -> SiLU -> LayerNorm -> depthwise along time (dilated) or bands -> SiLU ->
    LayerNorm -> Linear, on channels-last (B, bands, frames, C): the TCN block, with norms per band
    and frame only (no statistics over time, so a frame does not depend on the window's length)."""

    def __init__(self, dim: int, hidden: int, kernel: int, dilation: int, axis: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.LayerNorm(hidden),
                                 Depthwise(hidden, kernel, dilation, axis), nn.SiLU(), nn.LayerNorm(hidden),
                                 nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class BandSplitNet(nn.Module):
    """log-magnitude (B, F, L) -> mask logits (B, N, F, L) and band-pooled features (B, dim, L)."""

    def __init__(self, bins: int, sources: int, bands: int, dim: int, hidden: int, blocks: int,
                 band_kernel: int = 5) -> None:
        super().__init__()
        self.edges = split_edges(bins, bands)
        widths = [b - a for a, b in zip(self.edges[:-1], self.edges[1:])]
        self.bands, self.width, self.sources, self.dim = bands, max(widths), sources, dim
        # padded layout: band i holds bins edges[i].. in its first widths[i] slots; the rest read bin `bins`,
        # a zero row appended to the input, and their head outputs are dropped by `unpad`
        pad = [lo + j if j < w else bins for lo, w in zip(self.edges[:-1], widths) for j in range(self.width)]
        unpad = [i * self.width + j for i, w in enumerate(widths) for j in range(w)]
        self.register_buffer("pad_index", torch.tensor(pad), persistent=False)
        self.register_buffer("unpad_index", torch.tensor(unpad), persistent=False)
        w = self.width
        self.norm = FrameNorm(bins)
        self.split = nn.Conv1d(bands * w, bands * dim, 1, groups=bands)
        self.blocks = nn.ModuleList()
        for b in range(blocks):
            self.blocks.append(Block(dim, hidden, 3, 2**b, axis=2))  # along time, within a band
            self.blocks.append(Block(dim, dim, band_kernel, 1, axis=1))  # across bands, within a frame
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 2 * dim), nn.SiLU())
        self.out = nn.Conv1d(bands * 2 * dim, bands * sources * w, 1, groups=bands)

    def forward(self, logmag: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t = logmag.shape
        nb, w, d, n = self.bands, self.width, self.dim, self.sources
        x = self.norm(logmag)  # over all bins per frame: keeps the bands' relative levels
        x = torch.cat([x, torch.zeros_like(x[:, :1])], dim=1)[:, self.pad_index]  # (B, nb*W, L)
        h = self.split(x).reshape(b, nb, d, t).transpose(2, 3)  # (B, nb, L, D)
        for block in self.blocks:
            h = block(h)
        g = self.head(h).transpose(2, 3).reshape(b, nb * 2 * d, t)
        logits = self.out(g).reshape(b, nb, n, w, t).transpose(1, 2).reshape(b, n, nb * w, t)
        return logits[:, :, self.unpad_index], h.mean(dim=1).transpose(1, 2)
