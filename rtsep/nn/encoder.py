"""Amortized posterior q_phi(s_k | m) for all sources: a small Conv-TasNet-style network.

A learned 16-sample basis, a dilated TCN that only normalises per frame (so a block's output
does not depend on how much audio the window holds), masks per source, and a per-sample
log-scale head. Masks are a softmax over sources times N, so the decoded means already sum to
about N * m; `project` then makes them mix to the mixture exactly (DESIGN.md §2, "Dirac").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .flow import unsqueeze


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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})

    @property
    def receptive_field(self) -> int:
        """Samples of context on each side that one output frame depends on."""
        return (2**self.blocks - 1) * self.repeats * self.stride + self.stride


class FrameNorm(nn.Module):
    """LayerNorm over channels at each frame: independent of the window's length."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class TCNBlock(nn.Module):
    def __init__(self, bottleneck: int, hidden: int, dilation: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(bottleneck, hidden, 1), nn.PReLU(), FrameNorm(hidden),
            nn.Conv1d(hidden, hidden, 3, dilation=dilation, padding=dilation, groups=hidden), nn.PReLU(),
            FrameNorm(hidden), nn.Conv1d(hidden, bottleneck, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


def project(means: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
    """Add the residual m - mean_k s_k to every source, so that mean_k s_k == m exactly."""
    return means + (mix - means.mean(dim=1, keepdim=True))


class Encoder(nn.Module):
    """m (B, 1, T) -> (mean, log_scale), each (B, N, T); T must be a multiple of `stride`."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        n, f, s = len(cfg.sources), cfg.filters, cfg.stride
        self.analysis = nn.Conv1d(1, f, 2 * s, stride=s, padding=s // 2, bias=False)
        self.front = nn.Sequential(FrameNorm(f), nn.Conv1d(f, cfg.bottleneck, 1))
        self.tcn = nn.Sequential(*[TCNBlock(cfg.bottleneck, cfg.hidden, 2**b)
                                   for _ in range(cfg.repeats) for b in range(cfg.blocks)])
        self.masks = nn.Conv1d(cfg.bottleneck, n * f, 1)
        self.log_scale = nn.Conv1d(cfg.bottleneck, n * s, 1)
        nn.init.constant_(self.log_scale.bias, -3.0)
        self.synthesis = nn.ConvTranspose1d(f, 1, 2 * s, stride=s, padding=s // 2, bias=False)

    def forward(self, mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, _, t = mix.shape
        n, f = len(self.cfg.sources), self.cfg.filters
        basis = torch.relu(self.analysis(mix))  # (B, F, T/s)
        h = self.tcn(self.front(basis))
        masks = torch.softmax(self.masks(h).reshape(b, n, f, -1), dim=1) * n
        means = self.synthesis((masks * basis[:, None]).reshape(b * n, f, -1)).reshape(b, n, t)
        if self.cfg.consistency:
            means = project(means, mix)
        raw = self.log_scale(h).reshape(b * n, self.cfg.stride, -1)
        log_scale = unsqueeze(raw, self.cfg.stride).reshape(b, n, t)
        log_scale = log_scale.clamp(self.cfg.log_scale_min, self.cfg.log_scale_max)
        return means, log_scale
