"""Langevin on mask logits: exact STFT algebra, exact mixture consistency, and it separates under
priors that discriminate (here two Gaussian priors with known spectra, so the test needs no training)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rtsep.errors import BundleError
from rtsep.langevin import LangevinConfig, numpy_step, refine, run_steps, scores_from_steps
from rtsep.langevin.masks import NumpySTFT, mask_chain
from rtsep.metrics import si_sdr
from rtsep.nn.encoder import STFT

SR = 16000


def test_stft_inverse_adjoint_and_torch_agree():
    st = NumpySTFT(1024, 256)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4096))
    spec = st.forward(x)
    assert spec.shape == (2, 16, 513)
    assert np.abs(st.inverse(spec) - x).max() < 1e-12
    ref = STFT(1024, 256).double()(torch.from_numpy(x)[:, None]).numpy()
    assert np.abs(ref[:, :513] - spec.real.transpose(0, 2, 1)).max() < 1e-5
    assert np.abs(ref[:, 513:] - spec.imag.transpose(0, 2, 1)).max() < 1e-5
    y = rng.standard_normal(spec.shape) + 1j * rng.standard_normal(spec.shape)
    g = rng.standard_normal(x.shape)
    adj = st.inverse_adjoint(g)
    assert np.isclose((g * st.inverse(y)).sum(), (adj.real * y.real + adj.imag * y.imag).sum(), rtol=1e-10)
    with pytest.raises(ValueError):
        st.forward(np.zeros(1000))


def gaussian_scores(spectra: list[np.ndarray]):
    """Scores of stationary Gaussian priors with power spectra `spectra` (per rfft bin of the whole signal)."""

    def score(k, x, sigma):
        return np.fft.irfft(-np.fft.rfft(x, axis=-1) / spectra[k], n=x.shape[-1], axis=-1).astype(np.float32)

    return score


def two_tones(t: int = 4096):
    n = np.arange(t) / SR
    low, high = 0.8 * np.sin(2 * np.pi * 220 * n), 0.6 * np.sin(2 * np.pi * 3000 * n + 1.0)
    f = np.fft.rfftfreq(t, 1 / SR)
    lowpass = 1e-3 + 1.0 / (1 + (f / 500) ** 4)
    highpass = 1e-3 + 1.0 / (1 + (1500 / np.maximum(f, 1)) ** 4)
    return np.stack([low, high]).astype(np.float32), [lowpass, highpass]


def gaussian_log_probs(spectra: list[np.ndarray]):
    """The Gaussian priors' log-densities up to a constant, (B, N)."""

    def log_probs(x, sigma):
        return np.stack([-0.5 * (np.abs(np.fft.rfft(x[:, k], axis=-1)) ** 2 / spectra[k]).sum(-1) / x.shape[-1]
                         for k in range(x.shape[1])], axis=1)

    return log_probs


def test_mask_chain_separates_under_discriminative_priors_and_keeps_the_mixture():
    src, spectra = two_tones()
    mix = src.mean(axis=0, keepdims=True)
    x0 = np.repeat(mix[:, None], 2, axis=1)  # warm start that has not separated at all
    run = run_steps(numpy_step(gaussian_scores(spectra)))
    before = si_sdr(src, x0[0])
    out = mask_chain(x0, mix, scores_from_steps(run), np.geomspace(0.05, 0.01, 24), lr=0.2, temperature=0.0,
                     rng=np.random.default_rng(0), stft=NumpySTFT(1024, 256))
    after = si_sdr(src, out[0])
    assert np.abs(out.mean(axis=1) - mix).max() < 1e-5  # exact mixture consistency, no projection needed
    assert before.max() < 3.0
    assert after.min() > 20.0, after
    swapped = mask_chain(x0, mix, scores_from_steps(run_steps(numpy_step(gaussian_scores(spectra[::-1])))),
                         np.geomspace(0.05, 0.01, 24), 0.2, 0.0, np.random.default_rng(0), NumpySTFT(1024, 256))
    assert si_sdr(src[::-1], swapped[0]).min() > 20.0  # the priors, not the warm start, decide the assignment


