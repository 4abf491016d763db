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
from .errors import ConfigError
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


def evaluate_separation(model: str | Path, data: Path, steps: int | None = None, split: str = "test", clips: int = 40,
                        seconds: float | None = None, backend: str = "torch", seed: int = 0, progress=None,
                        langevin: dict | None = None, whole: bool = False, shard: tuple[int, int] = (0, 1)) -> dict:
    """`per_clip[row]["si_sdri"][i][k]` is clip i's improvement for source k, so the clips that fail can be
    found. `shard` (I, N): only clips i with i % N == I, so N processes share one evaluation (`merge`
    joins their results). `whole`: each clip is one block (no streaming context or lookahead, padded only to the
    encoder's stride), so a short clip is not judged inside a window that is mostly silence. `steps`
    None: the card's, so the default evaluates what `rtsep file` runs."""
    model_dir = resolve_model(model)
    sep_k = Separator.load(model_dir, backend=backend, steps=steps, seed=seed)
    steps = sep_k.run.steps
    src, mix = held_out_mixtures(data, sep_k.sources, sep_k.sample_rate, split, clips, seconds)
    index = list(range(len(src)))[shard[0] :: shard[1]]
    if not index:
        raise ConfigError(f"shard {shard[0]}/{shard[1]} holds none of the {len(src)} clips evaluated")
    src, mix = src[index], mix[index]
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
    per_clip = {key: {"si_sdr": np.round(np.array(rows[key]), 3).tolist(),
                      "si_sdri": np.round(np.array(impr[key]), 3).tolist()} for key in rows}
    result = {"model": str(model), "sources": list(sources), "steps": steps, "clips": int(len(src)),
              "seconds": src.shape[-1] / sep_k.sample_rate,
              "data": str(data), "split": split, "backend": backend, "seed": seed, "whole_clips": whole,
              "table": summarize(per_clip, sources), "per_clip": per_clip, "clip_index": index,
              "langevin": {**sep_k.run.langevin.__dict__, "steps": steps}}
    return result


def summarize(per_clip: dict, sources) -> dict:
    """Per-clip rows -> the table: median and mean SI-SDR(i) per estimate and source."""
    table = {}
    for key, rec in per_clip.items():
        sd, si = np.array(rec["si_sdr"]), np.array(rec["si_sdri"])
        table[key] = {src_name: {"si_sdr_median": float(np.median(sd[:, k])), "si_sdr_mean": float(np.mean(sd[:, k])),
                                 "si_sdri_median": float(np.median(si[:, k])), "si_sdri_mean": float(np.mean(si[:, k]))}
                      for k, src_name in enumerate(sources)}
    return table


def merge(results: list[dict]) -> dict:
    """Join the shards of one evaluation (same model, data and settings) into one result, clips in order."""
    ignore = ("clips", "per_clip", "clip_index", "table")
    first = {k: v for k, v in results[0].items() if k not in ignore}
    for r in results[1:]:
        if {k: v for k, v in r.items() if k not in ignore} != first:
            raise ConfigError("the results to merge differ in more than their clips (model, data or settings)")
    pairs = sorted(((i, r, j) for r in results for j, i in enumerate(r["clip_index"])), key=lambda p: p[0])
    index = [i for i, _, _ in pairs]
    if len(set(index)) != len(index):
        raise ConfigError("the results to merge share clips")
    per_clip = {key: {m: [r["per_clip"][key][m][j] for _, r, j in pairs] for m in ("si_sdr", "si_sdri")}
                for key in results[0]["per_clip"]}
    return {**first, "clips": len(index), "table": summarize(per_clip, first["sources"]), "per_clip": per_clip,
            "clip_index": index}


def store(model_dir: Path, key: str, result: dict) -> None:
    """The card keeps the aggregates; the per-clip rows (for finding the clips that fail) go to --json."""
    update_card(model_dir, "separation_eval", key, value={k: v for k, v in result.items() if k != "per_clip"})


def chain_flags(res: dict) -> str:
    """The eval's chain as command-line flags: every setting it ran with, so the command repeats it
    whatever the card's defaults are."""
    lv = res.get("langevin") or {}
    if not res["steps"] or "space" not in lv:
        return ""
    keys = ["space", "sigma_start", "sigma_end", "temperature"]
    if lv["space"] == "mask":
        lv = {"bands": 0, **lv}  # results from before the band moves ran without them
        keys += ["mask_lr", "warm_start", "relabel_every", "polish", "chains", "swaps", "bands"]
        keys += ["swap_steps", "swap_sigma"] if lv.get("swaps") or lv.get("bands") else []
        keys += ["rate_sigma"] if lv.get("swaps") or lv.get("bands") or lv.get("chains", 1) > 1 else []
        keys += ["band_weight"] if lv.get("band_weight") else []
    fmt = lambda v: f"{v:g}" if isinstance(v, float) else str(v)  # noqa: E731
    return "".join(f" --{k.replace('_', '-')} {fmt(lv[k])}" for k in keys if k in lv)
