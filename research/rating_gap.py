#!/usr/bin/env python
"""At which noise level do the priors rate a good separation above a bad one?

On held-out mixtures (the clips `rtsep eval separate` uses), prints per clip the summed
level-normalised log-density sum_k log p_k,sigma(s_k) in nats, at each --sigmas level, of
  - the true sources,
  - the oracle ratio mask's estimates (|S_k| / sum_j |S_j| applied to the mixture's STFT: the best
    a mask chain can do, with the artifacts every mask leaves),
  - with --chain-temperature T, the cold-started mask chain's result (200 steps, relabelling every
    20, as in the README's toy4 rows),
each with its SI-SDRi per source. Session 10 used it to see why neither more chains nor a rating
at sigma 0.01 fixes sine/triangle (README, "Session 10").

    python research/rating_gap.py runs/t4v3 --data data/toy4-eval [--chain-temperature 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from cold_chain import cold_chain, held_out_crops  # research/, this script's own folder
from objective_gap import oracle_ratio_masks

from rtsep.backends import TorchBackend
from rtsep.errors import RtsepError
from rtsep.metrics import si_sdr_improvement


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.01, 0.03, 0.1])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--chain-temperature", type=float, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    be = TorchBackend(args.model)
    src, mix = held_out_crops(be, args.data, args.clips, args.seconds)
    estimates = {"truth": src, "oracle mask": oracle_ratio_masks(torch.from_numpy(src), torch.from_numpy(mix[:, None])).numpy()}
    if args.chain_temperature is not None:
        estimates[f"chain T={args.chain_temperature:g}"] = cold_chain(
            be, mix, temperature=args.chain_temperature, relabel_every=20)
    print(f"{args.model}: sum_k log p_k in nats per clip; sources {', '.join(be.sources)}")
    for name, x in estimates.items():
        imp = np.array([si_sdr_improvement(s, e, m) for s, e, m in zip(src, x, mix)])
        print(f"{name}: SI-SDRi per clip {np.round(imp, 1).tolist()}")
        for sigma in args.sigmas:
            rated = be.log_probs(x, np.full(len(x), sigma, np.float32)).sum(axis=1)
            print(f"  sigma {sigma:g}: {np.round(rated).astype(int).tolist()}")


if __name__ == "__main__":
    try:
        main()
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
