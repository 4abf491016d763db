"""Does averaging runs on shifted copies of the input (the "shift trick") raise SI-SDRi?

python research/shift_average.py MODEL DATA --steps K --shifts 4   (prints mean SI-SDRi per source for
S = 1, 2, .., --shifts: the average of the first S shifted runs; shifts spread over one block hop)
"""

from __future__ import annotations

import argparse

import numpy as np

from rtsep.metrics import si_sdr_improvement
from rtsep.separation_eval import held_out_mixtures
from rtsep.separator import Separator

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("data")
ap.add_argument("--steps", type=int, default=None)
ap.add_argument("--shifts", type=int, default=4)
ap.add_argument("--clips", type=int, default=40)
ap.add_argument("--spread", type=int, default=256, help="samples the offsets spread over (the STFT hop)")
a = ap.parse_args()
sep = Separator.load(a.model, backend="onnx", steps=a.steps)
src, mix = held_out_mixtures(a.data, sep.sources, sep.sample_rate, "test", a.clips, 4.0)
n, t = len(sep.sources), mix.shape[-1]
offsets = [j * (a.spread // a.shifts) for j in range(a.shifts)]
imp = np.zeros((a.shifts, len(src), n))
for i, (s, m) in enumerate(zip(src, mix)):
    acc = np.zeros((n, t))
    for j, d in enumerate(offsets):
        est = sep.separate(np.pad(m, (d, 0))[None], sep.sample_rate)[:, 0, d:] * n
        acc += est
        imp[j, i] = si_sdr_improvement(s, acc / (j + 1), m)
print(f"{a.model} K={sep.run.steps} {a.data} offsets {offsets}")
for j in range(a.shifts):
    print(f"S={j + 1}: " + " / ".join(f"{v:+.2f}" for v in imp[j].mean(axis=0)))
