#!/usr/bin/env python
"""Does the separation objective rank the true sources first? The energy-bias diagnostic.

For held-out mixtures, scores candidate separations with the sum over sources of the priors'
`shape_log_prob_sum` per sample (what the seed objective and Langevin optimise): the true
sources, copies of the mixture, half-true, a permutation, loud estimates that cancel in the
mixture, all signal in one source with faint invented others, and all signal in one source with
silence elsewhere. `--raw` scores with the raw log-density instead (the session-1 objective).
`--encoders RUN...` adds trained encoders' means as candidates; `--band-weight W --solo DIR` adds a
column with the band-shape prior (`rtsep train encoder --band-weight`) fitted to DIR's solo
excerpts; every candidate also shows each source's share of energy above 2 kHz (Session 18: the
seed objective's best point under the shipped music4 priors strips it from three sources), and
each encoder the median std of its q. `--margins`: each estimate's own prior's log p minus the best
other prior's (`rtsep.langevin.labels.cross_margins`).

    python research/landscape.py models/music4 --data data/music4-eval [--sigma 0.02] [--raw]
    python research/landscape.py models/music4 --data data/music4-eval --samples 16384 --encoders runs/m4s \
        --band-weight 0.1 --solo data/music4
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np
import torch

from rtsep.bands import BandPrior, band_shares
from rtsep.card import read_card
from rtsep.datasets.folder import SourceSet
from rtsep.errors import RtsepError
from rtsep.langevin.labels import cross_margins
from rtsep.separation_eval import held_out_mixtures
from rtsep.train.encoder import load_encoder
from rtsep.train.prior import load_prior


def candidates(src: np.ndarray, mix: np.ndarray, names: tuple[str, ...]) -> dict[str, np.ndarray]:
    n, m = src.shape[1], mix[:, None]
    loud = np.roll(src, 2, axis=0)[:, 0] * 3
    cancel = src.copy()
    cancel[:, 0] += loud
    cancel[:, 1] -= loud
    faint = np.zeros_like(src)
    faint[:, 0] = n * mix
    faint[:, 1:] = 0.01 * np.roll(src, 3, axis=0)[:, 1:]
    out = {"true": src, "copy": np.broadcast_to(m, src.shape), "half-true": 0.5 * src + 0.5 * m,
           "permuted": np.roll(src, 1, axis=1), "cancelling": cancel, "all+faint": faint}
    for k in range(n):
        a = np.zeros_like(src)
        a[:, k] = n * mix
        out[f"all-in-{names[k]}"] = a
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("--data", required=True)
    ap.add_argument("--sigma", type=float, default=0.02)
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--samples", type=int, default=8192)
    ap.add_argument("--raw", action="store_true", help="score with the raw log-density (no level normalisation)")
    ap.add_argument("--encoders", nargs="*", default=[], help="model dirs whose encoder means join the candidates")
    ap.add_argument("--band-weight", type=float, default=0.0, help="also score with the band-shape prior at this weight")
    ap.add_argument("--solo", help="source-only data set the band-shape prior is fitted to (its train split)")
    ap.add_argument("--margins", action="store_true", help="also each estimate's own prior's log p minus the best "
                    "other prior's (median over mixtures, per source; N times the prior passes)")
    args = ap.parse_args()
    if args.band_weight and not args.solo:
        ap.error("--band-weight needs --solo")
    torch.manual_seed(0)
    try:
        card = read_card(args.model_dir)
        names = tuple(card.get("priors", {}))
        if not names:
            raise RtsepError(f"{args.model_dir} holds no trained priors")
        priors = [load_prior(args.model_dir, s).requires_grad_(False) for s in names]
        src, mix = held_out_mixtures(args.data, names, card["sample_rate"], "test", args.clips, None)
        encoders = [(Path(e).name, load_encoder(Path(e))) for e in args.encoders]
        bands = None
        if args.band_weight:
            sets = [SourceSet.load(Path(args.solo), s, card["sample_rate"], "train") for s in names]
            bands = BandPrior.fit(sets, np.random.default_rng(0), args.samples, card["sample_rate"])
    except RtsepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if args.raw:
        for p in priors:
            p.cfg = dataclasses.replace(p.cfg, level=0.0)
    src, mix = src[..., : args.samples], mix[..., : args.samples]
    cands, widths = candidates(src, mix, names), {}
    for name, enc in encoders:
        with torch.no_grad():
            mean, log_scale = enc(torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[:, None])
        cands[name], widths[name] = mean.numpy(), torch.exp(log_scale).median(dim=-1).values.mean(dim=0).numpy()
    length = src.shape[-1]

    def log_probs(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """(B, N, T) -> (B, N) nats per sample, prior k on slot k (`rtsep.langevin.LogProbsFn`)."""
        xt = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        with torch.no_grad():
            return torch.stack([p.shape_log_prob_sum(xt[:, k : k + 1], float(sigma[0])) / length
                                for k, p in enumerate(priors)], 1).numpy()

    print(f"summed log-density per sample at sigma {args.sigma} ({'raw' if args.raw else 'level-normalised'}), "
          f"{len(src)} mixtures; per source: {' '.join(names)}; "
          + (f"with the band-shape prior at weight {args.band_weight}; " if bands else "")
          + "share of energy above 2 kHz per source"
          + ("; median margin over the best other prior per source" if args.margins else ""))
    for name, x in cands.items():
        x = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))
        x = (x + 1e-3 * torch.randn_like(x)).numpy()  # the encoder's noise floor: no estimate is exactly silent
        v = log_probs(x, np.full(len(x), args.sigma, np.float32)).mean(0)
        high = band_shares(torch.from_numpy(x), card["sample_rate"], (0.0, 2000.0))[..., 1].mean(0).numpy()
        band = f"{v.sum() - args.band_weight * float(bands.nll(torch.from_numpy(x)).sum(1).mean()):8.2f}   " if bands else ""
        margin = ""
        if args.margins:
            margin = "   " + " ".join(f"{m:+6.3f}" for m in np.median(cross_margins(x, log_probs, args.sigma)[1], axis=0))
        print(f"  {name:16s} {v.sum():8.2f}   {band}" + " ".join(f"{t:7.2f}" for t in v)
              + "   " + " ".join(f"{h:5.3f}" for h in high) + margin)
    for name, w in widths.items():  # what the seed KL's samples add to the means the priors are shown
        print(f"  {name}: q's std, median over each estimate, per source: " + " ".join(f"{v:.3f}" for v in w))
    return 0


if __name__ == "__main__":
    sys.exit(main())
