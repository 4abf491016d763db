"""Separation quality: the shipped toy4 model (0.3 M-parameter STFT ratio-mask encoder) keeps its measured numbers
on freshly generated held-out mixtures, and the seed objective's KL term really sends the priors'
gradient into the encoder (the thesis code detached it). An encoder trained inside the test for
~20 s did not separate toy4 reliably (mean SI-SDRi -0.03 .. +0.16 dB), so it is not asserted."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from rtsep.bands import BandPrior, band_prior_of
from rtsep.card import read_card
from rtsep.datasets.folder import SourceSet
from rtsep.errors import DataError
from rtsep.nn.encoder import Encoder, EncoderConfig
from rtsep.separation_eval import evaluate_separation
from rtsep.separator import MODELS_DIR
from rtsep.train.encoder import EncoderTraining, load_encoder, seed_loss, train_encoder
from rtsep.train.prior import load_prior


def test_shipped_toy4_keeps_its_numbers(tmp_path):
    from rtsep.datasets.toy4 import make_toy4

    make_toy4(tmp_path, clips=200, seconds=1.0, sample_rate=16000, seed=77)  # 20 held-out 1 s test clips
    model = MODELS_DIR / "toy4"
    res = evaluate_separation(model, tmp_path, steps=0, clips=20)
    enc = res["table"]["encoder"]
    # card (20 held-out 1 s mixtures, seed 99): medians +7.8 .. +11.3 dB, their average +9.4 dB
    medians = [v["si_sdri_median"] for v in enc.values()]
    assert np.mean(medians) > 6.0, medians  # measured here (seed 77): 9.1 (+3.7 .. +13.0); untrained <= 0
    assert min(medians) > 1.0, medians
    per_clip = np.array(res["per_clip"]["encoder"]["si_sdri"])  # (clips, sources), the table's medians
    assert per_clip.shape == (20, 4) and np.allclose(np.median(per_clip, axis=0), medians, atol=1e-2)
    whole = evaluate_separation(model, tmp_path, steps=0, clips=20, whole=True)  # one block per clip
    assert whole["whole_clips"] and not res["whole_clips"]
    whole_medians = [v["si_sdri_median"] for v in whole["table"]["encoder"].values()]
    assert whole_medians != medians and np.mean(whole_medians) > 6.0, whole_medians


def test_seed_kl_term_gives_the_encoder_prior_gradients(tiny_priors):
    priors = [load_prior(tiny_priors, s).requires_grad_(False) for s in ("saw", "sine", "square", "triangle")]
    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(sources=["saw", "sine", "square", "triangle"], filters=16, bottleneck=8, hidden=16,
                                blocks=3))
    mix = torch.randn(2, 1, 1024) * 0.2
    # gamma huge: the mixture term vanishes, so any gradient comes through log p_k(s_hat_k)
    loss, _ = seed_loss(enc, priors, mix, sigma=0.05, gamma=1e6)
    loss.backward()
    g = sum(float(p.grad.abs().sum()) for p in enc.masks.parameters())
    assert g > 0
    assert all(p.grad is None for pr in priors for p in pr.parameters())


def test_shipped_toy4_mask_langevin_improves_on_the_encoder(tmp_path):
    from rtsep.datasets.toy4 import make_toy4

    make_toy4(tmp_path, clips=80, seconds=1.0, sample_rate=16000, seed=78)  # 8 held-out 1 s test clips
    res = evaluate_separation(MODELS_DIR / "toy4", tmp_path, steps=16, clips=8,
                              langevin={"space": "mask", "temperature": 0.0})
    enc, ref = res["table"]["encoder"], res["table"]["encoder+langevin16"]
    gains = {s: ref[s]["si_sdri_median"] - enc[s]["si_sdri_median"] for s in enc}
    # measured here: saw +3.2, square +3.8 dB; sine -10.8, triangle -13.9 dB, because where the
    # encoder confuses sine and triangle the chain deepens the swap (README, Limitations)
    assert gains["saw"] > 1.5 and gains["square"] > 1.5, gains


def test_band_prior_tells_bright_toy_sources_from_dark_ones(toy_data):
    """The band-shape prior, fitted on each source's solo excerpts alone, tells sources apart by their
    spectral balance: held-out saw and square excerpts are likelier under the saw and square
    Gaussians than under the sine and triangle ones, and the reverse. (Saw and square, both bright,
    it does not tell apart: 3.0 vs 2.8 on saw data here.)"""
    sources = ("saw", "sine", "square", "triangle")
    sets = [SourceSet.load(toy_data, s, 16000, "train") for s in sources]
    bands = BandPrior.fit(sets, np.random.default_rng(0), 2048, 16000, n=64)
    held = [SourceSet.load(toy_data, s, 16000, "test") for s in sources]
    x = torch.from_numpy(np.stack([h.excerpts(np.random.default_rng(1), 16, 2048) for h in held], axis=1))
    # nll[k, j]: source k's Gaussian on source j's excerpts (slot k holds them)
    nll = np.array([[float(bands.nll(x[:, [j] * 4])[:, k].mean()) for j in range(4)] for k in range(4)])
    bright, dark = [0, 2], [1, 3]
    for j in range(4):
        own, other = (bright, dark) if j in bright else (dark, bright)
        assert nll[own, j].max() < nll[other, j].min(), nll.round(1)


def test_band_weight_and_max_scale_reach_the_seed_objective(tiny_priors, toy_data, tmp_path):
    """--band-weight adds the band-shape term to the seed loss (its value is logged, the encoder gets
    its gradient); --max-scale is stored in the encoder config and bounds q's std."""
    model = tmp_path / "m"
    shutil.copytree(tiny_priors, model, ignore=shutil.ignore_patterns("ckpt", "onnx", "encoder.pt"))
    sources = ["saw", "sine", "square", "triangle"]
    cfg = EncoderConfig(sources=sources, filters=16, bottleneck=8, hidden=16, blocks=2, log_scale_max=math.log(1e-3))
    entry = train_encoder(model, toy_data, cfg, EncoderTraining(steps=2, batch=2, segment=2048, checkpoint_every=1,
                                                                band_weight=0.1), show=False)
    assert entry["training"]["band_weight"] == 0.1 and entry["training"]["history"][-1]["band"] > 0
    assert band_prior_of(read_card(model)).mean.shape == (4, 7)  # stored for the chain (`--band-weight`)
    enc = load_encoder(model)
    assert enc.cfg.log_scale_max == math.log(1e-3)
    _, log_scale = enc(torch.randn(1, 1, 2048))
    assert float(log_scale.max()) <= math.log(1e-3) + 1e-6
    priors = [load_prior(model, s).requires_grad_(False) for s in sources]
    bands = BandPrior.fit([SourceSet.load(toy_data, s, 16000, "train") for s in sources], np.random.default_rng(0),
                          2048, 16000, n=16)
    mix = torch.randn(2, 1, 2048) * 0.2
    torch.manual_seed(0)
    loss, parts = seed_loss(enc, priors, mix, sigma=0.05, gamma=1e6, bands=bands, band_weight=0.0)
    torch.manual_seed(0)  # the same draw of q's noise: the two losses differ by the band term alone
    loss_b, parts_b = seed_loss(enc, priors, mix, sigma=0.05, gamma=1e6, bands=bands, band_weight=1.0)
    assert "band" not in parts and parts_b["band"] > 0
    assert abs(float(loss_b - loss) - parts_b["band"]) < 1e-3 * parts_b["band"]
    with pytest.raises(DataError, match="seed objective"):  # no silent no-op under another objective
        train_encoder(model, toy_data, cfg, EncoderTraining(objective="supervised", steps=1, band_weight=0.1),
                      show=False)
    enc.zero_grad()
    (loss_b - loss).backward()
    assert sum(float(p.grad.abs().sum()) for p in enc.masks.parameters()) > 0
