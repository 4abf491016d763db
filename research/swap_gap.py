#!/usr/bin/env python
"""Do the priors prefer the true sources to the same sources with two of them swapped whole?

On held-out mixtures (the clips `rtsep eval separate` uses), the summed level-normalised
log-density sum_k log p_k(s_k + sigma eps) of the true sources minus that of the same sources with
A and B exchanged, per clip, in nats; positive means the priors rank the truth first, so a chain
that ends swapped is stuck, not misled (README, "Session 9").

    python research/swap_gap.py runs/t4v2 --data data/toy4-eval --swap sine triangle
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from rtsep.backends import TorchBackend
from rtsep.errors import RtsepError
from rtsep.separation_eval import held_out_mixtures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--swap", nargs=2, required=True, metavar=("A", "B"))
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.05, 0.01])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    be = TorchBackend(args.model)
    for name in args.swap:
        if name not in be.sources:
            raise RtsepError(f"{name!r} is not a source of {args.model} ({', '.join(be.sources)})")
    a, b = (be.sources.index(name) for name in args.swap)
    src, _ = held_out_mixtures(args.data, be.sources, be.sample_rate, "test", args.clips, args.seconds)
    src = src[..., : src.shape[-1] // 16 * 16]
    swapped = src.copy()
    swapped[:, [a, b]] = src[:, [b, a]]
    rng = np.random.default_rng(0)
    for sigma in args.sigmas:
        eps = sigma * rng.standard_normal(src.shape).astype(np.float32)
        sig = np.full(len(src), sigma, np.float32)
        gap = be.log_probs(src + eps, sig).sum(1) - be.log_probs(swapped + eps, sig).sum(1)
        print(f"sigma {sigma:g}: truth minus {args.swap[0]}<->{args.swap[1]} swapped, nats per clip: "
              f"{np.round(gap).astype(int).tolist()}")


if __name__ == "__main__":
    try:
        main()
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
