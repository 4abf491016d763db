"""The band-shape prior: each source's long-term spectral balance, which a sample-level flow with a
short receptive field does not see.

Per source, a diagonal Gaussian on the log share of an estimate's energy in each band (`band_edges`),
fitted to that source's own solo excerpts (no stems). Under the flows alone the seed objective
strips drums, bass and piano of everything above 2 kHz and gives it all to the guitar (README,
Session 18); this term prices that. The seed encoder trains with it (`--band-weight`), the card
stores it (`to_dict`) beside the encoder, and the mask chain can climb it too (`grad_log_prob`, in
numpy, so the ONNX backend needs no new graph and loads no torch).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

EPS = 1e-4
"""Floor of a band's share inside the log: a silent band costs a bounded amount."""


def band_edges(per_octave: int = 1) -> tuple[float, ...]:
    """Lower edges (Hz) of the band-shape prior's bands: everything below 125 Hz, then `per_octave`
    bands per octave up to 4 kHz and one from there to Nyquist (1: 0, 125, 250, ..., 4000)."""
    return (0.0, *(125.0 * 2 ** (i / per_octave) for i in range(5 * per_octave + 1)))


@functools.lru_cache(maxsize=16)
def _band_index(length: int, sample_rate: int, edges: tuple[float, ...]) -> np.ndarray:
    """Band of each rfft bin of a `length`-sample signal (read-only: every chain step of a block
    length shares it)."""
    freqs = np.fft.rfftfreq(length, 1 / sample_rate)
    index = np.searchsorted(np.asarray(edges[1:]), freqs, side="right")
    index.flags.writeable = False
    return index


def band_shares(x: torch.Tensor, sample_rate: int, edges: tuple[float, ...] = band_edges()) -> torch.Tensor:
    """x (..., T) -> each band's share of the energy (..., bands); the bands start at `edges` (Hz)."""
    import torch

    power = torch.fft.rfft(x, dim=-1).abs() ** 2
    band = torch.tensor(_band_index(x.shape[-1], sample_rate, edges))
    energy = torch.zeros(*x.shape[:-1], len(edges), dtype=power.dtype).index_add_(-1, band, power)
    return energy / energy.sum(dim=-1, keepdim=True).clamp_min(1e-20)


def band_log_shares(x: torch.Tensor, sample_rate: int, edges: tuple[float, ...] = band_edges()) -> torch.Tensor:
    """x (..., T) -> log of each band's share of the energy (..., bands), floored at `EPS`."""
    import torch

    return torch.log(band_shares(x, sample_rate, edges) + EPS)


@dataclass
class BandPrior:
    """Per source, a diagonal Gaussian on log band-energy shares: mean and spread (N, bands)."""

    mean: np.ndarray
    spread: np.ndarray
    sample_rate: int
    edges: tuple[float, ...] = band_edges()

    @classmethod
    def fit(cls, sets: list, rng: np.random.Generator, length: int, sample_rate: int, n: int = 256,
            floor: float = 1e-3, edges: tuple[float, ...] = band_edges()) -> BandPrior:
        """From n solo excerpts of `length` samples per source set (anything with `excerpts(rng, n,
        length)`), plus the encoder's noise floor, which every estimate has."""
        import torch

        x = torch.from_numpy(np.stack([s.excerpts(rng, n, length) for s in sets], axis=1))
        shares = band_log_shares(x + floor * torch.from_numpy(rng.standard_normal(x.shape).astype(np.float32)),
                                 sample_rate, edges)
        return cls(shares.mean(dim=0).numpy(), shares.std(dim=0).numpy() + 0.1, sample_rate, edges)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        """x (B, N, T) -> (B, N): 0.5 sum_bands z^2 (no constant), per sample of the weight."""
        import torch

        mean, spread = (torch.as_tensor(v, dtype=x.dtype) for v in (self.mean, self.spread))
        z = (band_log_shares(x, self.sample_rate, self.edges) - mean) / spread
        return 0.5 * (z**2).sum(dim=-1)

    def _numpy_shares(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """x (B, N, T) -> its rfft (B, N, F), band one-hots (F, bands), energy total (B, N, 1), shares (B, N, bands)."""
        spec = np.fft.rfft(x.astype(np.float64), axis=-1)
        onehot = np.eye(len(self.edges))[_band_index(x.shape[-1], self.sample_rate, self.edges)]
        energy = (np.abs(spec) ** 2) @ onehot
        total = np.maximum(energy.sum(axis=-1, keepdims=True), 1e-20)
        return spec, onehot, total, energy / total

    def _z(self, share: np.ndarray) -> np.ndarray:
        mean, spread = np.asarray(self.mean, np.float64), np.asarray(self.spread, np.float64)
        return (np.log(share + EPS) - mean) / spread

    def log_prob(self, x: np.ndarray, weight: float) -> np.ndarray:
        """x (B, N, T) -> -weight * T * nll(x), (B, N): what the chain's ratings add when it climbs
        `grad_log_prob` (relabelling, several chains, swap and band moves), in numpy like it."""
        z = self._z(self._numpy_shares(x)[3])
        return -weight * x.shape[-1] * 0.5 * (z**2).sum(axis=-1)

    def grad_log_prob(self, x: np.ndarray, weight: float) -> np.ndarray:
        """x (B, N, T) -> grad_x of -weight * T * nll(x), (B, N, T): the term counted per sample, as the
        chain's scores are sums over the block. Analytic, in numpy (tests check it against autograd)."""
        t = x.shape[-1]
        spec, onehot, total, share = self._numpy_shares(x)
        spread = np.asarray(self.spread, np.float64)
        a = self._z(share) / spread / (share + EPS)  # d nll / d share
        d_energy = (a - (a * share).sum(axis=-1, keepdims=True)) / total  # d nll / d energy per band
        w = d_energy @ onehot.T  # d nll / d |X_f|^2, (B, N, F)
        w[..., 0] *= 2  # T * irfft counts the DC (and Nyquist) bin once, the others twice
        if t % 2 == 0:
            w[..., -1] *= 2
        grad_nll = t * np.fft.irfft(w * spec, n=t, axis=-1)
        return (-weight * t * grad_nll).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": np.asarray(self.mean).tolist(), "spread": np.asarray(self.spread).tolist(),
                "sample_rate": self.sample_rate,
                "edges": list(self.edges)}

    @classmethod
    def from_dict(cls, d: dict) -> BandPrior:
        return cls(np.asarray(d["mean"], np.float32), np.asarray(d["spread"], np.float32), int(d["sample_rate"]),
                   tuple(d["edges"]))


def band_prior_of(card: dict) -> BandPrior | None:
    """The band-shape prior a model's seed encoder was trained with (stored in its card entry), or None."""
    d = card.get("encoder", {}).get("band_prior")
    return BandPrior.from_dict(d) if d else None
