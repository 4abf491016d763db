"""Time-frequency flow priors: one per source, over the log band energies of the encoder's STFT frames.

A raw 16 kHz waveform flow spends its capacity on phase and sample-level detail that does not tell a
bass from a piano (README, issue 25). This prior sees what differs between sources: each frame's
spectral envelope and low partials, and how it follows the frames before it.

Features. The encoder's sqrt-Hann STFT (n_fft 1024, hop 256 at 16 kHz: 513 bins, 62.5 frames/s).
Its power is pooled into D bands (`band_index`: the lowest `linear_bins` bins one each, where bass
partials are resolved, then log-spaced groups up to Nyquist), f = log(mean power in the band + floor),
standardised per band with the training data's mean and spread: u = (f - mean) / std.

Density. Autoregressive over frames, exact:

    log p(u_1..L) = sum_t log p(u_t | u_{t-1..t-C}, sigma)

each conditional an affine-coupling flow over D dims (fixed random split per layer, MLP conditioners
fed the half, an embedding of the C previous frames and log sigma). Noise-conditioned in feature
space: the prior at level sigma is the density of u + sigma * eps (the same eps through the context
frames), so a Langevin chain can anneal over it. Levels are in standardised log-power units.

The mask chain climbs it through the softmax masks (`mask_log_prob`): the estimate of source k in a
frame is n * softmax_k(theta) * M (M the mixture's STFT), its power n^2 p_k^2 |M|^2, so the chain
never needs an inverse STFT between steps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class TFPriorConfig:
    sample_rate: int = 16000
    n_fft: int = 1024
    hop: int = 256
    linear_bins: int = 24
    bands: int = 80
    context: int = 3
    hidden: int = 128
    embed: int = 64
    layers: int = 6
    sigma_min: float = 0.02
    sigma_max: float = 1.0
    floor: float = 1e-4
    """Added to each band's mean bin power inside the log: what a silent band reads as."""
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TFPriorConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def band_index(n_fft: int, linear_bins: int, bands: int) -> np.ndarray:
    """Band of each of the n_fft/2 + 1 bins: bins below `linear_bins` one band each, the rest in
    `bands - linear_bins` groups log-spaced in frequency, every group at least one bin wide."""
    f = n_fft // 2 + 1
    groups = bands - linear_bins
    if not 0 < linear_bins < f or groups < 1 or groups > f - linear_bins:
        raise ValueError(f"bands {bands} with {linear_bins} linear bins do not fit {f} bins")
    edges = [linear_bins]
    geo = np.geomspace(linear_bins, f, groups + 1)
    for i in range(1, groups):
        edges.append(max(edges[-1] + 1, min(int(round(geo[i])), f - (groups - i))))
    edges.append(f)
    index = np.empty(f, dtype=np.int64)
    index[:linear_bins] = np.arange(linear_bins)
    for g in range(groups):
        index[edges[g] : edges[g + 1]] = linear_bins + g
    return index


