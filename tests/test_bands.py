"""The band-shape prior: its numpy gradient (what the mask chain climbs) is the autograd gradient of
its torch log-density, and in the chain it alone moves each tone to the source whose spectral
balance it fits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rtsep.bands import BandPrior, band_log_shares, band_prior_of
from rtsep.errors import BundleError, ConfigError
from rtsep.langevin import LangevinConfig, numpy_step, refine, run_steps
from rtsep.metrics import si_sdr

SR = 16000


@pytest.mark.parametrize("length", [1024, 1023])
def test_grad_log_prob_is_the_autograd_gradient(length):
    rng = np.random.default_rng(0)
    bands = BandPrior(rng.standard_normal((3, 7)) * 0.5 - 2, rng.random((3, 7)) + 0.3, SR)
    x = rng.standard_normal((2, 3, length))
    xt = torch.from_numpy(x).requires_grad_(True)
    (-(0.1 * length * bands.nll(xt)).sum()).backward()
    g = bands.grad_log_prob(x, 0.1)
    assert np.abs(g - xt.grad.numpy()).max() < 1e-4 * np.abs(g).max()
    lp = -(0.1 * length * bands.nll(torch.from_numpy(x))).numpy()
    assert np.allclose(bands.log_prob(x, 0.1), lp, rtol=1e-9)


def tones(t: int) -> tuple[np.ndarray, np.ndarray]:
    n = np.arange(t) / SR
    return 0.3 * np.sin(2 * np.pi * 180 * n), 0.1 * np.sin(2 * np.pi * 5200 * n + 1.0)


def test_the_chain_climbs_the_band_prior_alone():
    """Flat flows (zero scores) and a band prior that says source 0 is low and source 1 high: from an
    equal split of low tone + high tone, the mask chain gives each tone to its source; without the
    band weight it leaves the equal split."""
    low, high = tones(8192)
    noise = 1e-3 * np.random.default_rng(1).standard_normal((2, 8192))
    shares = band_log_shares(torch.from_numpy(np.stack([low, high]) + noise), SR)
    bands = BandPrior(shares.numpy(), np.full(shares.shape, 0.5), SR)
    src = np.stack([low, high])[None].astype(np.float32)
    mix = src.mean(axis=1)
    x0 = np.repeat(mix[:, None], 2, axis=1)
    run = run_steps(numpy_step(lambda k, x, sigma: np.zeros_like(x)))
    cfg = LangevinConfig(steps=32, space="mask", temperature=0.0, sigma_start=0.1, sigma_end=0.02, band_weight=0.01)
    out = refine(x0, mix, run, cfg, np.random.default_rng(0), band_prior=bands)
    flat = refine(x0, mix, run, LangevinConfig(steps=32, space="mask", temperature=0.0), np.random.default_rng(0))
    assert (si_sdr(src[0], out[0]) > 15).all(), si_sdr(src[0], out[0])
    assert np.abs(flat - x0).max() < 1e-3  # the equal split: 9.5 and -9.5 dB
    with pytest.raises(BundleError, match="band-shape prior"):
        refine(x0, mix, run, cfg, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="band_weight"):
        LangevinConfig(steps=4, space="signal", band_weight=0.1)


def test_band_prior_round_trips_through_the_card():
    rng = np.random.default_rng(2)
    bands = BandPrior(rng.standard_normal((2, 7)), rng.random((2, 7)) + 0.1, SR)
    back = band_prior_of({"encoder": {"band_prior": bands.to_dict()}})
    assert np.allclose(back.mean, bands.mean) and np.allclose(back.spread, bands.spread)
    assert back.edges == bands.edges and back.sample_rate == SR
    assert band_prior_of({"encoder": {}}) is None


def test_the_chain_rates_with_the_band_prior_it_climbs():
    """Relabelling rates estimates with the same posterior the chain climbs: with flat flows, a swapped
    start (the high tone in the low source) is relabelled by the band prior alone, and left swapped
    without it. mask_lr 0: the gradient steps do not move, so only the relabelling can."""
    low, high = tones(8192)
    noise = 1e-3 * np.random.default_rng(1).standard_normal((2, 8192))
    shares = band_log_shares(torch.from_numpy(np.stack([low, high]) + noise), SR)
    bands = BandPrior(shares.numpy(), np.full(shares.shape, 0.5), SR)
    src = np.stack([low, high])[None].astype(np.float32)
    swapped = src[:, ::-1].copy()
    run = run_steps(numpy_step(lambda k, x, sigma: np.zeros_like(x)))
    flat = lambda x, sigma: np.zeros(x.shape[:2])  # noqa: E731
    cfg = LangevinConfig(steps=2, space="mask", temperature=0.0, mask_lr=0.0, relabel_every=1, band_weight=0.01)
    out = refine(swapped, src.mean(axis=1), run, cfg, np.random.default_rng(0), log_probs=flat, band_prior=bands)
    assert (si_sdr(src[0], out[0]) > 20).all(), si_sdr(src[0], out[0])
    plain = LangevinConfig(steps=2, space="mask", temperature=0.0, mask_lr=0.0, relabel_every=1)
    kept = refine(swapped, src.mean(axis=1), run, plain, np.random.default_rng(0), log_probs=flat)
    assert (si_sdr(src[0], kept[0]) < 0).all(), si_sdr(src[0], kept[0])
