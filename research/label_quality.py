#!/usr/bin/env python
"""How good a `rtsep data distill` set's labels are: SI-SDRi against the excerpts the mixtures were made of.

Measurement only. Nothing trains on those excerpts: `rtsep data distill` mixes and drops them, and
this tool redraws them from the set's manifest (mixture i depends only on (seed, i)) to say how
many labels the distilled encoder learns from are wrong. With --encoder, also how that model's
encoder fits those training mixtures, against the labels and against the excerpts (does it fit
and not generalise, or not even fit?).

    python research/label_quality.py data/toy4-distill --data data/toy4 [--encoder runs/t4d]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from rtsep.datasets.folder import SourceSet
from rtsep.distill import DistillMixtures, clip_paths, read_distill_manifest, training_excerpts
from rtsep.errors import RtsepError
from rtsep.metrics import si_sdr_improvement
from rtsep.train.encoder import load_encoder


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("distilled", type=Path)
    ap.add_argument("--data", type=Path, required=True, help="The source-only set the mixtures were drawn from.")
    ap.add_argument("--encoder", type=Path, help="Also score this model directory's encoder on the same mixtures.")
    args = ap.parse_args()
    torch.set_num_threads(1)
    enc = load_encoder(args.encoder) if args.encoder else None
    m = read_distill_manifest(args.distilled)
    if m is None:
        raise RtsepError(f"{args.distilled} is not a `rtsep data distill` set")
    mixtures = DistillMixtures(**m["mixtures"])
    sources, sr = tuple(m["sources"]), m["sample_rate"]
    sets = [SourceSet.load(args.data, s, sr, "train") for s in sources]
    imp, fit_labels, fit_true = [], [], []
    for i in range(mixtures.clips):
        try:
            est = np.stack([sf.read(p, dtype="float32")[0] for p in clip_paths(args.distilled, sources, i)])
        except (OSError, RuntimeError) as exc:  # a missing or unreadable label (soundfile raises RuntimeError)
            raise RtsepError(f"clip {i}: {exc}") from None
        src = training_excerpts(sets, i, est.shape[-1], mixtures)
        if np.abs(src.mean(axis=0) - est.mean(axis=0)).max() > 1e-4:
            raise RtsepError(f"clip {i}: the labels do not sum to the redrawn mixture (other --data or seed?)")
        mix = src.mean(axis=0)
        imp.append(si_sdr_improvement(src, est, mix))
        if enc is not None:
            with torch.no_grad():
                out = enc(torch.from_numpy(mix)[None, None])[0][0].numpy()
            fit_labels.append(si_sdr_improvement(est, out, mix))
            fit_true.append(si_sdr_improvement(src, out, mix))
    print(f"{args.distilled}: {len(imp)} labelled mixtures, SI-SDRi in dB ({', '.join(sources)})")
    for name, rows in (("labels vs excerpts", imp), (f"{args.encoder} encoder vs labels", fit_labels),
                       (f"{args.encoder} encoder vs excerpts", fit_true)):
        if rows:
            a = np.array(rows)
            print(f"{name}: median {np.round(np.median(a, 0), 1).tolist()}  mean {np.round(a.mean(0), 1).tolist()}  "
                  f"share above 10 dB {np.round((a > 10).mean(0), 2).tolist()}")


if __name__ == "__main__":
    try:
        main()
    except RtsepError as exc:
        sys.exit(f"error: {exc}")