def stft_power(x: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """x (B, T), T % hop == 0 -> |STFT|^2 (B, T / hop, bins) in the encoder's frame (sqrt-Hann,
    centred by (n_fft - hop) / 2 of zero padding: `rtsep.nn.encoder.STFT`)."""
    pad = (n_fft - hop) // 2
    frames = nn.functional.pad(x, (pad, pad)).unfold(-1, n_fft, hop)
    win = torch.hann_window(n_fft, periodic=True, dtype=x.dtype).sqrt()
    spec = torch.fft.rfft(frames * win, dim=-1)
    return spec.real**2 + spec.imag**2


class Coupling(nn.Module):
    """y = [x_a, x_b * exp(s) + t], (s, t) = MLP(x_a, c); a and b a fixed random split of the D dims
    (the output order is the next layer's input order: the splits compound into a random mixing)."""

    def __init__(self, dims: int, embed: int, hidden: int, perm: torch.Tensor) -> None:
        super().__init__()
        half = dims // 2
        self.register_buffer("idx_a", perm[:half].clone())
        self.register_buffer("idx_b", perm[half:].clone())
        eye = torch.eye(dims)
        # the split as one matmul by a permutation (a gather's backward is a scatter: slow in ONNX Runtime)
        self.register_buffer("split", torch.cat([eye[:, perm[:half]], eye[:, perm[half:]]], dim=1), persistent=False)
        self.half = half
        nb = dims - half
        self.net = nn.Sequential(nn.Linear(half + embed, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 2 * nb))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x (..., D), c (..., E) -> (y (..., D), log-det (...))."""
        xs = x @ self.split
        xa, xb = xs[..., : self.half], xs[..., self.half :]
        s, t = self.net(torch.cat([xa, c], dim=-1)).chunk(2, dim=-1)
        s = 2.0 * torch.tanh(s / 2.0)
        return torch.cat([xa, xb * torch.exp(s) + t], dim=-1), s.sum(dim=-1)


class TFPrior(nn.Module):
    """p_sigma(u_t | u_<t) per frame; `log_prob_power` from STFT power, `log_prob` from standardised features."""

    def __init__(self, cfg: TFPriorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        index = band_index(cfg.n_fft, cfg.linear_bins, cfg.bands)
        d = cfg.bands
        pool = torch.zeros(d, len(index))
        pool[torch.from_numpy(index), torch.arange(len(index))] = 1.0
        pool = pool / pool.sum(dim=1, keepdim=True)  # mean power in each band
        self.register_buffer("pool", pool, persistent=False)
        self.register_buffer("mean", torch.zeros(d))
        self.register_buffer("std", torch.ones(d))
        self.context = nn.Sequential(nn.Linear(cfg.context * d + 1, cfg.hidden), nn.GELU(),
                                     nn.Linear(cfg.hidden, cfg.embed))
        gen = torch.Generator().manual_seed(cfg.seed)
        self.layers = nn.ModuleList(Coupling(d, cfg.embed, cfg.hidden, torch.randperm(d, generator=gen))
                                    for _ in range(cfg.layers))

    def set_standardisation(self, features: torch.Tensor) -> None:
        """Per-band mean and spread of log band energies (N, D) from the training data."""
        self.mean.copy_(features.mean(dim=0))
        self.std.copy_(features.std(dim=0).clamp_min(0.1))

    def features(self, power: torch.Tensor) -> torch.Tensor:
        """power (B, L, bins) -> standardised log band energies u (B, L, D)."""
        bands = torch.einsum("df,blf->bld", self.pool, power)
        return (torch.log(bands + self.cfg.floor) - self.mean) / self.std

    def transform(self, u: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """u (B, L, D) at level sigma (B,) -> (z (B, L, D), log|det dz_t/du_t| (B, L)): frame t's flow,
        conditioned on the C frames before it (zeros, the mean frame, before the start)."""
        d, c = u.shape[-1], self.cfg.context
        ctx = torch.cat([nn.functional.pad(u, (0, 0, j + 1, 0))[:, : -(j + 1)] for j in range(c)], dim=-1)
        log_sigma = torch.log(sigma)[:, None, None] * torch.ones_like(u[..., :1])
        rows = torch.cat([u, ctx, log_sigma], dim=-1)
        flat = rows.reshape(-1, rows.shape[-1])  # (B * L, .): 2-D matmuls keep B and L free when traced
        h = self.context(flat[:, d:])
        z, logdet = flat[:, :d], torch.zeros_like(flat[:, 0])
        for layer in self.layers:
            z, ld = layer(z, h)
            logdet = logdet + ld
        return z.reshape(u.shape), logdet.reshape(u.shape[:-1])

    def log_prob(self, u: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """u (B, L, D) (noisy at level sigma (B,)) -> log p per frame (B, L), nats, as a density over
        the log band energies f (so the standardisation's Jacobian is counted)."""
        z, logdet = self.transform(u, sigma)
        log_normal = -0.5 * (z**2).sum(dim=-1) - 0.5 * u.shape[-1] * math.log(2 * math.pi)
        return log_normal + logdet - torch.log(self.std).sum()

    def log_prob_power(self, power: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """power (B, L, bins), sigma (B,) -> log p per frame (B, L)."""
        return self.log_prob(self.features(power), sigma)


def mask_log_prob(priors: list[TFPrior], theta: torch.Tensor, mix_power: torch.Tensor, sigma: torch.Tensor,
                  weight: torch.Tensor) -> torch.Tensor:
    """theta (B, N, L, bins) mask logits, mix_power |M|^2 (B, L, bins), sigma (B,), weight (N,) ->
    weight_k * sum_t log p_k(frame t of n * softmax_k(theta) * M), (B, N): what the chain climbs."""
    n = theta.shape[1]
    p = torch.softmax(theta, dim=1)
    power = (n * p) ** 2 * mix_power[:, None]
    return torch.stack([weight[k] * pr.log_prob_power(power[:, k], sigma).sum(dim=-1)
                        for k, pr in enumerate(priors)], dim=1)


class StackedTFPriors(nn.Module):
    """N TF priors of one architecture evaluated together: their weights stacked on a source axis and every
    layer one batched matmul, so the traced gradient graph has a quarter of the nodes of N separate priors
    (ONNX Runtime's per-node cost dominates the live chain's small blocks). Same numbers as `mask_log_prob`."""

    def __init__(self, priors: list[TFPrior]) -> None:
        super().__init__()
        cfg = priors[0].cfg
        shape = {k: v for k, v in cfg.to_dict().items() if k != "seed"}
        if any({k: v for k, v in p.cfg.to_dict().items() if k != "seed"} != shape for p in priors):
            raise ValueError("stacked TF priors need one architecture")
        self.cfg, self.n = cfg, len(priors)
        stack = lambda get: torch.stack([get(p).detach() for p in priors])  # noqa: E731
        self.register_buffer("pool", priors[0].pool.clone())
        self.register_buffer("mean", stack(lambda p: p.mean))
        self.register_buffer("log_std", stack(lambda p: torch.log(p.std)))
        ctx = [stack(lambda p, i=i: p.context[i].weight.T) for i in (0, 2)]
        ctx_b = [stack(lambda p, i=i: p.context[i].bias) for i in (0, 2)]
        for i, (w, b) in enumerate(zip(ctx, ctx_b)):
            self.register_buffer(f"ctx_w{i}", w)
            self.register_buffer(f"ctx_b{i}", b[:, None])
        self.half = priors[0].layers[0].half
        for j in range(cfg.layers):
            self.register_buffer(f"split{j}", stack(lambda p, j=j: p.layers[j].split))
            for i in (0, 2, 4):
                self.register_buffer(f"w{j}_{i}", stack(lambda p, j=j, i=i: p.layers[j].net[i].weight.T))
                self.register_buffer(f"b{j}_{i}", stack(lambda p, j=j, i=i: p.layers[j].net[i].bias)[:, None])

    def forward(self, theta: torch.Tensor, mix_power: torch.Tensor, sigma: torch.Tensor,
                weight: torch.Tensor) -> torch.Tensor:
        """`mask_log_prob`: theta (B, N, L, bins), mix_power (B, L, bins), sigma (B,), weight (N,) -> (B, N)."""
        n, c = self.n, self.cfg.context
        p = torch.softmax(theta, dim=1)
        power = (n * p) ** 2 * mix_power[:, None]
        bands = torch.einsum("df,bnlf->nbld", self.pool, power)
        u = (torch.log(bands + self.cfg.floor) - self.mean[:, None, None]) / torch.exp(self.log_std)[:, None, None]
        ctx = torch.cat([nn.functional.pad(u, (0, 0, j + 1, 0))[:, :, : -(j + 1)] for j in range(c)], dim=-1)
        log_sigma = torch.log(sigma)[None, :, None, None] * torch.ones_like(u[..., :1])
        rows = torch.cat([u, ctx, log_sigma], dim=-1)  # (N, B, L, .)
        d = u.shape[-1]
        flat = rows.reshape(n, -1, rows.shape[-1])
        h = nn.functional.gelu(torch.baddbmm(self.ctx_b0, flat[:, :, d:], self.ctx_w0))
        h = torch.baddbmm(self.ctx_b1, h, self.ctx_w1)
        z, logdet = flat[:, :, :d], torch.zeros_like(flat[:, :, 0])
        for j in range(self.cfg.layers):
            xs = torch.bmm(z, getattr(self, f"split{j}"))
            xa, xb = xs[..., : self.half], xs[..., self.half :]
            y = torch.cat([xa, h], dim=-1)
            for i in (0, 2, 4):
                y = torch.baddbmm(getattr(self, f"b{j}_{i}"), y, getattr(self, f"w{j}_{i}"))
                if i < 4:
                    y = nn.functional.gelu(y)
            sc, t = y.chunk(2, dim=-1)
            sc = 2.0 * torch.tanh(sc / 2.0)
            z = torch.cat([xa, xb * torch.exp(sc) + t], dim=-1)
            logdet = logdet + sc.sum(dim=-1)
        lp = -0.5 * (z**2).sum(dim=-1) - 0.5 * d * math.log(2 * math.pi) + logdet - self.log_std.sum(dim=-1)[:, None]
        per_item = lp.reshape(n, u.shape[1], -1).sum(dim=-1)  # (N, B)
        return (per_item * weight[:, None]).T


TF_GRAD_INPUTS = ("theta", "mix_power", "sigma", "weight")
TF_GRAD_OUTPUTS = ("grad", "log_prob")


def mask_grad_function(priors: list[TFPrior]):
    """(theta, mix_power, sigma, weight) -> (grad_theta sum of `mask_log_prob`, `mask_log_prob` (B, N)),
    pure functional on the priors' weights stacked as constants (`StackedTFPriors`): run eagerly (the torch
    backend) and traced into tf_grad.onnx (`mask_grad_graph`), so both compute exactly this."""
    stacked = StackedTFPriors(priors)
    stacked.to(next(iter(priors[0].buffers())).dtype)

    def total(theta, mix_power, sigma, weight):
        lp = stacked(theta, mix_power, sigma, weight)
        return lp.sum(), lp

    def fn(theta, mix_power, sigma, weight):
        return torch.func.grad(total, has_aux=True)(theta, mix_power, sigma, weight)

    return fn


def mask_grad_graph(priors: list[TFPrior], frames: int = 64):
    """Trace `mask_grad_function(priors)` symbolically: any batch, any frame count."""
    from .score import _trace

    n, bins = len(priors), priors[0].cfg.n_fft // 2 + 1
    b = n + 1  # a batch size unlike every other axis, so the symbolic tracer keeps it free
    ex = (torch.zeros(b, n, frames, bins), torch.ones(b, frames, bins), torch.full((b,), 0.1), torch.ones(n))
    return _trace(mask_grad_function, priors, ex, dynamic=True)


class TFGradModule(nn.Module):
    """The traced graph behind a forward with named arguments, for torch.export."""

    def __init__(self, graph) -> None:
        super().__init__()
        self.graph_module = graph

    def forward(self, theta, mix_power, sigma, weight):
        return self.graph_module(theta, mix_power, sigma, weight)
