"""Noise-conditioned FloWaveNet-style flow prior p_sigma(s) over raw audio.

Squeeze time early (16 samples -> 16 channels) so the couplings run at sample_rate/16: that is
what keeps a prior cheap enough for a few Langevin steps per block on a CPU (DESIGN.md §4).
Each coupling's WaveNet sees log(sigma) as an extra channel, so one network models the source
convolved with Gaussian noise of any level the annealed sampler visits.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)
MIXINGS = ("flip", "lu")


@dataclass
class PriorConfig:
    """Architecture and noise range of one prior; stored as JSON beside its weights."""

    source: str
    sample_rate: int = 16000
    squeeze: int = 16
    n_flows: int = 6
    hidden: int = 32
    layers: int = 4
    kernel: int = 3
    log_scale_clamp: float = 3.0
    mixing: str = "flip"
    """Channel mixing between couplings: `flip` (reverse the channels, the first priors) or `lu`
    (a learned invertible 1x1 convolution, Glow's LU form). With `flip` a coupling can only ever
    predict one fixed half of each squeezed frame from the other half."""
    sigma_min: float = 0.005
    sigma_max: float = 0.5
    sigmas: list[float] = field(default_factory=lambda: [0.1, 0.05, 0.02, 0.01])
    level: float = 0.0
    """Reference RMS, the median of the training excerpts (measured by `rtsep train prior`). When > 0
    the separator scores an estimate's shape at this level, not its loudness: see `shape_log_prob_sum`."""
    level_spread: float = 0.5
    """Std of the training excerpts' log RMS: the width of the level prior in `shape_log_prob_sum`."""
    level_weight: float = 0.1
    """Weight per sample of the level prior against the shape's log-density. On held-out music4
    mixtures 0 lets loud cancelling estimates win, 1 lets copies of the mixture win; 0.1 ranks the
    true sources first (README, "Energy bias")."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PriorConfig":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def squeeze(x: torch.Tensor, q: int) -> torch.Tensor:
    """(B, 1, T) -> (B, q, T/q): sample i*q+j goes to channel j, step i."""
    b, c, t = x.shape
    return x.reshape(b, c, t // q, q).permute(0, 1, 3, 2).reshape(b, c * q, t // q)


def unsqueeze(z: torch.Tensor, q: int) -> torch.Tensor:
    """Inverse of `squeeze`."""
    b, cq, n = z.shape
    return z.reshape(b, cq // q, q, n).permute(0, 1, 3, 2).reshape(b, cq // q, n * q)


class ActNorm(nn.Module):
    """Per-channel affine with data-dependent init; the init flag is a buffer so it round-trips."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.loc = nn.Parameter(torch.zeros(1, channels, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, channels, 1))
        self.register_buffer("initialized", torch.tensor(0, dtype=torch.uint8))

    @torch.no_grad()
    def _init(self, x: torch.Tensor) -> None:
        mean = x.mean(dim=(0, 2), keepdim=True)
        std = x.std(dim=(0, 2), keepdim=True)
        self.loc.copy_(-mean)
        self.log_scale.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and not bool(self.initialized):
            self._init(x)
        y = (x + self.loc) * torch.exp(self.log_scale)
        logdet = self.log_scale.sum() * x.shape[2]
        return y, logdet.expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return y * torch.exp(-self.log_scale) - self.loc


class InvConv1x1(nn.Module):
    """Learned channel mixing W = P L (U + diag(sign * exp(log_s))) (Glow, LU form).

    log|det W| = sum(log_s) needs no determinant op, so the score graph exports to ONNX as a plain
    1x1 convolution; P is a fixed permutation from a random orthogonal init."""

    def __init__(self, channels: int, seed: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        w = torch.linalg.qr(torch.randn(channels, channels, generator=g))[0]
        p, lower, upper = torch.linalg.lu(w)
        diag = torch.diagonal(upper)
        self.register_buffer("perm", p)
        self.register_buffer("sign", torch.sign(diag))
        self.register_buffer("lmask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower * self.lmask)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(diag.abs()))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.perm.shape[0], dtype=self.perm.dtype, device=self.perm.device)
        lower = self.lower * self.lmask + eye
        upper = self.upper * self.lmask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return self.perm @ lower @ upper

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = F.conv1d(x, self.weight().unsqueeze(-1))
        return y, (self.log_s.sum() * x.shape[2]).expand(x.shape[0])

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        return F.conv1d(y, torch.linalg.inv(self.weight()).unsqueeze(-1))


class WaveNet(nn.Module):
    """Non-causal gated dilated conv stack; the last layer starts at zero so a coupling starts as identity."""

    def __init__(self, c_in: int, c_out: int, hidden: int, layers: int, kernel: int) -> None:
        super().__init__()
        self.start = nn.Conv1d(c_in, hidden, 1)
        self.dilated = nn.ModuleList()
        self.res = nn.ModuleList()
        for i in range(layers):
            d = 2**i
            self.dilated.append(nn.Conv1d(hidden, 2 * hidden, kernel, dilation=d, padding=d * (kernel - 1) // 2))
            self.res.append(nn.Conv1d(hidden, hidden, 1))
        self.end = nn.Conv1d(hidden, c_out, 1)
        nn.init.zeros_(self.end.weight)
        nn.init.zeros_(self.end.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.start(x)
        skip = torch.zeros_like(h)
        for conv, res in zip(self.dilated, self.res):
            a, b = conv(h).chunk(2, dim=1)
            g = torch.tanh(a) * torch.sigmoid(b)
            h = h + res(g)
            skip = skip + g
        return self.end(F.relu(skip))


class AffineCoupling(nn.Module):
    """x_b <- x_b * exp(log_s(x_a, sigma)) + t(x_a, sigma); log|det| = sum log_s."""

    def __init__(self, channels: int, cfg: PriorConfig) -> None:
        super().__init__()
        self.half = channels // 2
        self.clamp = cfg.log_scale_clamp
        self.net = WaveNet(self.half + 1, 2 * (channels - self.half), cfg.hidden, cfg.layers, cfg.kernel)

    def _params(self, xa: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_s, t = self.net(torch.cat([xa, cond], dim=1)).chunk(2, dim=1)
        log_s = self.clamp * torch.tanh(raw_s / self.clamp)
        return log_s, t

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xa, xb = x[:, : self.half], x[:, self.half :]
        log_s, t = self._params(xa, cond)
        yb = xb * torch.exp(log_s) + t
        return torch.cat([xa, yb], dim=1), log_s.sum(dim=(1, 2))

    def inverse(self, y: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        ya, yb = y[:, : self.half], y[:, self.half :]
        log_s, t = self._params(ya, cond)
        return torch.cat([ya, (yb - t) * torch.exp(-log_s)], dim=1)


class FlowPrior(nn.Module):
    """log p_sigma(x) for x = s + sigma * noise, x shaped (batch, 1, samples), samples % squeeze == 0."""

    def __init__(self, cfg: PriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.squeeze
        self.norms = nn.ModuleList([ActNorm(c) for _ in range(cfg.n_flows)])
        self.couplings = nn.ModuleList([AffineCoupling(c, cfg) for _ in range(cfg.n_flows)])
        if cfg.mixing not in MIXINGS:
            raise ValueError(f"unknown prior mixing {cfg.mixing!r} ({' or '.join(MIXINGS)})")
        self.mixers = nn.ModuleList([InvConv1x1(c, seed=i) for i in range(cfg.n_flows)]) if cfg.mixing == "lu" else None

    def _cond(self, sigma: torch.Tensor | float, z: torch.Tensor) -> torch.Tensor:
        sigma_t = torch.as_tensor(sigma, dtype=z.dtype, device=z.device).reshape(-1, 1, 1)
        return torch.log(sigma_t).expand(z.shape[0], 1, z.shape[2])

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (z, logdet) with z shaped (B, squeeze, T/squeeze) and logdet (B,)."""
        z = squeeze(x, self.cfg.squeeze)
        cond = self._cond(sigma, z)
        logdet = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for i, (norm, coupling) in enumerate(zip(self.norms, self.couplings)):
            z, ld = norm(z)
            logdet = logdet + ld
            if self.mixers is not None:
                z, ld = self.mixers[i](z)
                logdet = logdet + ld
            z, ld = coupling(z, cond)
            logdet = logdet + ld
            if self.mixers is None:
                z = z.flip(1)
        return z, logdet

    def inverse(self, z: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        cond = self._cond(sigma, z)
        for i in reversed(range(len(self.couplings))):
            if self.mixers is None:
                z = z.flip(1)
            z = self.couplings[i].inverse(z, cond)
            if self.mixers is not None:
                z = self.mixers[i].inverse(z)
            z = self.norms[i].inverse(z)
        return unsqueeze(z, self.cfg.squeeze)

    def log_prob_sum(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Total log-density (nats) of each item, shape (B,); its gradient in x is the score."""
        z, logdet = self(x, sigma)
        return (-0.5 * (z**2 + LOG_2PI)).sum(dim=(1, 2)) + logdet

    def log_prob(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """Mean log-density per sample (nats/sample), shape (B,): comparable across lengths."""
        return self.log_prob_sum(x, sigma) / x.shape[-1]

    def shape_log_prob_sum(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """log p_sigma of each item rescaled to the training level `cfg.level` (raw when level is 0), (B,).

        What the separator optimises. A flow's mode sits near silence (x = 0 maps near z = 0), so
        summed raw log-densities reward an estimate that hands its energy to another source: on
        held-out music4 mixtures, all signal in one source and silence elsewhere beat the true
        sources. Rescaled, a (noisy) silent estimate is loud white noise, which no prior likes, and
        the true sources win by a wide margin (README, "Energy bias"). Shape alone would let an
        estimate take any loudness (loud estimates that cancel in the mixture, faint invented
        ones), so the rescaling's Jacobian is replaced by a log-normal level prior fitted to the
        source's own excerpts (`level`, `level_spread`), counted per sample with `cfg.level_weight`.
        """
        if not self.cfg.level:
            return self.log_prob_sum(x, sigma)
        rms = torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-12)
        z = torch.log(rms[:, 0, 0] / self.cfg.level) / self.cfg.level_spread
        return self.log_prob_sum(x * (self.cfg.level / rms), sigma) - self.cfg.level_weight * x.shape[-1] * 0.5 * z**2

    def score(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """grad_x of `shape_log_prob_sum`, same shape as x; weights stay untouched."""
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.shape_log_prob_sum(x, sigma).sum(), x)
        return g

    @property
    def receptive_field(self) -> int:
        """Samples of context one output frame depends on, per side."""
        per = sum(2**i for i in range(self.cfg.layers)) * (self.cfg.kernel - 1) // 2
        return per * self.cfg.n_flows * self.cfg.squeeze
