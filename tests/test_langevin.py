"""Langevin refinement: K=0 is the encoder, the likelihood pulls toward the mixture, seeded."""

import numpy as np

from rtsep.langevin import LangevinConfig, numpy_step, project, refine, run_steps


def flat_score(k, x, sigma):
    return np.zeros_like(x)


def chain(score):
    return run_steps(numpy_step(score))


def residual(x, mix):
    return float(np.sqrt(((x.mean(axis=1) - mix) ** 2).mean()))


def test_zero_steps_returns_the_warm_start():
    x0 = np.random.default_rng(0).standard_normal((1, 3, 64)).astype(np.float32)
    out = refine(x0, np.zeros((1, 64), np.float32), chain(flat_score), LangevinConfig(steps=0),
                 np.random.default_rng(0))
    assert np.array_equal(out, x0)


def test_flat_prior_step_reduces_mixture_residual_without_projection():
    rng = np.random.default_rng(1)
    mix = rng.standard_normal((1, 256)).astype(np.float32)
    x0 = rng.standard_normal((1, 4, 256)).astype(np.float32)
    cfg = LangevinConfig(steps=3, sigma_start=0.05, sigma_end=0.01, lr=0.5, temperature=0.0, consistency=False,
                         denoise=False)
    out = refine(x0, mix, chain(flat_score), cfg, np.random.default_rng(0), renoise=False)
    assert residual(out, mix[0]) < 0.7 * residual(x0, mix[0])  # (1 - lr/N)^3 = 0.67
    # the pull is toward the mixture: each source moves by +(m - mean)/N * lr per step
    step1 = refine(x0, mix, chain(flat_score), LangevinConfig(steps=1, sigma_end=0.01, lr=0.5, temperature=0.0,
                                                        consistency=False, denoise=False),
                   np.random.default_rng(0), renoise=False)
    expected = x0 + 0.5 * (mix[:, None] - x0.mean(axis=1, keepdims=True)) / 4
    assert np.allclose(step1, expected, atol=1e-5)


def test_projection_is_exact_and_prior_score_is_followed():
    rng = np.random.default_rng(2)
    mix = rng.standard_normal((2, 128)).astype(np.float32)
    target = rng.standard_normal((2, 2, 128)).astype(np.float32)
    target = project(target, mix[:, None])

    def gaussian_score(k, x, sigma):  # prior N(target_k, sigma^2)
        return (target[:, k] - x) / sigma[:, None] ** 2

    x0 = project(rng.standard_normal((2, 2, 128)).astype(np.float32), mix[:, None])
    out = refine(x0, mix, chain(gaussian_score), LangevinConfig(steps=4, temperature=0.0), np.random.default_rng(0))
    assert np.abs(out.mean(axis=1) - mix).max() < 1e-5
    assert np.abs(out - target).mean() < 0.2 * np.abs(x0 - target).mean()


def test_same_seed_same_chain():
    rng = np.random.default_rng(3)
    mix, x0 = rng.standard_normal((1, 64)), rng.standard_normal((1, 2, 64))
    a = refine(x0, mix, chain(flat_score), LangevinConfig(), np.random.default_rng(7))
    b = refine(x0, mix, chain(flat_score), LangevinConfig(), np.random.default_rng(7))
    c = refine(x0, mix, chain(flat_score), LangevinConfig(), np.random.default_rng(8))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
