"""Full band: the high band a 16 kHz model cannot hear follows the stems' own high-frequency energy."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from rtsep.fullband import HighBandShare, equal_share

SR = 44100


def high_band_energy(x: np.ndarray, sample_rate: int, cutoff: float = 8000.0) -> float:
    spec = np.fft.rfft(x, axis=-1)
    f = np.fft.rfftfreq(x.shape[-1], 1.0 / sample_rate)
    return float((np.abs(spec[..., f > cutoff]) ** 2).sum())


def test_shares_sum_to_the_residual_and_follow_high_frequency_energy():
    rng = np.random.default_rng(0)
    t = np.arange(SR) / SR
    bass = 0.5 * np.sin(2 * np.pi * 80 * t)
    hats = rng.standard_normal(SR) * 0.05 * (np.sin(2 * np.pi * 4 * t) > 0.5)  # bursts
    stems = np.stack([bass, hats])[:, None].astype(np.float32)
    residual = (rng.standard_normal((1, SR)) * 0.02).astype(np.float32)
    out = HighBandShare(SR)(stems, residual)
    np.testing.assert_allclose(out.sum(axis=0), residual, atol=1e-6)
    on = np.abs(hats) > 0
    assert (out[1, 0, on] ** 2).sum() > 0.99 * (out[:, 0, on] ** 2).sum()  # during a burst: the hats
    recent = np.convolve(on.astype(float), np.ones(1100))[:SR] > 0  # a burst within the last 25 ms
    quiet = ~recent  # between bursts, past the 20 ms energy window and the filter's length
    share = (out[0, 0, quiet] ** 2).sum() / (out[:, 0, quiet] ** 2).sum()
    assert 0.49 < share < 0.51  # no stem holds energy near 7 kHz: split equally, as the old projection did


def test_streaming_equals_offline_and_equal_share_is_the_old_projection():
    rng = np.random.default_rng(1)
    stems = rng.standard_normal((3, 2, 5000)).astype(np.float32)
    residual = rng.standard_normal((2, 5000)).astype(np.float32)
    whole = HighBandShare(SR)(stems, residual)
    h = HighBandShare(SR)
    cuts = [0, 1, 300, 301, 4000, 5000]
    parts = [h(stems[..., a:b], residual[:, a:b]) for a, b in zip(cuts, cuts[1:])]
    np.testing.assert_allclose(np.concatenate(parts, axis=-1), whole, atol=1e-6)
    np.testing.assert_allclose(equal_share(stems, residual), np.broadcast_to(residual / 3, stems.shape))


@pytest.fixture(scope="module")
def high_band_shares(tmp_path_factory) -> dict[str, float]:
    """The share of the band above 8 kHz each stem of the shipped music4 gets, at 44.1 kHz, for a mixture
    whose band above 7.5 kHz is drums only (one FluidR3 song, seed 3; the other stems low-passed)."""
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed")
    import soundfile as sf

    import rtsep
    from rtsep.datasets.music4 import make_music4

    tmp_path = tmp_path_factory.mktemp("fullband")
    make_music4(tmp_path / "d", 1, 4.0, SR, seed=3, generator="v1", heldout=True,
                soundfont=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"))
    stems = {s: sf.read(str(tmp_path / "d" / "test" / s / "00000.wav"), dtype="float32")[0]
             for s in ("bass", "drums", "guitar", "piano")}
    spec_f = np.fft.rfftfreq(4 * SR, 1.0 / SR)

    def lowpass(x: np.ndarray) -> np.ndarray:
        spec = np.fft.rfft(x)
        spec[spec_f > 7500] = 0
        return np.fft.irfft(spec, x.size).astype(np.float32)

    mix = (stems["drums"] + sum(lowpass(stems[s]) for s in ("bass", "guitar", "piano"))) / 4
    sep = rtsep.Separator.load("music4", backend="onnx")
    out = sep.separate(mix[None], SR)  # (sources, 1, samples)
    np.testing.assert_allclose(out.sum(axis=0)[0], mix, atol=1e-4)
    hb = np.array([high_band_energy(out[k, 0], SR) for k in range(4)])
    return dict(zip(sep.sources, (hb / hb.sum()).round(3).tolist()))


def test_drums_only_high_band_lands_mostly_in_the_drums_stem(high_band_shares: dict[str, float]):
    """Issue 26: a drums-only high band goes mostly to the drums stem (an equal split gave each 25 %).
    The session-24 encoder gives drums 0.81 here (the session-22 one 0.94): its bass estimate holds more
    of the drums' 5.6-7.4 kHz guide band, so the bass gets 0.18 (research log, session 24)."""
    assert high_band_shares["drums"] >= 0.75, high_band_shares


@pytest.mark.xfail(strict=True, reason="issue 26's 90 %: 0.81 with the session-24 encoder (bass 0.18), open")
def test_drums_only_high_band_lands_90_percent_in_the_drums_stem(high_band_shares: dict[str, float]):
    assert high_band_shares["drums"] >= 0.9, high_band_shares
