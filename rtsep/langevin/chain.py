"""`refine`: the chain a block runs, in signal or mask space, with the mask space's optional moves."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import numpy as np

from ..errors import BundleError
from .config import LangevinConfig, LogProbsFn, Step
from .masks import mask_chain, numpy_stft
from .moves import band_moves, swap_moves
from .schedule import schedule, scores_from_steps
from .tfchain import TFGradFn, tf_chain

if TYPE_CHECKING:  # rtsep.bands is numpy-only, but a type hint need not load it
    from ..bands import BandPrior


def refine(x0: np.ndarray, mix: np.ndarray, run: Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray],
           cfg: LangevinConfig, rng: np.random.Generator, renoise: bool = True,
           log_probs: LogProbsFn | None = None, band_prior: BandPrior | None = None,
           tf_grad: TFGradFn | None = None) -> np.ndarray:
    """x0 (B, N, T) warm starts (encoder means), mix (B, T) -> refined (B, N, T); K=0 returns x0.

    `run(x, mix (B, 1, T), steps)` executes the chain: a backend's `langevin`, or `run_steps`
    over a numpy step function. `log_probs` (a backend's) is needed when `cfg.relabel_every`, and
    `band_prior` (a backend's `rtsep.bands.BandPrior`) when `cfg.band_weight`, `tf_grad` (a backend's)
    when `cfg.prior` is "tf"."""
    if cfg.steps <= 0:
        return x0
    if cfg.prior == "tf":
        if tf_grad is None:
            raise BundleError("this chain climbs the time-frequency priors, which this model or backend does not have "
                              "(rtsep train prior --domain tf, then rtsep export)")
        t = x0.shape[-1]
        pad = [(0, 0)] * (x0.ndim - 1) + [(0, -t % cfg.hop)]
        mix2 = np.pad(np.broadcast_to(mix, (x0.shape[0], t)), pad[1:])
        return tf_chain(np.pad(x0, pad), mix2, tf_grad, cfg, rng, numpy_stft(cfg.n_fft, cfg.hop))[..., :t]
    if cfg.space == "mask":
        if (cfg.relabel_every or cfg.chains > 1 or cfg.swaps or cfg.bands) and log_probs is None:
            raise BundleError("relabelling, swap and band moves and several chains need the priors' log-densities, "
                              "which this backend does not give")
        if cfg.band_weight and band_prior is None:
            raise BundleError("--band-weight needs a band-shape prior, which this model's encoder was not trained with "
                              "(`rtsep train encoder --band-weight`)")
        return refine_masks(x0, mix, run, cfg, rng, log_probs, band_prior)
    x = x0.astype(np.float32, copy=True)
    b, n, t = x.shape
    m = np.array(np.broadcast_to(mix, (b, t)).reshape(b, 1, t), dtype=np.float32)
    if cfg.warm_start < 1.0:
        x = cfg.warm_start * x + (1.0 - cfg.warm_start) * m  # still mixes to m when x0 does
    if renoise:
        x += cfg.sigmas()[0] * rng.standard_normal(x.shape, dtype=np.float32)
    return run(x, m, schedule(cfg, x.shape, rng))


def refine_masks(x0: np.ndarray, mix: np.ndarray, run: Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray],
                 cfg: LangevinConfig, rng: np.random.Generator, log_probs: LogProbsFn | None = None,
                 band_prior: BandPrior | None = None) -> np.ndarray:
    """`refine` in mask space; the span is zero-padded to a multiple of the STFT hop and cropped back."""
    b, n, t = x0.shape
    pad = -t % cfg.hop
    c = cfg.chains
    mix2 = np.tile(np.pad(np.broadcast_to(mix, (b, t)), [(0, 0), (0, pad)]), (c, 1))  # chain j: rows j*b..
    x = np.tile(np.pad(x0, [(0, 0), (0, 0), (0, pad)]), (c, 1, 1))
    scores, stft = scores_from_steps(run), numpy_stft(cfg.n_fft, cfg.hop)
    if cfg.band_weight:  # the same posterior for every move: scores climbed and log-densities rated
        flow_scores, flow_log_probs = scores, log_probs
        scores = lambda x, sigma: flow_scores(x, sigma) + band_prior.grad_log_prob(x, cfg.band_weight)  # noqa: E731
        if log_probs is not None:
            log_probs = lambda x, sigma: flow_log_probs(x, sigma) + band_prior.log_prob(x, cfg.band_weight)  # noqa: E731
    out = mask_chain(x, mix2, scores, cfg.sigmas(), cfg.mask_lr, cfg.temperature, rng, stft,
                     warm=cfg.warm_start, log_probs=log_probs, relabel_every=cfg.relabel_every, polish=cfg.polish)
    sigma = cfg.rate_sigma or cfg.sigmas()[-1]
    if c > 1:
        rated = log_probs(out, np.full(c * b, sigma, np.float32)).sum(axis=1).reshape(c, b)
        out = out.reshape(c, b, n, -1)[rated.argmax(axis=0), np.arange(b)]
    if cfg.swaps:
        out = swap_moves(out, mix2[:b], scores, log_probs, cfg.relax_sigmas(), cfg.mask_lr, stft, sigma, cfg.swaps)
    if cfg.bands:
        out = band_moves(out, mix2[:b], scores, log_probs, cfg.relax_sigmas(), cfg.mask_lr, stft, sigma, cfg.bands,
                         cfg.band_regions)
    return out[..., :t]
