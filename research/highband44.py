"""One-off (session 25): full-band SI-SDRi per source at 44.1 kHz, the rule's high-band share vs the learned one.

    python research/highband44.py data/m44-muse models/music4 runs/m4hb
(data: `rtsep data music4 DIR --heldout --clips 16 --seconds 4 --sample-rate 44100 --seed 99 --meters 4/4,3/4`)
"""
import sys
from pathlib import Path

import numpy as np
import soundfile as sf

import rtsep
from rtsep.metrics import si_sdr_improvement

data, models = Path(sys.argv[1]), sys.argv[2:]
SOURCES = ("bass", "drums", "guitar", "piano")
files = sorted((data / "test" / "bass").glob("*.wav"))
for model in models:
    sep = rtsep.Separator.load(model, backend="onnx")
    rows = []
    for f in files:
        src = np.stack([sf.read(str(data / "test" / s / f.name), dtype="float32")[0] for s in SOURCES])
        mix = src.mean(axis=0)
        out = sep.separate(mix[None], 44100)[:, 0] * len(SOURCES)
        rows.append(si_sdr_improvement(src, out, mix))
    m = np.mean(rows, axis=0)
    print(model, " / ".join(f"{v:+.2f}" for v in m))
