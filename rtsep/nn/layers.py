"""Layers shared by the encoders: a per-frame norm and the TCN's residual depthwise block."""

from __future__ import annotations

from torch import Tensor, nn


class FrameNorm(nn.Module):
    """LayerNorm over channels at each position of the last axis: a frame's output does not depend on
    how much audio the window holds (no statistics over time), so blocks stream like whole files."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2)


class DepthwiseBlock(nn.Module):
    """Residual pointwise -> depthwise (odd `kernel`, dilated) -> pointwise, as in Conv-TasNet's TCN."""

    def __init__(self, dim: int, hidden: int, kernel: int, dilation: int) -> None:
        super().__init__()
        pad = dilation * (kernel - 1) // 2
        self.net = nn.Sequential(
            nn.Conv1d(dim, hidden, 1), nn.PReLU(), FrameNorm(hidden),
            nn.Conv1d(hidden, hidden, kernel, dilation=dilation, padding=pad, groups=hidden), nn.PReLU(),
            FrameNorm(hidden), nn.Conv1d(hidden, dim, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.net(x)
