"""Amortized posterior q_phi(s_k | m) for all sources: a small Conv-TasNet-style network.

A front end (a learned 16-sample basis, or a fixed sqrt-Hann STFT), a dilated TCN that only
normalises per frame (so a block's output does not depend on how much audio the window holds),
masks per source, and a per-sample log-scale head. Masks are a softmax over sources times N, so
the decoded means already sum to about N * m; `project` then makes them mix to the mixture
exactly (DESIGN.md §2, "Dirac").

Why two front ends: a learned, overcomplete basis lets masks synthesise content the mixture
does not hold (estimates that cancel in the sum). Supervised training never asks for that, but
the seed objective rewards any estimate its prior likes, and session-2 encoders found such
invented, cancelling sources. Ratio masks on a tight STFT frame can only share out the mixture's
time-frequency content, so the unsupervised objective has to choose an allocation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .bandsplit import BandSplitNet
from .flow import unsqueeze
from .layers import DepthwiseBlock, FrameNorm


@dataclass
class EncoderConfig:
    sources: list[str]
    sample_rate: int = 16000
    filters: int = 128
    stride: int = 16
    bottleneck: int = 64
    hidden: int = 128
    blocks: int = 8
    repeats: int = 1
    log_scale_min: float = -9.0
    log_scale_max: float = 0.0
    consistency: bool = True
    front: str = "learned"
    """"learned" (Conv-TasNet basis, 2*stride taps) or "stft" (sqrt-Hann DFT, n_fft taps, hop = stride)."""
    n_fft: int = 1024
    arch: str = "tcn"
    """STFT front only: "tcn" (one bottleneck of all bins per frame) or "bandsplit" (`rtsep.nn.bandsplit`:
    `split_bands` bands of `bottleneck` features each, `blocks` time and band blocks)."""
    split_bands: int = 24

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def receptive_field(self) -> int:
        """Samples of context on each side that one output frame depends on."""
        taps = self.n_fft if self.front == "stft" else 2 * self.stride
        return (2**self.blocks - 1) * self.repeats * self.stride + taps // 2


def project(means: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Add the residual m - mean_k s_k to every source, so that mean_k s_k == m exactly."""
    return means + (mix - means.mean(dim=1, keepdim=True))


