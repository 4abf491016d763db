#!/usr/bin/env python
"""Is a failing clip a search failure or a prior failure? The priors' rating of the truth against the result.

For chosen held-out clips (indices into the clips `rtsep eval separate` uses, as in its --json
per-clip rows), runs a priors-only set's cold chain with swap moves (`rtsep.distill.CHAIN`, as one
batch, each clip cropped to a multiple of the hop), then one sweep of band moves
(`rtsep.langevin.moves.band_moves`), and prints per clip the SI-SDRi per source after each, with
sum_k log p_k at the chain's last sigma (nats), next to that of the true sources. Two more rows say
what the band moves could reach: every spectral region given to the true source holding most of it
(the oracle assignment, hard masks), and that relaxed as the move relaxes its result. If that
relaxed oracle rates above the result, the search missed a better state; if below, the priors rate
the wrong masked estimate above the right one (the truth itself, which no mask reaches, can still
rate highest). Session 16 used it on the clips the band moves leave failing (README). Last, per
source, how far its own prior rates the true source and the result's estimate above the best other
prior (log p_k(x_k) - max_j!=k log p_j(x_k)): a negative margin on a true source is a prior that
does not tell it apart (session 17: the sine prior rates some true triangles above the triangle
prior does).

    python research/search_gap.py models/toy4-basis --data data/toy4-eval77 --clips 1 2 4 5
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from cold_chain import held_out_crops  # research/, this script's own folder

from rtsep.backends import TorchBackend
from rtsep.distill import CHAIN, cold_chain
from rtsep.errors import RtsepError
from rtsep.langevin import scores_from_steps
from rtsep.langevin.labels import cross_margins
from rtsep.langevin.masks import mask_chain, numpy_stft
from rtsep.langevin.moves import band_moves, harden, spectral_regions
from rtsep.metrics import si_sdr, si_sdr_improvement


def oracle_regions(chain: np.ndarray, src: np.ndarray, mix: np.ndarray, regions: int) -> np.ndarray:
    """The chain's estimates with each of the band moves' regions given whole to the true source
    holding most of its power: the assignment the moves search for, before relaxing."""
    stft = numpy_stft(CHAIN.n_fft, CHAIN.hop)
    spec = stft.forward(mix.astype(np.float64))
    held = np.abs(stft.forward(chain.astype(np.float64)))
    truth = (np.abs(stft.forward(src.astype(np.float64))) ** 2).sum(axis=2)
    share = harden(held / (held.sum(axis=1, keepdims=True) + 1e-12), spectral_regions(spec, regions, 1e-4), truth)
    return stft.inverse(src.shape[1] * share * spec[:, None]).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--clips", type=int, nargs="+", required=True, help="Clip indices (as in --json's per_clip rows).")
    ap.add_argument("--split", default="test")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    try:
        be = TorchBackend(args.model, encoder=False)
        src, mix = held_out_crops(be, args.data, max(args.clips) + 1, args.seconds, args.split)
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
    if min(args.clips) < 0 or max(args.clips) >= len(src):
        sys.exit(f"error: --clips must be in 0..{len(src) - 1} ({args.data} {args.split} holds {len(src)} clips)")
    src, mix = src[args.clips], mix[args.clips]
    sigma, scores, stft = CHAIN.sigma_end, scores_from_steps(be.langevin), numpy_stft(CHAIN.n_fft, CHAIN.hop)
    relax = lambda x: mask_chain(x, mix, scores, CHAIN.relax_sigmas(), CHAIN.mask_lr, 0.0,  # noqa: E731
                                 np.random.default_rng(0), stft, warm=1.0)
    start = time.time()
    chain = cold_chain(be, mix, CHAIN, np.random.default_rng(0))
    mid = time.time()
    bands = band_moves(chain, mix, scores, be.log_probs, CHAIN.relax_sigmas(), CHAIN.mask_lr, stft, sigma, 1)
    print(f"chain + swaps {mid - start:.0f} s, one sweep of band moves {time.time() - mid:.0f} s, one core "
          f"({len(args.clips)} clips of {mix.shape[-1] / be.sample_rate:g} s)")
    hard = oracle_regions(chain, src, mix, 24)
    rate = lambda x: be.log_probs(x, np.full(len(x), sigma, np.float32)).sum(axis=1)  # noqa: E731
    print(f"SI-SDRi in dB ({' / '.join(be.sources)}) and sum_k log p_k at sigma {sigma:g} in nats")
    for name, est in (("true sources", src), ("chain + swaps", chain), ("+ band moves", bands),
                      ("oracle regions, hard", hard), ("oracle regions, relaxed", relax(hard))):
        lp = rate(est)
        print(name)
        for i, c in enumerate(args.clips):
            gain = " / ".join(f"{v:+.1f}" for v in si_sdr_improvement(src[i], est[i], mix[i]))
            print(f"  clip {c}: {gain}   log p {lp[i]:.0f}")
    print(f"every prior against every estimate: log p in knats, a row per prior, a column per estimate "
          f"({' / '.join(be.sources)}), then each estimate's own prior minus the best other prior (margin)")
    for name, est in (("true sources", src), ("+ band moves", bands)):
        lp, margin = cross_margins(est, be.log_probs, sigma)
        print(name)
        for i, c in enumerate(args.clips):
            rows = "; ".join(" ".join(f"{v / 1000:+.1f}" for v in row) for row in lp[i])
            print(f"  clip {c}: [{rows}]  margin " + " / ".join(f"{v:+.0f}" for v in margin[i]))
    print("the true source each band-moves estimate matches best (SI-SDR in dB against it)")
    for i, c in enumerate(args.clips):
        match = si_sdr(src[i][None], bands[i][:, None])  # [k, j]: estimate k against true source j
        print(f"  clip {c}: " + ", ".join(f"{be.sources[k]} <- {be.sources[j]} {match[k, j]:+.1f}"
                                            for k, j in enumerate(match.argmax(axis=1))))


if __name__ == "__main__":
    main()
