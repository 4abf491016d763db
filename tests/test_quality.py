"""Separation quality: the shipped toy4 model (0.3 M-parameter STFT ratio-mask encoder) keeps its measured numbers
on freshly generated held-out mixtures, and the seed objective's KL term really sends the priors'
gradient into the encoder (the thesis code detached it). An encoder trained inside the test for
~20 s did not separate toy4 reliably (mean SI-SDRi -0.03 .. +0.16 dB), so it is not asserted."""

from __future__ import annotations

import numpy as np
import torch

from rtsep.nn.encoder import Encoder, EncoderConfig
from rtsep.separation_eval import evaluate_separation
from rtsep.separator import MODELS_DIR
from rtsep.train.encoder import seed_loss
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
