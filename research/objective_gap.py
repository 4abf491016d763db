#!/usr/bin/env python
"""Is a seed-objective encoder limited by its optimiser or by the objective? The objective-gap diagnostic.

On held-out mixtures, the seed KL (sum over sources of E_q[log q - log p_k], nats per sample,
lower is better; one fixed noise draw, q's scales from the encoder) of three sets of means: the
trained encoder's, oracle ratio masks on a sqrt-Hann STFT (the best an STFT-mask encoder can
do), and the true sources. Trained > oracle: the optimiser is stuck (the objective would pay for
a better separation). Trained <= oracle: the priors do not reward separating further. Also prints
each estimate's SI-SDR against every true source (rows estimate, columns source).

    python research/objective_gap.py runs/music4-stft --data data/music4-eval [--sigma 0.02]
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
from rtsep.train.encoder import load_encoder, seed_kl
from rtsep.train.prior import load_prior


def oracle_ratio_masks(src: torch.Tensor, mix: torch.Tensor, n_fft: int = 1024, hop: int = 256) -> torch.Tensor:
    """(M, N, T) estimates N * ISTFT(|S_k| / sum_j |S_j| * STFT(m)): they mix to m."""
    st = STFT(n_fft, hop)
    m, n, t = src.shape
    mag = st.magnitude(st(src.reshape(-1, 1, t))).reshape(m, n, st.bins, -1)
    return st.apply_masks(st(mix), mag / (mag.sum(dim=1, keepdim=True) + 1e-9)) * n


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
        oracle = oracle_ratio_masks(src_t, mix_t)
        rows = {"trained encoder": means, "oracle ratio masks": oracle, "true sources": src_t}
        print(f"seed KL, nats/sample (lower is better), sigma {args.sigma}, {len(src)} held-out mixtures of {t} samples;"
              f" mean log p per source: {' '.join(names)}")
        eps = torch.randn(means.shape, generator=torch.Generator().manual_seed(0))  # one draw for every row
        for name, x in rows.items():
            kl, log_p, _ = seed_kl(priors, x, log_scale, args.sigma, floor=1e-3, eps=eps)
            print(f"  {name:20s} {float(kl.sum()):8.2f}   " + " ".join(f"{v:6.2f}" for v in log_p.numpy()))
    est, ref, mix_np = means.numpy(), src_t.numpy(), mix_t[:, 0].numpy()
    gain = {name: np.median([si_sdr(r, e) - si_sdr(r, np.broadcast_to(m, r.shape)) for r, e, m in zip(ref, x, mix_np)], 0)
            for name, x in (("trained encoder", est), ("oracle ratio masks", oracle.numpy()))}
    print(f"median SI-SDRi (dB) on the same mixtures: {' '.join(names)}")
    for name, v in gain.items():
        print(f"  {name:20s} " + " ".join(f"{x:+6.1f}" for x in v))
    cross = np.mean([[[si_sdr(r[j : j + 1], e[k : k + 1])[0] for j in range(len(names))] for k in range(len(names))]
                     for r, e in zip(ref, est)], axis=0)
    print("SI-SDR (dB) of each trained estimate (rows) against each true source (columns): " + " ".join(names))
    for k, name in enumerate(names):
        print(f"  {name:10s} " + " ".join(f"{v:7.1f}" for v in cross[k]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
