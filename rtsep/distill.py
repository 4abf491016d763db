"""`rtsep data distill`: the priors' own separations of stem-free mixtures, as an encoder's training set.

On toy4 the seed objective leaves the encoder in a wrong basin that a warm-started chain does not
leave, while the cold mask chain with swap moves separates all four sources with the priors alone
(README, Session 11). An amortized posterior is meant to approximate exactly that inference, so
this runs it (no encoder, no stems) on training mixtures and writes its estimates as a source-only
set; `rtsep train encoder --objective distill` then regresses them. The chain sees only the
mixtures: the random excerpts they are made of are mixed and dropped, as a user's stem-free
recordings would be. Clip i's mixture depends only on (seed, i), and finished clips are kept, so
a run resumes and several processes can share one set (`shard`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .backends import TorchBackend
from .bundle import priors_fingerprint
from .datasets.common import write_manifest, write_wav_atomic
from .datasets.folder import SourceSet
from .errors import ConfigError
from .langevin import LangevinConfig, refine

GENERATOR = "rtsep.distill"
CHAIN = LangevinConfig(steps=200, space="mask", sigma_start=0.3, sigma_end=0.01, mask_lr=0.1, temperature=0.0,
                       warm_start=0.0, relabel_every=20, swaps=2)
"""The labelling chain: Session 11's cold (equal shares), noise-free mask chain with relabelling
every 20 steps and 2 rounds of swap moves, run by the same `refine` as `rtsep eval separate`."""


@dataclass
class DistillMixtures:
    """Which mixtures are labelled: clip i mixes one excerpt per source drawn from (seed, i) alone."""

    clips: int = 96
    seconds: float = 0.512
    seed: int = 7
    batch: int = 8
    gain_min: float = 1.0
    gain_max: float = 1.0


def cold_chain(backend, mix: np.ndarray, chain: LangevinConfig, rng: np.random.Generator) -> np.ndarray:
    """mix (B, T) -> (B, N, T): `refine` from every source holding the whole mixture, so a chain with
    `warm_start` 0 starts from equal shares (BASIS); all clips one batch."""
    x0 = np.repeat(mix[:, None], len(backend.sources), axis=1)
    return refine(x0, mix, backend.langevin, chain, rng, log_probs=backend.log_probs)


def training_excerpts(sets: list[SourceSet], i: int, length: int, mixtures: DistillMixtures) -> np.ndarray:
    """Clip i's excerpts (N, length), one per source, drawn from (seed, i) alone: mixed for the chain,
    then dropped (tools/label_quality.py redraws them to measure the labels)."""
    rng = np.random.default_rng([mixtures.seed, i])
    return np.stack([s.excerpts(rng, 1, length, gain=(mixtures.gain_min, mixtures.gain_max))[0] for s in sets])


def clip_paths(out: Path, sources: tuple[str, ...], i: int) -> list[Path]:
    return [out / "train" / s / f"{i:05d}.wav" for s in sources]


def make_distill_set(model_dir: Path, data: Path, out: Path, mixtures: DistillMixtures, chain: LangevinConfig = CHAIN,
                     shard: tuple[int, int] = (0, 1),
                     progress: Callable[[int, int], None] | None = None) -> dict | None:
    """Write OUT/train/<source>/<i>.wav, the chain's estimates for this shard's clips (batches of
    `mixtures.batch`, batch j belongs to shard j % count); then, once every clip exists, the
    manifest, which is returned (None while other shards are unfinished)."""
    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    if mixtures.clips < 1 or mixtures.batch < 1 or chain.steps < 1 or chain.space != "mask":
        raise ConfigError("clips, batch and steps must be at least 1, and the chain in mask space")
    backend = TorchBackend(Path(model_dir), encoder=False)
    sources, sr = backend.sources, backend.sample_rate
    length = int(round(mixtures.seconds * sr)) // chain.hop * chain.hop
    if length < chain.n_fft:
        raise ConfigError(f"--seconds {mixtures.seconds} is shorter than one STFT frame ({chain.n_fft} samples)")
    sets = [SourceSet.load(data, s, sr, "train") for s in sources]
    batches = [list(range(j, min(j + mixtures.batch, mixtures.clips)))
               for j in range(0, mixtures.clips, mixtures.batch)]
    mine = [b for j, b in enumerate(batches) if j % count == index]
    for done, clips in enumerate(mine):
        if progress:
            progress(done, len(mine))
        if all(p.exists() for i in clips for p in clip_paths(out, sources, i)):
            continue
        mix = np.stack([training_excerpts(sets, i, length, mixtures).mean(axis=0) for i in clips])
        est = cold_chain(backend, mix, chain, np.random.default_rng([mixtures.seed, clips[0], 1]))
        for i, e in zip(clips, est):
            for p, x in zip(clip_paths(out, sources, i), e):
                write_wav_atomic(p, x, sr)
    if progress:
        progress(len(mine), len(mine))
    if not all(p.exists() for i in range(mixtures.clips) for p in clip_paths(out, sources, i)):
        return None
    manifest = {"generator": GENERATOR, "name": out.name, "sources": list(sources), "sample_rate": sr,
                "splits": {"train": mixtures.clips}, "stems_used": False, "model": str(model_dir),
                "priors": priors_fingerprint(Path(model_dir), list(sources)), "data": str(data),
                "mixtures": asdict(mixtures), "chain": asdict(chain)}
    write_manifest(out, manifest)
    return manifest


def read_distill_manifest(data: Path) -> dict | None:
    """The manifest of a `rtsep data distill` set, or None for any other folder."""
    try:
        m = json.loads((Path(data) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("generator") == GENERATOR else None
