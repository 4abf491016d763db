"""Moves a gradient chain cannot make in mask space: swaps of whole estimates and per-partial reassignment,
each relaxed by a short noise-free mask chain and kept only where the priors rate it higher."""

from __future__ import annotations

import itertools

import numpy as np

from .config import LogProbsFn, ScoresFn
from .masks import NumpySTFT, mask_chain


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
