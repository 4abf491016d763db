"""One-off (sessions 22 and 24): the share of a drums-only high band (above 8 kHz, 44.1 kHz input) that lands in
music4's drums stem, over three FluidR3 songs (the fixture of tests/test_fullband.py, seeds 3-5).

    python research/highband_share.py             # session 22: guide bands from 0.55 or 0.7 of Nyquist, sharpening 2-4
    python research/highband_share.py --session25 # the shipped music4 (session 25: its learned share, highband.npz)
    python research/highband_share.py --session24 --model DIR  # DIR: music4 without highband.npz (the rule):
                                                  # the session-24 guide; a 6.8-7.8 kHz guide; that plus per-source
                                                  # air ratios (energy above 8 kHz per unit of guide-band energy,
                                                  # measured on 16 training-bank songs at 44.1 kHz, printed first)
"""
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

import rtsep
import rtsep.fullband as fb
from rtsep.datasets.music4 import make_music4

SR = 44100
SOURCES = ("bass", "drums", "guitar", "piano")


def songs(seeds=(3, 4, 5)):
    """(mix, stems) per seed: drums whole, the other stems low-passed at 7.5 kHz."""
    f = np.fft.rfftfreq(4 * SR, 1 / SR)

    def lp(x):
        s = np.fft.rfft(x)
        s[f > 7500] = 0
        return np.fft.irfft(s, x.size).astype(np.float32)

    for seed in seeds:
        d = Path(tempfile.mkdtemp())
        make_music4(d / "d", 1, 4.0, SR, seed=seed, generator="v1", heldout=True,
                    soundfont=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"))
        stems = {s: sf.read(str(d / "d" / "test" / s / "00000.wav"), dtype="float32")[0] for s in SOURCES}
        yield (stems["drums"] + sum(lp(stems[s]) for s in SOURCES if s != "drums")) / 4


MODEL = sys.argv[sys.argv.index("--model") + 1] if "--model" in sys.argv else "music4"


def drums_share(mix, **load):
    out = rtsep.Separator.load(MODEL, backend="onnx", **load).separate(mix[None], SR)
    f = np.fft.rfftfreq(mix.size, 1 / SR)
    e = [float((np.abs(np.fft.rfft(out[k, 0])[f > 8000]) ** 2).sum()) for k in range(len(out))]
    return e[SOURCES.index("drums")] / sum(e)


def air_ratios():
    """Energy above 8 kHz over energy at 5.6-7.4 kHz per source, 16 training-bank v2 songs at 44.1 kHz."""
    d = Path(tempfile.mkdtemp())
    make_music4(d, 16, 4.0, SR, seed=7, meters=("4/4", "3/4"))
    ratios = []
    for src in SOURCES:
        hi = mid = 0.0
        for w in sorted((d / "train" / src).glob("*.wav")):
            x = sf.read(str(w), dtype="float64")[0]
            p, f = np.abs(np.fft.rfft(x)) ** 2, np.fft.rfftfreq(x.size, 1 / SR)
            hi, mid = hi + p[f > 8000].sum(), mid + p[(f > 5600) & (f < 7400)].sum()
        ratios.append(hi / mid)
    return np.array(ratios)


def guided(low, high, air=None):
    """Patch HighBandShare: a guide band from `low` to `high` of the model's Nyquist, energies times `air`."""
    init, call = fb.HighBandShare.__init__, fb.HighBandShare.__call__

    def new_init(self, sample_rate, model_rate=16000, **kw):
        init(self, sample_rate, model_rate, **kw)
        self.fir = fb.bandpass(low * model_rate / 2, high * model_rate / 2, sample_rate, len(self.fir))

    def new_call(self, stems, residual):
        if air is None:
            return call(self, stems, residual)
        return call(self, stems * np.sqrt(air)[:, None, None].astype(np.float32), residual)

    fb.HighBandShare.__init__, fb.HighBandShare.__call__ = new_init, new_call
    return init, call


if "--session25" in sys.argv:
    print(MODEL, [round(drums_share(m), 3) for m in songs()])
elif "--session24" in sys.argv:
    mixes = list(songs())
    air = air_ratios()
    print("air ratios", dict(zip(SOURCES, np.round(air, 2))))
    for name, low, high, a in (("shipped 5.6-7.4 kHz", 0.7, 0.92, None), ("6.8-7.8 kHz", 0.85, 0.98, None),
                               ("6.8-7.8 kHz + air", 0.85, 0.98, air)):
        init, call = guided(low, high, a)
        print(name, [round(drums_share(m), 3) for m in mixes])
        fb.HighBandShare.__init__, fb.HighBandShare.__call__ = init, call
else:
    res = {}
    for mix in songs():
        for sh in (2.0, 3.0, 4.0):
            for lo in (0.55, 0.7):
                orig = fb.HighBandShare.__init__.__defaults__
                fb.HighBandShare.__init__.__defaults__ = (16000, 0.02, 129, sh)
                init, call = guided(lo, 0.92)
                res.setdefault((sh, lo), []).append(drums_share(mix, steps=0))
                fb.HighBandShare.__init__, fb.HighBandShare.__call__ = init, call
                fb.HighBandShare.__init__.__defaults__ = orig
    for k, v in res.items():
        print(k, np.round(v, 3))
