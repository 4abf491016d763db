"""`rtsep eval separate`: SI-SDR and SI-SDR improvement per source on held-out mixtures.

A mixture is the mean of the sources of one held-out clip index (for music4 the stems of one
song, so the mix is musically coherent). Three rows are measured on the same mixtures: the
mixture itself as every source's estimate (baseline), the encoder mean alone (K = 0), and the
encoder followed by K Langevin steps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .card import update_card
from .datasets.folder import SourceSet
from .engine import BlockGeometry
from .metrics import si_sdr, si_sdr_improvement
from .separator import Separator, resolve_model


def held_out_mixtures(data: Path, sources: tuple[str, ...], sample_rate: int, split: str, clips: int,
                      seconds: float | None) -> tuple[np.ndarray, np.ndarray]:
    """(sources (M, N, T), mixtures (M, T)) from clip i of every source, mixed by mean."""
    sets = [SourceSet.load(data, s, sample_rate, split) for s in sources]
    count = min(clips, *(len(s.clips) for s in sets))
    t = min(len(c) for s in sets for c in s.clips[:count])
    if seconds:
        t = min(t, int(seconds * sample_rate))
    src = np.stack([np.stack([s.clips[i][:t] for s in sets]) for i in range(count)]).astype(np.float32)
    return src, src.mean(axis=1)


def evaluate_separation(model: str | Path, data: Path, steps: int = 4, split: str = "test", clips: int = 40,
                        seconds: float | None = None, backend: str = "torch", seed: int = 0, progress=None,
                        langevin: dict | None = None, whole: bool = False) -> dict:
    """`per_clip[row]["si_sdri"][i][k]` is clip i's improvement for source k, so the clips that fail can be
    found. `whole`: each clip is one block (no streaming context or lookahead, padded only to the
    encoder's stride), so a short clip is not judged inside a window that is mostly silence."""
    model_dir = resolve_model(model)
    sep_k = Separator.load(model_dir, backend=backend, steps=steps, seed=seed)
    src, mix = held_out_mixtures(data, sep_k.sources, sep_k.sample_rate, split, clips, seconds)
    if whole:
        stride = sep_k.backend.stride
        geometry = BlockGeometry(hop=-(-mix.shape[-1] // stride) * stride, context=0, lookahead=0, crossfade=0)
        sep_k = Separator(sep_k.backend, replace(sep_k.run, geometry=geometry))
    if langevin:
        sep_k = Separator(sep_k.backend, replace(sep_k.run, langevin=replace(sep_k.run.langevin, **langevin)))
    sep_0 = Separator(sep_k.backend, replace(sep_k.run, steps=0))  # same loaded model, encoder alone
    sources = sep_k.sources
    n = len(sources)
    rows: dict[str, list[np.ndarray]] = {"mixture": [], "encoder": [], f"encoder+langevin{steps}": []}
    impr: dict[str, list[np.ndarray]] = {k: [] for k in rows}
    for i, (s, m) in enumerate(zip(src, mix)):
        rows["mixture"].append(si_sdr(s, np.broadcast_to(m, s.shape)))
        impr["mixture"].append(np.zeros(n))
        for key, sep in (("encoder", sep_0), (f"encoder+langevin{steps}", sep_k)):
            est = sep.separate(m[None], sep.sample_rate)[:, 0] * n  # stems are s_k / N
            rows[key].append(si_sdr(s, est))
            impr[key].append(si_sdr_improvement(s, est, m))
        if progress:
            progress(i + 1, len(src))
    table, per_clip = {}, {}
    for key in rows:
        sd, si = np.array(rows[key]), np.array(impr[key])
        per_clip[key] = {"si_sdr": np.round(sd, 3).tolist(), "si_sdri": np.round(si, 3).tolist()}
        table[key] = {src_name: {"si_sdr_median": float(np.median(sd[:, k])), "si_sdr_mean": float(np.mean(sd[:, k])),
                                 "si_sdri_median": float(np.median(si[:, k])), "si_sdri_mean": float(np.mean(si[:, k]))}
                      for k, src_name in enumerate(sources)}
    result = {"model": str(model), "sources": list(sources), "steps": steps, "clips": int(len(src)), "seconds": src.shape[-1] / sep_k.sample_rate,
              "data": str(data), "split": split, "backend": backend, "seed": seed, "whole_clips": whole, "table": table,
              "per_clip": per_clip, "langevin": {**sep_k.run.langevin.__dict__, "steps": steps}}
    return result


def store(model_dir: Path, key: str, result: dict) -> None:
    """The card keeps the aggregates; the per-clip rows (for finding the clips that fail) go to --json."""
    update_card(model_dir, "separation_eval", key, value={k: v for k, v in result.items() if k != "per_clip"})