class STFT(nn.Module):
    """Real STFT and its overlap-add inverse as fixed (de)convolutions: exports to ONNX as plain
    Conv / ConvTranspose and streams like the learned basis. sqrt-Hann analysis and synthesis
    windows; the inverse divides by the frames' window-square sum, so reconstruction is exact up
    to the window's edges too."""

    def __init__(self, n_fft: int, hop: int) -> None:
        super().__init__()
        if n_fft % (2 * hop):
            raise ValueError(f"stft front end: hop {hop} must divide n_fft / 2 = {n_fft // 2}")
        self.hop, self.pad, self.bins = hop, (n_fft - hop) // 2, n_fft // 2 + 1
        n = torch.arange(n_fft, dtype=torch.float64)
        f = torch.arange(self.bins, dtype=torch.float64)
        win = torch.hann_window(n_fft, periodic=True, dtype=torch.float64).sqrt()
        ang = 2 * torch.pi * f[:, None] * n[None, :] / n_fft
        cos, sin = torch.cos(ang) * win, torch.sin(ang) * win
        c = torch.full((self.bins, 1), 2.0, dtype=torch.float64)
        c[0] = c[-1] = 1.0
        scale = c / n_fft  # inverse real DFT
        self.register_buffer("analysis", torch.cat([cos, -sin])[:, None].float(), persistent=False)
        self.register_buffer("synthesis", torch.cat([cos * scale, -sin * scale])[:, None].float(), persistent=False)
        self.register_buffer("window_sq", (win**2)[None, None].float(), persistent=False)
        self.register_buffer("window", win.float(), persistent=False)
        self.n_fft = n_fft
        self.fft = False
        """FFT instead of the dense (de)convolutions: the same transform, ~20x cheaper to train; the
        convolutions stay the default because they export to plain ONNX Conv / ConvTranspose."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T) -> (B, 2 * bins, T / hop): real parts, then imaginary parts."""
        if self.fft:
            frames = nn.functional.pad(x[:, 0], (self.pad, self.pad)).unfold(-1, self.n_fft, self.hop)
            spec = torch.fft.rfft(frames * self.window, dim=-1).transpose(1, 2)  # (B, bins, frames)
            return torch.cat([spec.real, spec.imag], dim=1)
        return nn.functional.conv1d(x, self.analysis, stride=self.hop, padding=self.pad)

    def magnitude(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 2 * bins, frames) -> (B, bins, frames)."""
        re, im = spec[:, : self.bins], spec[:, self.bins :]
        return torch.sqrt(re * re + im * im + 1e-12)

    def apply_masks(self, spec: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
        """Mixture spectrum (B, 2 * bins, frames) and masks (B, N, bins, frames) -> signals (B, N, T)."""
        b, n = masks.shape[:2]
        masked = (masks[:, :, None] * spec.reshape(b, 1, 2, self.bins, -1)).reshape(b * n, 2 * self.bins, -1)
        return self.inverse(masked).reshape(b, n, -1)

    def inverse(self, spec: torch.Tensor) -> torch.Tensor:
        """(B, 2 * bins, frames) -> (B, 1, frames * hop)."""
        frames = torch.ones_like(spec[:1, :1])
        overlap = nn.functional.conv_transpose1d(frames, self.window_sq, stride=self.hop, padding=self.pad)
        if self.fft:
            b, _, n = spec.shape
            cplx = torch.complex(spec[:, : self.bins], spec[:, self.bins :]).transpose(1, 2)
            seg = torch.fft.irfft(cplx, n=self.n_fft, dim=-1) * self.window  # (B, frames, n_fft)
            size = (n - 1) * self.hop + self.n_fft
            y = nn.functional.fold(seg.transpose(1, 2), (1, size), (1, self.n_fft), stride=(1, self.hop))
            return y.reshape(b, 1, size)[..., self.pad : size - self.pad] / overlap
        return nn.functional.conv_transpose1d(spec, self.synthesis, stride=self.hop, padding=self.pad) / overlap


class Encoder(nn.Module):
    """m (B, 1, T) -> (mean, log_scale), each (B, N, T); T must be a multiple of `stride`."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, f, s = len(cfg.sources), cfg.filters, cfg.stride
        if cfg.front not in ("learned", "stft"):
            raise ValueError(f"unknown encoder front end {cfg.front!r} (learned or stft)")
        if cfg.arch not in ("tcn", "bandsplit") or (cfg.arch == "bandsplit" and cfg.front != "stft"):
            raise ValueError(f"unknown encoder arch {cfg.arch!r} for the {cfg.front} front end")
        if cfg.front == "stft":
            self.stft = STFT(cfg.n_fft, s)
            f = self.stft.bins
        else:
            self.analysis = nn.Conv1d(1, f, 2 * s, stride=s, padding=s // 2, bias=False)
            self.synthesis = nn.ConvTranspose1d(f, 1, 2 * s, stride=s, padding=s // 2, bias=False)
        if cfg.arch == "bandsplit":
            self.bandsplit = BandSplitNet(f, n, cfg.split_bands, cfg.bottleneck, cfg.hidden, cfg.blocks)
        else:
            self.front = nn.Sequential(FrameNorm(f), nn.Conv1d(f, cfg.bottleneck, 1))
            self.tcn = nn.Sequential(*[DepthwiseBlock(cfg.bottleneck, cfg.hidden, 3, 2**b)
                                       for _ in range(cfg.repeats) for b in range(cfg.blocks)])
            self.masks = nn.Conv1d(cfg.bottleneck, n * f, 1)  # f: basis filters or STFT bins
        self.log_scale = nn.Conv1d(cfg.bottleneck, n * s, 1)
        nn.init.constant_(self.log_scale.bias, -3.0)

    def spectral(self, spec: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """STFT front: the network between the transforms, spec (B, 2F, L) (real parts, then imaginary)
        -> mask logits (B, N, F, L), log-scale (B, N, L * stride). What the ONNX graph holds: the
        runtime does the (i)STFT with an FFT, ~2.5x cheaper than the transforms as dense convolutions."""
        b, n = spec.shape[0], len(self.cfg.sources)
        if self.cfg.arch == "bandsplit":
            logits, h = self.bandsplit(torch.log(self.stft.magnitude(spec) + 1e-4))
            return logits, self._log_scale(h, b, spec.shape[-1] * self.cfg.stride)
        h = self.tcn(self.front(torch.log(self.stft.magnitude(spec) + 1e-4)))
        logits = self.masks(h).reshape(b, n, self.stft.bins, -1)
        return logits, self._log_scale(h, b, spec.shape[-1] * self.cfg.stride)

    def _log_scale(self, h: torch.Tensor, b: int, t: int) -> torch.Tensor:
        n = len(self.cfg.sources)
        raw = self.log_scale(h).reshape(b * n, self.cfg.stride, -1)
        log_scale = unsqueeze(raw, self.cfg.stride).reshape(b, n, t)
        return log_scale.clamp(self.cfg.log_scale_min, self.cfg.log_scale_max)

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t = mix.shape
        n = len(self.cfg.sources)
        if self.cfg.front == "stft":
            spec = self.stft(mix)  # (B, 2F, T/s)
            logits, log_scale = self.spectral(spec)
            means = self.stft.apply_masks(spec, torch.softmax(logits, dim=1) * n)
            return (project(means, mix) if self.cfg.consistency else means), log_scale
        else:
            f = self.cfg.filters
            basis = torch.relu(self.analysis(mix))  # (B, F, T/s)
            h = self.tcn(self.front(basis))
            masks = torch.softmax(self.masks(h).reshape(b, n, f, -1), dim=1) * n
            means = self.synthesis((masks * basis[:, None]).reshape(b * n, f, -1)).reshape(b, n, t)
        if self.cfg.consistency:
            means = project(means, mix)
        return means, self._log_scale(h, b, t)
