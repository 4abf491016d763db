#!/usr/bin/env python
"""Is a failing clip a search failure or a prior failure? The priors' rating of the truth against the result.

For chosen held-out clips (indices into the clips `rtsep eval separate` uses), runs a priors-only
set's cold chain with swap moves (`rtsep.distill.CHAIN`, as one batch, each clip cropped to a
multiple of the hop), then one sweep of band moves (`rtsep.mask_langevin.band_moves`), and prints
per clip the SI-SDRi per source after each with sum_k log p_k at sigma 0.01 (nats), next to that of
the true sources. Where the truth rates higher, the priors prefer it and the search missed it.
Session 16 used it on the seed-77 clips the band moves leave failing (README).

    python tools/search_gap.py models/toy4-basis --data data/toy4-eval77 --clips 1 2 4 5
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rtsep.backends import TorchBackend  # noqa: E402
from rtsep.distill import CHAIN  # noqa: E402
from rtsep.distill import cold_chain  # noqa: E402
from rtsep.errors import RtsepError  # noqa: E402
from rtsep.langevin import scores_from_steps  # noqa: E402
from rtsep.mask_langevin import band_moves, numpy_stft  # noqa: E402
from rtsep.metrics import si_sdr_improvement  # noqa: E402
from rtsep.separation_eval import held_out_mixtures  # noqa: E402


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
        src, mix = held_out_mixtures(args.data, be.sources, be.sample_rate, args.split, max(args.clips) + 1, args.seconds)
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
    t = mix.shape[-1] // CHAIN.hop * CHAIN.hop
    src, mix = src[args.clips, :, :t], mix[args.clips, :t]
    rate = lambda x: be.log_probs(x, np.full(len(x), 0.01, np.float32)).sum(axis=1)  # noqa: E731
    chain = cold_chain(be, mix, CHAIN, np.random.default_rng(0))
    stft, sigmas = numpy_stft(CHAIN.n_fft, CHAIN.hop), np.geomspace(CHAIN.swap_sigma, CHAIN.sigma_end, CHAIN.swap_steps)
    bands = band_moves(chain, mix, scores_from_steps(be.langevin), be.log_probs, sigmas, CHAIN.mask_lr, stft, 0.01, 1)
    truth = rate(src)
    print(f"SI-SDRi in dB ({' / '.join(be.sources)}) and sum_k log p_k at sigma 0.01 in nats")
    for name, est in (("chain + swaps", chain), ("+ band moves", bands)):
        lp = rate(est)
        print(name)
        for i, c in enumerate(args.clips):
            gain = " / ".join(f"{v:+.1f}" for v in si_sdr_improvement(src[i], est[i], mix[i]))
            print(f"  clip {c}: {gain}   log p {lp[i]:.0f} (truth {truth[i]:.0f}: {'search' if truth[i] > lp[i] else 'prior'} failure if it fails)")


if __name__ == "__main__":
    main()
