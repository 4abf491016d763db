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
import itertools
from typing import Callable

import numpy as np

from .langevin import LogProbsFn

ScoresFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""scores(x (B, N, T), sigma (B,)) -> grad_x sum log p_k,sigma(x_k) for every source, (B, N, T)."""


class NumpySTFT:
    """sqrt-Hann real STFT with `hop` | n_fft / 2, T / hop frames, and its exact inverse and adjoint."""

    def __init__(self, n_fft: int = 1024, hop: int = 256) -> None:
        if n_fft % (2 * hop):
            raise ValueError(f"hop {hop} must divide n_fft / 2 = {n_fft // 2}")
        self.n_fft, self.hop, self.pad = n_fft, hop, (n_fft - hop) // 2
        self._overlaps: dict[int, np.ndarray] = {}  # window-square sum per frame count: every step reuses it
        self.win = np.sqrt(0.5 - 0.5 * np.cos(2 * np.pi * np.arange(n_fft) / n_fft))
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
def numpy_stft(n_fft: int, hop: int) -> NumpySTFT:
    """One NumpySTFT per frame shape, shared by every block of every stream (its overlap cache too)."""
    return NumpySTFT(n_fft, hop)


def softmax(theta: np.ndarray, axis: int) -> np.ndarray:
    e = np.exp(theta - theta.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


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
    share = np.abs(stft.forward(x0.astype(np.float64)))
    theta = warm * np.log(share / (share.sum(axis=1, keepdims=True) + 1e-12) + floor)
    v = None
    relabel = log_probs is not None and relabel_every > 0
    for i, sigma in enumerate(sigmas):
        p = softmax(theta, axis=1)
        x = stft.inverse(n * p * spec).astype(np.float32)
        if relabel and i and i % relabel_every == 0:  # permute what this step has already computed
            take = _permuter(best_labelling(x, log_probs, sigma))
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
        x = _permuter(best_labelling(x, log_probs, sigmas[-1]))(x)
    return x


def swap_moves(x: np.ndarray, mix: np.ndarray, scores: ScoresFn, log_probs: LogProbsFn, sigmas: np.ndarray,
               lr: float, stft: NumpySTFT, rate_sigma: float, rounds: int) -> np.ndarray:
    """x (B, N, T), mix (B, T) -> (B, N, T): `rounds` of swap-and-relax moves (basin hopping).

    Some wrong basins take two moves at once to leave. On toy4 a cold chain gives a triangle's
    fundamental to the sine prior (alone it is a sine), the real sine to the triangle prior (a sine
    is nearly a triangle), and the triangle's upper partials to the square: relabelling alone
    changes nothing (both priors hold a pure sine), moving the partials alone rates worse. So each
    round proposes every pair swap of whole estimates, relaxes each proposal and the unswapped
    estimate alike by a short noise-free mask chain over `sigmas` (warm-started from them), and
    keeps per block the candidate the priors rate highest at `rate_sigma`. After the swap, the
    triangle prior pulls its partials back from the square. Rounds stop early once no block takes a
    swap (the relaxation is deterministic). Costs (1 + N(N-1)/2) x len(sigmas) chain steps a round."""
    b, n, t = x.shape
    perms = [np.arange(n)]
    for j, k in itertools.combinations(range(n), 2):
        p = np.arange(n)
        p[[j, k]] = k, j
        perms.append(p)
    c = len(perms)
    mix_c = np.repeat(mix, c, axis=0)
    sig = np.full(b * c, rate_sigma, dtype=np.float32)
    for _ in range(rounds):
        cand = x[:, np.stack(perms)].reshape(b * c, n, t)  # rows i*c .. i*c + c-1: block i's candidates
        relaxed = mask_chain(cand, mix_c, scores, sigmas, lr, 0.0, np.random.default_rng(0), stft, warm=1.0)
        best = log_probs(relaxed, sig).sum(axis=1).reshape(b, c).argmax(axis=1)
        x = relaxed.reshape(b, c, n, t)[np.arange(b), best]
        if not best.any():
            break
    return x


def spectral_regions(spec: np.ndarray, count: int, min_share: float) -> np.ndarray:
    """spec (B, L, F) -> (B, count, F) bool: the block's `count` strongest spectral regions, strongest first.

    A region runs from one local minimum of the block's mean power spectrum to the next, so each
    holds one peak (a partial, on a stationary block). Regions under `min_share` of the block's
    power are left out (an all-False row): they are too faint to matter to a prior."""
    power = (np.abs(spec) ** 2).mean(axis=1)  # (B, F)
    b, f = power.shape
    out = np.zeros((b, count, f), dtype=bool)
    for i, p in enumerate(power):
        d = np.diff(p)
        starts = np.r_[0, np.flatnonzero((d[:-1] <= 0) & (d[1:] > 0)) + 1]  # a region starts at each minimum
        ends = np.r_[starts[1:], f]
        energy = np.add.reduceat(p, starts)
        order = [j for j in np.argsort(-energy, kind="stable")[:count] if energy[j] >= min_share * p.sum()]
        for r, j in enumerate(order):
            out[i, r, starts[j] : ends[j]] = True
    return out


def harden(share: np.ndarray, bands: np.ndarray, power: np.ndarray) -> np.ndarray:
    """share (B, N, L, F) masks with each region of `bands` (B, R, F) given whole to the source holding
    most of `power` (B, N, F) in it; bins outside every region keep their share."""
    onehot = np.eye(share.shape[1])[:, :, None, None]
    for r in range(bands.shape[1]):
        owner = np.einsum("bnf,bf->bn", power, bands[:, r]).argmax(axis=1)
        share = np.where(bands[:, r][:, None, None, :], onehot[owner], share)
    return share


def band_moves(x: np.ndarray, mix: np.ndarray, scores: ScoresFn, log_probs: LogProbsFn, sigmas: np.ndarray,
               lr: float, stft: NumpySTFT, rate_sigma: float, rounds: int, regions: int = 24,
               min_share: float = 1e-4) -> np.ndarray:
    """x (B, N, T), mix (B, T) -> (B, N, T): `rounds` sweeps of per-partial reassignment (ICM), then relax.

    What the swap moves leave on toy4 are blends: sine and triangle each holding part of the
    other's partials (README, Sessions 15-16), a state no whole-estimate swap undoes and a gradient
    chain does not leave (each partial moved alone passes through worse states). Here each of the
    block's strongest spectral regions (`spectral_regions`: one partial each on a stationary block)
    is first given whole to the estimate holding most of it (`harden`); then, strongest first, each
    region is offered to every source in turn and kept where the priors rate the block highest at
    `rate_sigma` (iterated conditional modes over partials). Giving region r to source k changes
    only source k (which gains it) and the owner o (which loses it), so one row rates every
    candidate: slot k holds source k with the region, slot o the owner without it, and candidate
    k's gain is their log-densities' change from the current ones. Every candidate shares the
    mixture out exactly. The result is relaxed like a swap proposal (a noise-free mask chain over
    `sigmas` warm-started from it) and kept per block only where it rates above `x`. Costs
    `rounds` x regions + 2 calls of `log_probs` (one row a block) plus len(sigmas) chain steps."""
    b, n, t = x.shape
    spec = stft.forward(mix.astype(np.float64))  # (B, L, F)
    held = np.abs(stft.forward(x.astype(np.float64)))  # (B, N, L, F)
    bands = spectral_regions(spec, regions, min_share)  # (B, R, F)
    share = harden(held / (held.sum(axis=1, keepdims=True) + 1e-12), bands, (held**2).sum(axis=2))
    rows, sig = np.arange(b), np.full(b, rate_sigma, dtype=np.float32)
    render = lambda masks: stft.inverse(n * masks * spec[:, None]).astype(np.float32)  # noqa: E731
    current = log_probs(render(share), sig)  # (B, N): each source's log-density as it stands
    onehot = np.eye(n)[:, :, None, None]
    for _ in range(rounds):
        for r in range(bands.shape[1]):
            region = bands[:, r][:, None, None, :]  # (B, 1, 1, F)
            if not region.any():
                break
            owner = np.einsum("bnlf,bf->bn", share, bands[:, r]).argmax(axis=1)  # the region is one-hot on it
            row = np.where(region, 1.0 - onehot[owner], share)  # slot k: k gains the region; slot o: o loses it
            lp = log_probs(render(row), sig)
            change = lp - current + (lp - current)[rows, owner][:, None]
            change[rows, owner] = 0.0  # the owner keeping it changes nothing
            best = change.argmax(axis=1)
            moved = best != owner
            share = np.where(region & moved[:, None, None, None], onehot[best], share)
            for k in (best, owner):
                current[rows, k] = np.where(moved, lp[rows, k], current[rows, k])
    moved = mask_chain(render(share), mix, scores, sigmas, lr, 0.0, np.random.default_rng(0), stft, warm=1.0)
    both = np.stack([x, moved], axis=1)  # (B, 2, N, T)
    rated = log_probs(both.reshape(2 * b, n, t), np.full(2 * b, rate_sigma, dtype=np.float32)).sum(axis=1)
    return both[rows, rated.reshape(b, 2).argmax(axis=1)]


def cross_log_probs(x: np.ndarray, log_probs: LogProbsFn, sigma: float) -> np.ndarray:
    """x (B, N, T) -> lp (B, N, N), lp[b, k, j] = log p_k(x_j) at `sigma`: every prior against every
    estimate, in N calls of `log_probs` (which rates slot k by prior k) on rolled stacks."""
    b, n, _ = x.shape
    sig = np.full(b, sigma, dtype=np.float32)
    lp = np.empty((b, n, n))
    for r in range(n):
        rolled = np.roll(x, r, axis=1)  # rolled[:, k] = x[:, (k - r) % n]
        lp[:, np.arange(n), (np.arange(n) - r) % n] = log_probs(np.ascontiguousarray(rolled), sig)
    return lp


def cross_margins(x: np.ndarray, log_probs: LogProbsFn, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """(lp (B, N, N) as `cross_log_probs`, margins (B, N) = log p_k(x_k) - max_{j != k} log p_j(x_k)): how
    much more each estimate's own prior likes it than the best other prior does."""
    lp = cross_log_probs(x, log_probs, sigma)
    n = x.shape[1]
    others = np.where(np.eye(n, dtype=bool)[None], -np.inf, lp).max(axis=1)  # best other prior, per estimate
    return lp, np.einsum("bkk->bk", lp) - others


