"""Ideal ratio masks (|S_k| / sum_j |S_j| on the encoder's sqrt-Hann STFT) on held-out clips: the ceiling
of an STFT-mask encoder at a given frame size, in the numbers `rtsep eval separate` reports.

    python research/oracle_masks.py data/m4v2-muse [--n-fft 1024 --hop 256 --clips 40 --seconds 4]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from objective_gap import oracle_ratio_masks  # noqa: E402

from rtsep.metrics import si_sdr_improvement  # noqa: E402
from rtsep.separation_eval import held_out_mixtures  # noqa: E402

SOURCES = ("bass", "drums", "guitar", "piano")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--n-fft", type=int, default=1024)
    ap.add_argument("--hop", type=int, default=256)
    ap.add_argument("--clips", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=4.0)
    a = ap.parse_args()
    torch.set_num_threads(1)
    src, mix = held_out_mixtures(a.data, SOURCES, 16000, "test", a.clips, a.seconds)
    t = src.shape[-1] // a.hop * a.hop
    src, mix = src[..., :t], mix[..., :t]
    with torch.no_grad():
        est = oracle_ratio_masks(torch.from_numpy(src), torch.from_numpy(mix)[:, None], a.n_fft, a.hop).numpy()
    gains = np.array([si_sdr_improvement(src[i], est[i], mix[i]) for i in range(len(src))])
    print(f"{a.data} n_fft {a.n_fft} hop {a.hop}, {len(src)} clips: mean SI-SDRi "
          + " / ".join(f"{g:+.2f}" for g in gains.mean(0)))


if __name__ == "__main__":
    main()
