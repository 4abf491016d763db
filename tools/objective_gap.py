#!/usr/bin/env python
"""Is a seed-objective encoder limited by its optimiser or by the objective? The objective-gap diagnostic.

On held-out mixtures, the seed KL (sum over sources of E_q[log q - log p_k], nats per sample,
lower is better; one fixed noise draw, q's scales from the encoder) of three sets of means: the
trained encoder's, oracle ratio masks on a sqrt-Hann STFT (the best an STFT-mask encoder can
do), and the true sources. Trained > oracle: the optimiser is stuck (the objective would pay for
a better separation). Trained <= oracle: the priors do not reward separating further. Also prints
each estimate's SI-SDR against every true source (rows estimate, columns source).

    python tools/objective_gap.py runs/music4-stft --data data/music4-eval [--sigma 0.02]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch

from rtsep.card import read_card
from rtsep.errors import RtsepError
from rtsep.metrics import si_sdr
from rtsep.nn.encoder import STFT
from rtsep.separation_eval import held_out_mixtures
from rtsep.train.encoder import LOG_2PI, load_encoder
from rtsep.train.prior import load_prior


def oracle_ratio_masks(src: torch.Tensor, mix: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """(M, N, T) estimates N * ISTFT(|S_k| / sum_j |S_j| * STFT(m)): they mix to m."""
    st = STFT(n_fft, hop)
    m, n, t = src.shape
    spec = st(src.reshape(-1, 1, t))
    f = st.bins
    mag = (spec[:, :f] ** 2 + spec[:, f:] ** 2).sqrt().reshape(m, n, f, -1)
    masks = mag / (mag.sum(dim=1, keepdim=True) + 1e-9)
    x = st(mix).reshape(m, 1, 2, f, -1)
    return st.inverse((masks[:, :, None] * x).reshape(m * n, 2 * f, -1)).reshape(m, n, t) * n


def seed_kl(priors: list, means: torch.Tensor, log_scale: torch.Tensor, sigma: float, floor: float = 1e-3
            ) -> tuple[float, np.ndarray]:
    """(summed KL per sample, per-source mean log p per sample), one fixed noise draw."""
    gen = torch.Generator().manual_seed(0)
    eps = torch.randn(means.shape, generator=gen)
    log_scale = 0.5 * torch.log(torch.exp(2 * log_scale) + floor**2)
    s_hat = means + torch.exp(log_scale) * eps
    t = means.shape[-1]
    log_q = ((-0.5 * (eps**2 + LOG_2PI) - log_scale).sum(-1) / t).mean(0)
    log_p = torch.stack([p.shape_log_prob_sum(s_hat[:, k : k + 1], sigma) / t for k, p in enumerate(priors)], 1).mean(0)
    return float((log_q - log_p).sum()), log_p.numpy()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path, help="model directory with priors and a trained encoder")
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--sigma", type=float, default=0.02, help="prior noise level of the KL term")
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8192)
    args = ap.parse_args()
    torch.set_num_threads(1)
    try:
        card = read_card(args.model_dir)
        names = tuple(card.get("priors", {}))
        encoder = load_encoder(args.model_dir)
        priors = [load_prior(args.model_dir, s).requires_grad_(False) for s in names]
        src, mix = held_out_mixtures(args.data, names, card["sample_rate"], "test", args.clips, None)
    except RtsepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    t = min(args.samples, src.shape[-1]) // math.lcm(encoder.cfg.stride, 256) * math.lcm(encoder.cfg.stride, 256)
    src_t, mix_t = torch.from_numpy(src[..., :t]), torch.from_numpy(mix[..., :t])[:, None]
    with torch.no_grad():
        means, log_scale = encoder(mix_t)
        rows = {"trained encoder": means, "oracle ratio masks": oracle_ratio_masks(src_t, mix_t), "true sources": src_t}
        print(f"seed KL, nats/sample (lower is better), sigma {args.sigma}, {len(src)} held-out mixtures of {t} samples;"
              f" mean log p per source: {' '.join(names)}")
        for name, x in rows.items():
            kl, log_p = seed_kl(priors, x, log_scale, args.sigma)
            print(f"  {name:20s} {kl:8.2f}   " + " ".join(f"{v:6.2f}" for v in log_p))
    est, ref = means.numpy(), src_t.numpy()
    cross = np.mean([[[si_sdr(r[j : j + 1], e[k : k + 1])[0] for j in range(len(names))] for k in range(len(names))]
                     for r, e in zip(ref, est)], axis=0)
    print("SI-SDR (dB) of each trained estimate (rows) against each true source (columns): " + " ".join(names))
    for k, name in enumerate(names):
        print(f"  {name:10s} " + " ".join(f"{v:7.1f}" for v in cross[k]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