def best_labelling(x: np.ndarray, log_probs: LogProbsFn, sigma: float) -> np.ndarray:
    """x (B, N, T) -> (B, N) permutation: source k takes estimate perm[k], maximising sum_k log p_k.

    A gradient chain only moves content a little at a time, so two sources that look alike
    locally (a low triangle and a sine: straight-ish lines) can end up each holding the other
    whole, a basin it never leaves though the priors rate the swap far worse (toy4: tens of
    thousands of nats per second, README). Relabelling whole estimates is an exact move on the
    same posterior: the mixture (their mean) is unchanged. It costs N calls of `log_probs`, each
    running all N priors: N^2 prior passes."""
    n = x.shape[1]
    lp = cross_log_probs(x, log_probs, sigma)
    perms = np.array(list(itertools.permutations(range(n))))  # (P, N); N! is small (24 for N = 4)
    totals = lp[:, np.arange(n)[None, :], perms].sum(axis=-1)  # (B, P)
    return perms[np.argmax(totals, axis=1)]


def _permuter(perm: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """perm (B, N) -> a function that reorders axis 1 of any (B, N, ...) array: out[:, k] = a[:, perm[k]]."""
    return lambda a: np.take_along_axis(a, perm.reshape(perm.shape + (1,) * (a.ndim - 2)), axis=1)