def test_mask_space_refine_pads_odd_lengths_is_seeded_and_cannot_invent_content():
    src, spectra = two_tones(3000)  # not a multiple of the hop
    mix = src[:1].mean(axis=0, keepdims=True)  # only the low tone plays
    x0 = np.random.default_rng(3).standard_normal((1, 2, 3000)).astype(np.float32)  # wild warm start
    run = run_steps(numpy_step(gaussian_scores([s[: 3072 // 2 + 1] for s in two_tones(3072)[1]])))
    cfg = LangevinConfig(steps=6, space="mask", temperature=1.0)
    a = refine(x0, mix, run, cfg, np.random.default_rng(5))
    b = refine(x0, mix, run, cfg, np.random.default_rng(5))
    c = refine(x0, mix, run, cfg, np.random.default_rng(6))
    assert a.shape == x0.shape and np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a.mean(axis=1) - mix).max() < 1e-5
    f = np.fft.rfftfreq(3000, 1 / SR)

    def off_tone(x):
        spec = np.abs(np.fft.rfft(x, axis=-1)) ** 2
        return spec[..., np.abs(f - 220) > 60].sum(axis=-1) / spec.sum(axis=-1)

    # the white-noise warm start is ~99% off the tone; the estimates only share out the tone, so
    # they leak no more than the (truncated) tone itself does
    assert off_tone(x0[0]).min() > 0.9
    assert off_tone(a[0]).max() < 2 * off_tone(mix[0]), (off_tone(a[0]), off_tone(mix[0]))


def test_unknown_space_is_rejected():
    with pytest.raises(ValueError, match="space"):
        LangevinConfig(space="latent")


@pytest.mark.parametrize("space", ["mask", "signal"])
def test_cold_start_ignores_the_warm_start_and_a_blend_does_not(space):
    src, spectra = two_tones()
    mix = src.mean(axis=0, keepdims=True)
    run = run_steps(numpy_step(gaussian_scores(spectra)))
    good = src[None].copy()
    bad = np.random.default_rng(1).standard_normal(good.shape).astype(np.float32)
    bad += mix[:, None] - bad.mean(axis=1, keepdims=True)  # a wrong estimate that still mixes to m

    def chain(x0, warm):
        cfg = LangevinConfig(steps=4, space=space, temperature=1.0, warm_start=warm, lr=0.1)
        return refine(x0, mix, run, cfg, np.random.default_rng(5))

    assert np.allclose(chain(good, 0.0), chain(bad, 0.0), atol=1e-5)
    assert not np.allclose(chain(good, 0.5), chain(bad, 0.5), atol=1e-3)
    with pytest.raises(ValueError, match="warm_start"):
        LangevinConfig(warm_start=1.5)


def test_relabelling_undoes_a_whole_swap_that_the_gradient_chain_keeps():
    src, spectra = two_tones()
    mix = src.mean(axis=0, keepdims=True)
    swapped = np.ascontiguousarray(src[None, ::-1])  # each source holding the other whole
    gauss = gaussian_scores(spectra)
    run = run_steps(numpy_step(gauss))

    log_probs = gaussian_log_probs(spectra)
    from rtsep.langevin.labels import best_labelling, cross_margins

    assert best_labelling(swapped, log_probs, 0.01).tolist() == [[1, 0]]
    assert best_labelling(src[None], log_probs, 0.01).tolist() == [[0, 1]]
    lp, margins = cross_margins(src[None], log_probs, 0.01)  # lp[0, k, j]: prior k on estimate j
    assert np.allclose(margins, [[lp[0, 0, 0] - lp[0, 1, 0], lp[0, 1, 1] - lp[0, 0, 1]]])
    assert (margins > 0).all() and (cross_margins(swapped, log_probs, 0.01)[1] < 0).all()

    def chain(relabel):
        cfg = LangevinConfig(steps=3, space="mask", temperature=0.0, mask_lr=0.05, relabel_every=relabel)
        return refine(swapped, mix, run, cfg, np.random.default_rng(0), log_probs=log_probs)[0]

    assert si_sdr(src, chain(0)).max() < 0.0  # three small steps cannot move a whole source across
    assert si_sdr(src, chain(2)).min() > 20.0
    assert np.abs(chain(2).mean(axis=0) - mix).max() < 1e-5
    with pytest.raises(ValueError, match="relabel_every"):
        LangevinConfig(relabel_every=4, space="signal")
    with pytest.raises(BundleError, match="log-densities"):
        refine(swapped, mix, run, LangevinConfig(steps=2, space="mask", relabel_every=1), np.random.default_rng(0))


def test_several_chains_keep_the_one_the_priors_rate_highest_at_the_rating_sigma():
    src, spectra = two_tones()
    mix = src.mean(axis=0, keepdims=True)
    run = run_steps(numpy_step(gaussian_scores(spectra)))
    x0 = np.repeat(mix[:, None], 2, axis=1)
    gauss, asked = gaussian_log_probs(spectra), []

    def log_probs(x, sigma):
        asked.append(float(sigma[0]))
        return gauss(x, sigma)

    cfg = LangevinConfig(steps=3, space="mask", temperature=3.0, mask_lr=0.05, chains=4, rate_sigma=0.1)
    out = refine(x0, mix, run, cfg, np.random.default_rng(0), log_probs=log_probs)
    assert np.allclose(asked, [0.1])
    # the same four chains by hand (same batch shape, so the same noise), rated the same way
    each = refine(np.tile(x0, (4, 1, 1)), mix, run, replace(cfg, chains=1), np.random.default_rng(0))
    rated = gauss(each, None).sum(axis=1)
    assert rated.max() - rated.min() > 1e-3 * abs(rated.max())  # the chains really ended apart
    assert np.allclose(out[0], each[rated.argmax()])
    assert np.abs(out[0].mean(axis=0) - mix).max() < 1e-5
    for bad in ({"chains": 0}, {"chains": 2, "space": "signal"}, {"rate_sigma": -1.0}):
        with pytest.raises(ValueError, match="chains|rate_sigma"):
            LangevinConfig(**bad)
    with pytest.raises(BundleError, match="log-densities"):
        refine(x0, mix, run, cfg, np.random.default_rng(0))


def test_polishing_steps_run_without_noise():
    src, spectra = two_tones()
    mix = src.mean(axis=0, keepdims=True)
    run = run_steps(numpy_step(gaussian_scores(spectra)))
    x0 = np.repeat(mix[:, None], 2, axis=1)

    def chain(**kw):
        return refine(x0, mix, run, LangevinConfig(steps=4, space="mask", mask_lr=0.05, **kw), np.random.default_rng(3))

    assert np.allclose(chain(temperature=2.0, polish=4), chain(temperature=0.0), atol=1e-6)
    assert not np.allclose(chain(temperature=2.0, polish=2), chain(temperature=0.0), atol=1e-3)
    assert not np.allclose(chain(temperature=2.0, polish=2), chain(temperature=2.0), atol=1e-3)
    with pytest.raises(ValueError, match="polish"):
        LangevinConfig(polish=3, space="signal")


def three_tones(t: int = 4096):
    """two_tones plus a 1 kHz tone under a band-pass prior."""
    (low, high), (lowpass, highpass) = two_tones(t)
    n, f = np.arange(t) / SR, np.fft.rfftfreq(t, 1 / SR)
    mid = (0.7 * np.sin(2 * np.pi * 1000 * n + 2.0)).astype(np.float32)
    bandpass = 1e-3 + 1.0 / (1 + ((f - 1000) / 200) ** 4)
    return np.stack([low, high, mid]), [lowpass, highpass, bandpass]


def three_tone_moves():
    """three_tones' sources and mixture, its Gaussian chain and log-densities, a log-density that records
    each call's batch size in `asked`, and a short noise-free chain config for the moves' tests."""
    src, spectra = three_tones()
    gauss, asked = gaussian_log_probs(spectra), []

    def log_probs(x, sigma):
        asked.append(len(x))
        return gauss(x, sigma)

    cfg = LangevinConfig(steps=3, space="mask", temperature=0.0, mask_lr=0.05, swap_steps=3, swap_sigma=0.02)
    run = run_steps(numpy_step(gaussian_scores(spectra)))
    return src, src.mean(axis=0, keepdims=True), run, gauss, log_probs, asked, cfg


def test_swap_moves_leave_a_swap_the_chain_keeps_and_pick_what_the_priors_rate_highest():
    from rtsep.langevin.moves import swap_moves

    src, mix, run, gauss, log_probs, asked, cfg = three_tone_moves()
    start = np.ascontiguousarray(src[None, [1, 0, 2]])  # the low and high tones each in the other's source
    kept = refine(start, mix, run, cfg, np.random.default_rng(0))[0]
    assert si_sdr(src[:2], kept[:2]).max() < 0.0  # three small steps cannot move a whole source across
    out = refine(start, mix, run, replace(cfg, swaps=4), np.random.default_rng(0), log_probs=log_probs)[0]
    assert si_sdr(src, out).min() > 20.0, si_sdr(src, out)
    assert np.abs(out.mean(axis=0) - mix).max() < 1e-5
    assert asked == [4, 4]  # 1 + 3 pair swaps a round; round 2 took no swap, so rounds 3-4 never ran
    # round 1 by hand: every pair swap of the chain's result, relaxed alike, the best rated kept
    scores, sigmas = scores_from_steps(run), np.geomspace(0.02, 0.01, 3)
    cand = kept[None, [[0, 1, 2], [1, 0, 2], [2, 1, 0], [0, 2, 1]]][0]
    relaxed = mask_chain(cand, np.repeat(mix, 4, axis=0), scores, sigmas, 0.05, 0.0, np.random.default_rng(0),
                         NumpySTFT(1024, 256), warm=1.0)
    rated = gauss(relaxed, None).sum(axis=1)
    assert rated.argmax() == 1
    one = swap_moves(kept[None], mix, scores, gauss, sigmas, 0.05, NumpySTFT(1024, 256), 0.01, 1)[0]
    assert np.allclose(one, relaxed[1])
    for bad in ({"swaps": -1}, {"swaps": 1, "space": "signal"}, {"swap_steps": 0}, {"swap_sigma": 0.0}):
        with pytest.raises(ValueError, match="swap"):
            LangevinConfig(**bad)
    with pytest.raises(BundleError, match="log-densities"):
        refine(start, mix, run, replace(cfg, swaps=1), np.random.default_rng(0))


def test_spectral_regions_hold_one_partial_each_strongest_first():
    from rtsep.langevin.moves import spectral_regions

    src, _ = three_tones()
    spec = NumpySTFT(1024, 256).forward(src.sum(axis=0, keepdims=True).astype(np.float64))
    regions = spectral_regions(spec, 5, 1e-4)[0]
    assert regions.shape == (5, 513) and not (regions.sum(axis=0) > 1).any()  # disjoint
    peaks = [np.flatnonzero(r)[np.abs(spec[0]).mean(axis=0)[r].argmax()] * SR / 1024 for r in regions if r.any()]
    assert len(peaks) == 3 and np.allclose(peaks, [220, 1000, 3000], atol=SR / 1024)  # 0.8, 0.7, 0.6 amplitude
    assert not spectral_regions(spec, 5, 0.5)[0, 1:].any()  # only the 220 Hz region holds half the power


def test_band_moves_undo_a_blend_that_swap_moves_cannot():
    from rtsep.langevin.moves import band_moves

    src, mix, run, gauss, log_probs, asked, cfg = three_tone_moves()
    # a blend, not a permutation: estimate 0 holds the high and mid tones, estimate 1 the low, estimate 2 nothing
    start = np.stack([src[1] + src[2], src[0], np.zeros_like(src[0])])[None]
    swapped = refine(start, mix, run, replace(cfg, swaps=2), np.random.default_rng(0), log_probs=gauss)[0]
    assert si_sdr(src, swapped).min() < 5.0, si_sdr(src, swapped)  # no whole swap of this start is the truth
    out = refine(start, mix, run, replace(cfg, bands=1, band_regions=4), np.random.default_rng(0),
                 log_probs=log_probs)[0]
    assert si_sdr(src, out).min() > 20.0, si_sdr(src, out)
    assert np.abs(out.mean(axis=0) - mix).max() < 1e-5
    # the start, then one row per region (three; the fourth too faint) rating all N candidates, then moved vs kept
    assert asked == [1, 1, 1, 1, 2]
    # kept only where it rates higher: from the truth the moves change nothing
    scores = scores_from_steps(run)
    truth = band_moves(src[None], mix, scores, gauss, np.geomspace(0.02, 0.01, 3), 0.05, NumpySTFT(1024, 256), 0.01, 1)
    assert si_sdr(src, truth[0]).min() > 20.0
    for bad in ({"bands": -1}, {"bands": 1, "space": "signal"}, {"band_regions": 0}):
        with pytest.raises(ValueError, match="bands"):
            LangevinConfig(**bad)
    with pytest.raises(BundleError, match="log-densities"):
        refine(start, mix, run, replace(cfg, bands=1), np.random.default_rng(0))
