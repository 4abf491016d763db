"""Which prior holds which estimate: every prior rated against every estimate, and the best relabelling
(an exact move on the posterior: the mixture, the estimates' mean, is unchanged)."""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from .config import LogProbsFn


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


def permuter(perm: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """perm (B, N) -> a function that reorders axis 1 of any (B, N, ...) array: out[:, k] = a[:, perm[k]]."""
    return lambda a: np.take_along_axis(a, perm.reshape(perm.shape + (1,) * (a.ndim - 2)), axis=1)
