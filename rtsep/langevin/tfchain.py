"""The chain under the time-frequency priors: steps on the mask logits, no inverse STFT between them.

The estimate of source k is s_k = istft(n * softmax_k(theta) * M), as in `rtsep.langevin.masks`, so
mean_k s_k == m exactly. The TF priors (`rtsep.nn.tfprior`) rate each source's band energies
straight from the masked spectrum, so one backend call (`tf_grad`: torch eagerly, or tf_grad.onnx)
gives the gradient in theta of sum_k w_k log p_k, and a step is

    theta <- theta + lr_i * g / rms(g) (+ T * sqrt(2 lr_i) * eps)

normalised per block so that lr_i is in logit units whatever the priors' scale; lr_i is one number
or one per source (lr_ik: how far each source's logits follow the priors at step i). The levels sigma_i,
steps lr_i and weights w_k are learned through the K unrolled steps on training mixtures
(`rtsep train chain`, stored in the card as `tf_sigmas`, `tf_lrs`, `tf_weights`); a run with
another K uses the card's geometric levels and `mask_lr`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import ConfigError
from .config import LangevinConfig
from .masks import NumpySTFT, initial_logits, softmax

TFGradFn = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""tf_grad(theta (B, N, L, F), mix_power (B, L, F), sigma (B,), weight (N,)) -> (grad (B, N, L, F), log p (B, N))."""


def tf_schedule(cfg: LangevinConfig, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(levels (K,), step sizes (K, N), source weights (N,)) of the chain: the learned ones when K matches."""
    if cfg.tf_lrs and len(cfg.tf_lrs) == cfg.steps:
        sigmas = np.asarray(cfg.tf_sigmas, np.float64)
        lrs = np.asarray(cfg.tf_lrs, np.float64).reshape(cfg.steps, -1)
        if lrs.shape[1] not in (1, n):
            raise ConfigError(f"tf_lrs: {lrs.shape[1]} step sizes per step for {n} sources (1 or {n})")
        lrs = lrs * np.ones(n)
    else:
        sigmas, lrs = cfg.sigmas(), np.full((cfg.steps, n), cfg.mask_lr)
    weight = np.asarray(cfg.tf_weights or [1.0] * n, np.float32)
    return sigmas, lrs, weight


def tf_chain(x0: np.ndarray, mix: np.ndarray, grad: TFGradFn, cfg: LangevinConfig, rng: np.random.Generator,
             stft: NumpySTFT) -> np.ndarray:
    """x0 (B, N, T) warm start, mix (B, T), T % hop == 0 -> refined (B, N, T), mean over sources == mix."""
    b, n, _ = x0.shape
    sigmas, lrs, weight = tf_schedule(cfg, n)
    spec = stft.forward(mix.astype(np.float64))  # (B, L, F)
    mix_power = (np.abs(spec) ** 2).astype(np.float32)
    theta = initial_logits(x0, stft, cfg.warm_start)
    for sigma, lr in zip(sigmas, lrs):
        g, _ = grad(theta.astype(np.float32), mix_power, np.full(b, sigma, np.float32), weight)
        g = g.astype(np.float64)
        g /= np.sqrt((g * g).mean(axis=(1, 2, 3), keepdims=True)) + 1e-12
        lr = lr[None, :, None, None]
        theta = theta + lr * g
        if cfg.temperature > 0:
            theta = theta + cfg.temperature * np.sqrt(2 * lr) * rng.standard_normal(theta.shape)
    return stft.inverse(n * softmax(theta, axis=1) * spec[:, None]).astype(np.float32)
