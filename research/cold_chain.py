#!/usr/bin/env python
"""The cold-started mask chain on a batch of whole held-out clips, with per-clip SI-SDRi and pitch.

BASIS's start (every source an equal share of the mixture, no encoder), annealed mask-space
Langevin (`rtsep.langevin.masks.mask_chain`), optionally relabelling every J steps. All clips run
as one batch and each is cropped to a multiple of the STFT hop, so no block padding is involved;
prints each clip's SI-SDRi per source with every source's strongest frequency (which sources a
failing clip confuses; with --project, how each estimate blends the true sources), then median
and mean. Session 9 used it to find the relabelling move; session 10 to see blends, not swaps;
session 11 (--partials) to see which estimate holds each true partial, and to try --swaps.
`held_out_crops` and `cold_chain` also serve research/rating_gap.py.

    python research/cold_chain.py runs/t4v2 --data data/toy4-eval [--relabel-every 20] [--steps 200] [--seed 1] [--project]
        [--partials] [--swaps 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from rtsep.backends import TorchBackend
from rtsep.distill import CHAIN
from rtsep.distill import cold_chain as distill_chain
from rtsep.errors import RtsepError
from rtsep.langevin.masks import numpy_stft
from rtsep.metrics import si_sdr_improvement
from rtsep.separation_eval import held_out_mixtures


def held_out_crops(be: TorchBackend, data: Path, clips: int, seconds: float,
                   split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """(sources, mixtures) of `rtsep eval separate`'s held-out clips, cropped to a multiple of the hop."""
    src, mix = held_out_mixtures(data, be.sources, be.sample_rate, split, clips, seconds)
    t = mix.shape[-1] // 256 * 256
    return src[..., :t], mix[..., :t]


def cold_chain(be: TorchBackend, mix: np.ndarray, steps: int = 200, sigma_start: float = 0.3, sigma_end: float = 0.01,
               mask_lr: float = 0.1, temperature: float = 1.0, relabel_every: int = 0, seed: int = 0,
               polish: int = 0, swaps: int = 0, swap_steps: int = 40, swap_sigma: float = 0.05) -> np.ndarray:
    """mix (B, T) -> (B, N, T): the mask chain from every source an equal share, all clips one batch;
    then `swaps` rounds of swap-and-relax moves rated at `sigma_end` (`rtsep.distill.cold_chain`)."""
    chain = replace(CHAIN, steps=steps, sigma_start=sigma_start, sigma_end=sigma_end, mask_lr=mask_lr,
                    temperature=temperature, relabel_every=relabel_every, polish=polish, swaps=swaps,
                    swap_steps=swap_steps, swap_sigma=swap_sigma)
    return distill_chain(be, mix, chain, np.random.default_rng(seed))


def print_partials(src: np.ndarray, out: np.ndarray, mix: np.ndarray, sources: list[str], sample_rate: int,
                   top: int = 3) -> None:
    """Per true source, its `top` strongest partials (peak STFT bins at least 3 bins apart) and how the
    estimates share each (time-averaged magnitude over the mixture's): who holds which partial."""
    st = numpy_stft(1024, 256)
    mag = lambda x: np.abs(st.forward(x.astype(np.float64))).mean(axis=-2)  # noqa: E731  (..., F)
    m, s, o = mag(mix) * len(sources), mag(src), mag(out)  # estimates are N x their mask's share of m
    for k, name in enumerate(sources):
        peaks: list[int] = []
        for f in np.argsort(s[k])[::-1]:
            if len(peaks) == top:
                break
            if all(abs(int(f) - q) >= 3 for q in peaks):
                peaks.append(int(f))
        for f in sorted(peaks):
            shares = " ".join(f"{sources[j]} {o[j, f] / (m[f] + 1e-12):.2f}" for j in range(len(sources)))
            print(f"  {name:>9s} bin {f:3d} ({f * sample_rate / 1024:5.0f} Hz, own share {s[k, f] / (m[f] + 1e-12):.2f}): "
                  f"{shares}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--sigma-start", type=float, default=0.3)
    ap.add_argument("--sigma-end", type=float, default=0.01)
    ap.add_argument("--mask-lr", type=float, default=0.1)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--relabel-every", type=int, default=0)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0, help="The chain's noise.")
    ap.add_argument("--polish", type=int, default=0, help="The last P steps without noise.")
    ap.add_argument("--swaps", type=int, default=0, help="Rounds of swap-and-relax moves after the chain.")
    ap.add_argument("--partials", action="store_true",
                    help="Also print, per true source, how the estimates share its three strongest partials.")
    ap.add_argument("--project", action="store_true",
                    help="Also print each estimate's least-squares weights on the true sources (rows: estimates).")
    args = ap.parse_args()
    torch.set_num_threads(1)
    be = TorchBackend(args.model)
    src, mix = held_out_crops(be, args.data, args.clips, args.seconds)
    t = mix.shape[-1]
    t0 = time.time()
    out = cold_chain(be, mix, args.steps, args.sigma_start, args.sigma_end, args.mask_lr, args.temperature,
                     args.relabel_every, args.seed, args.polish, args.swaps)
    imp = np.array([si_sdr_improvement(s, o, m) for s, o, m in zip(src, out, mix)])
    print(f"{args.model}: {args.steps} steps, relabel every {args.relabel_every}, {args.swaps} swap rounds, "
          f"{time.time() - t0:.0f} s; "
          f"sources {', '.join(be.sources)}")
    for i, (a, s) in enumerate(zip(imp, src)):
        f0 = [np.argmax(np.abs(np.fft.rfft(x))) * be.sample_rate / t for x in s]
        print(f"clip {i}: SI-SDRi {np.round(a, 1).tolist()}  peak Hz {np.round(f0).astype(int).tolist()}")
        if args.project:  # a blend (0.3 of one source, 0.6 of another) versus a swap (a permutation)
            print(f"  weights {np.round(np.linalg.lstsq(s.T, out[i].T, rcond=None)[0].T.astype(np.float64), 2).tolist()}")
        if args.partials:  # who holds which partial: session 11's stolen-partials reading
            print_partials(s, out[i], mix[i], list(be.sources), be.sample_rate)
    print(f"median {np.round(np.median(imp, 0), 1).tolist()}  mean {np.round(imp.mean(0), 1).tolist()}")


if __name__ == "__main__":
    try:
        main()
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
