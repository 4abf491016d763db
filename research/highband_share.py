"""One-off (session 22): the share of a drums-only high band (above 8 kHz, 44.1 kHz input) that lands in
music4's drums stem, for guide bands starting at 0.55 or 0.7 of the model's Nyquist and sharpening 2-4,
over three FluidR3 songs (the fixture of tests/test_fullband.py, seeds 3-5). Run: python research/highband_share.py
"""
import numpy as np
import soundfile as sf
import tempfile
from pathlib import Path
import rtsep
import rtsep.fullband as fb
from rtsep.datasets.music4 import make_music4
SR=44100
res={}
for seed in (3,4,5):
    d=Path(tempfile.mkdtemp())
    make_music4(d/"d",1,4.0,SR,seed=seed,generator="v1",heldout=True,soundfont=Path("/usr/share/sounds/sf2/FluidR3_GM.sf2"))
    stems={s: sf.read(str(d/"d"/"test"/s/"00000.wav"),dtype="float32")[0] for s in ("bass","drums","guitar","piano")}
    f=np.fft.rfftfreq(4*SR,1/SR)
    def lp(x):
        S=np.fft.rfft(x); S[f>7500]=0; return np.fft.irfft(S,x.size).astype(np.float32)
    mix=(stems["drums"]+sum(lp(stems[s]) for s in ("bass","guitar","piano")))/4
    for sh in (2.0,3.0,4.0):
        for lo in (0.55,0.7):
            orig=fb.HighBandShare.__init__.__defaults__
            fb.HighBandShare.__init__.__defaults__=(16000,0.02,129,sh)
            import rtsep.fullband
            old=fb.bandpass
            fb.bandpass=lambda low,high,sr,t,lo=lo,old=old: old(lo/0.55*low,high,sr,t)
            sep=rtsep.Separator.load("music4",backend="onnx",steps=0)
            out=sep.separate(mix[None],SR)
            fb.bandpass=old
            def hb(x):
                S=np.fft.rfft(x); return float((np.abs(S[f>8000])**2).sum())
            e=[hb(out[k,0]) for k in range(4)]
            res.setdefault((sh,lo),[]).append(e[1]/sum(e))
for k,v in res.items(): print(k, np.round(v,3))
