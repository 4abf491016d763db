#!/usr/bin/env python
"""Does each prior prefer its own source to itself with another source leaked in? The leak-gap diagnostic.

For every prior k, held-out excerpts of source k and the same excerpts with an excerpt of each other
source j leaked in at relative amplitude b (both at unit RMS, the sum brought back to the own
RMS, so only the waveform's shape differs: `rtsep.train.prior.leak`). Prints, per sigma and b, the
median of log p_k(own) - log p_k(leaked) in nats per sample (level-normalised, what the separator
optimises) and the share of pairs where the prior prefers the leaked one. b = 1000 is, in effect,
the other source alone. Session 8 trained the priors on this gap (`rtsep train prior --contrast`).

    python research/leak_gap.py runs/m4c --data data/music4-eval [--sources bass drums]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from rtsep.card import read_card
from rtsep.datasets.folder import SourceSet
from rtsep.errors import RtsepError
from rtsep.prior_eval import held_out_batch
from rtsep.train.prior import leak, load_prior

LEAKS = (0.1, 0.25, 1.0, 4.0, 1000.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--sources", nargs="*", help="priors to test (default: all)")
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.02, 0.1])
    ap.add_argument("--clips", type=int, default=12)
    ap.add_argument("--segment", type=int, default=16384)
    args = ap.parse_args()
    card = read_card(args.model)
    sources = list(card.get("priors", {}))
    seg = args.segment - args.segment % 16
    clean = {s: held_out_batch(SourceSet.load(args.data, s, card["sample_rate"], "test"), args.clips, seg, seed=5)
             for s in sources}
    for k in args.sources or sources:
        prior = load_prior(args.model, k)
        for sigma in args.sigmas:
            gen = torch.Generator().manual_seed(0)

            def loglik(x: np.ndarray) -> np.ndarray:
                x = torch.from_numpy(x)[:, None]
                with torch.no_grad():
                    noisy = x + sigma * torch.randn(x.shape, generator=gen)
                    return (prior.shape_log_prob_sum(noisy, sigma) / x.shape[-1]).numpy()

            own = loglik(clean[k])
            cells = []
            for b in LEAKS:
                gaps = np.concatenate([own - loglik(leak(clean[k], clean[j], b)) for j in sources if j != k])
                cells.append(f"b={b:g}: {np.median(gaps):+.3f} ({(gaps < 0).mean() * 100:.0f}% <0)")
            print(f"{k} sigma {sigma:g}: " + " | ".join(cells), flush=True)


if __name__ == "__main__":
    try:
        main()
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
