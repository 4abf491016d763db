"""The signal-space chain's schedule (levels, step sizes, noise drawn in numpy) and step runners; the step
formula is in the package doc (`rtsep.langevin`)."""

from __future__ import annotations

from typing import Callable

import numpy as np

from .config import LangevinConfig, ScoreFn, Step, StepFn


def project(x: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Make mean over sources (axis -2) equal the mixture exactly. x (..., N, T), mix (..., 1, T)."""
    return x + (mix - x.mean(axis=-2, keepdims=True))


def schedule(cfg: LangevinConfig, shape: tuple[int, int, int], rng: np.random.Generator) -> list[Step]:
    """The chain's steps for x of `shape` (B, N, T): K annealed steps, then the Tweedie step."""
    b, n, _ = shape
    full = lambda v: np.full(b, v, dtype=np.float32)  # noqa: E731
    proj = full(1.0 if cfg.consistency else 0.0)
    steps = []
    sigmas = cfg.sigmas()
    for sigma in sigmas:
        eta = cfg.lr * sigma**2
        noise = np.float32(np.sqrt(2 * eta) * cfg.temperature) * rng.standard_normal(shape, dtype=np.float32)
        steps.append(Step(full(sigma), full(eta), full(eta / (n * sigma**2)), proj, noise))
    if cfg.denoise and len(sigmas):
        steps.append(Step(full(sigmas[-1]), full(sigmas[-1] ** 2), full(0.0), proj, np.zeros(shape, np.float32)))
    return steps


def run_steps(step: StepFn) -> Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray]:
    """A chain runner from a single-step function."""

    def run(x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        for st in steps:
            x = step(x, mix, st)
        return x

    return run


def numpy_step(score: ScoreFn) -> StepFn:
    """The step formula in numpy around a per-source score function (tests, custom priors)."""

    def step(x: np.ndarray, mix: np.ndarray, st: Step) -> np.ndarray:
        col = lambda v: v[:, None, None]  # noqa: E731
        g = np.stack([score(k, np.ascontiguousarray(x[:, k]), st.sigma) for k in range(x.shape[1])], axis=1)
        x1 = x + col(st.eta) * g + col(st.lik) * (mix - x.mean(axis=1, keepdims=True)) + st.noise
        return (x1 + col(st.proj) * (mix - x1.mean(axis=1, keepdims=True))).astype(np.float32)

    return step


def scores_from_steps(run: Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray]) -> Callable[..., np.ndarray]:
    """The priors' scores through a chain runner: one step with eta 1 and nothing else returns
    x + score, so every backend's step graph (torch eager or ONNX) also serves the mask chain."""

    fixed: dict[tuple[int, ...], tuple] = {}  # the step's constant inputs, made once per shape

    def scores(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        b, n, t = x.shape
        if x.shape not in fixed:
            zeros = np.zeros(b, np.float32)
            fixed[x.shape] = (np.ones(b, np.float32), zeros, np.zeros((b, n, t), np.float32),
                              np.zeros((b, 1, t), np.float32))
        ones, zeros, noise, mix = fixed[x.shape]
        return run(x, mix, [Step(sigma.astype(np.float32), ones, zeros, zeros, noise)]) - x

    return scores
