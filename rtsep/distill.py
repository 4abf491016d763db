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

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from .datasets.common import write_manifest, write_wav_atomic
from .datasets.folder import SourceSet
from .errors import ConfigError
from .langevin import scores_from_steps
from .mask_langevin import mask_chain, numpy_stft, swap_moves

GENERATOR = "rtsep.distill"


@dataclass
class ChainTargets:
    """The chain that labels each mixture: Session 11's cold T=0 chain with relabelling and swaps."""

    clips: int = 96
    seconds: float = 0.512
    seed: int = 7
    batch: int = 8
    gain_min: float = 1.0
    gain_max: float = 1.0
    steps: int = 200
    sigma_start: float = 0.3
    sigma_end: float = 0.01
    mask_lr: float = 0.1
    temperature: float = 0.0
    relabel_every: int = 20
    polish: int = 0
    swaps: int = 2
    swap_steps: int = 40
    swap_sigma: float = 0.05
    n_fft: int = 1024
    hop: int = 256


def cold_chain(backend, mix: np.ndarray, cfg: ChainTargets, rng: np.random.Generator) -> np.ndarray:
    """mix (B, T) -> (B, N, T), T % hop == 0: the mask chain from every source an equal share, all
    clips one batch, then `cfg.swaps` rounds of swap-and-relax moves rated at `sigma_end`."""
    scores, stft = scores_from_steps(backend.langevin), numpy_stft(cfg.n_fft, cfg.hop)
    out = mask_chain(np.repeat(mix[:, None], len(backend.sources), axis=1), mix, scores,
                     np.geomspace(cfg.sigma_start, cfg.sigma_end, cfg.steps), cfg.mask_lr, cfg.temperature, rng,
                     stft, log_probs=backend.log_probs, relabel_every=cfg.relabel_every, polish=cfg.polish)
    if cfg.swaps:
        out = swap_moves(out, mix, scores, backend.log_probs, np.geomspace(cfg.swap_sigma, cfg.sigma_end, cfg.swap_steps),
                         cfg.mask_lr, stft, cfg.sigma_end, cfg.swaps)
    return out


def training_mixture(sets: list[SourceSet], i: int, length: int, cfg: ChainTargets) -> np.ndarray:
    """Mixture i (length,): the mean of one random excerpt per source, drawn from (seed, i) alone."""
    rng = np.random.default_rng([cfg.seed, i])
    return np.mean([s.excerpts(rng, 1, length, gain=(cfg.gain_min, cfg.gain_max))[0] for s in sets], axis=0)


def clip_paths(out: Path, sources: tuple[str, ...], i: int) -> list[Path]:
    return [out / "train" / s / f"{i:05d}.wav" for s in sources]


def make_distill_set(model_dir: Path, data: Path, out: Path, cfg: ChainTargets, shard: tuple[int, int] = (0, 1),
                     progress: Callable[[int, int], None] | None = None) -> dict | None:
    """Write OUT/train/<source>/<i>.wav, the chain's estimates for this shard's clips (batches of
    `cfg.batch`, batch j belongs to shard j % count); then, once every clip exists, the manifest,
    which is returned (None while other shards are unfinished)."""
    from .backends import TorchBackend
    from .train.encoder import priors_fingerprint

    index, count = shard
    if not 0 <= index < count:
        raise ConfigError(f"shard {index}/{count}: the index must be in 0..{count - 1}")
    if cfg.clips < 1 or cfg.batch < 1 or cfg.steps < 1:
        raise ConfigError("clips, batch and steps must be at least 1")
    backend = TorchBackend(Path(model_dir), encoder=False)
    sources, sr = backend.sources, backend.sample_rate
    length = int(round(cfg.seconds * sr)) // cfg.hop * cfg.hop
    if length < cfg.n_fft:
        raise ConfigError(f"--seconds {cfg.seconds} is shorter than one STFT frame ({cfg.n_fft} samples)")
    sets = [SourceSet.load(data, s, sr, "train") for s in sources]
    batches = [list(range(j, min(j + cfg.batch, cfg.clips))) for j in range(0, cfg.clips, cfg.batch)]
    mine = [b for j, b in enumerate(batches) if j % count == index]
    for done, clips in enumerate(mine):
        if progress:
            progress(done, len(mine))
        if all(p.exists() for i in clips for p in clip_paths(out, sources, i)):
            continue
        mix = np.stack([training_mixture(sets, i, length, cfg) for i in clips])
        est = cold_chain(backend, mix, cfg, np.random.default_rng([cfg.seed, clips[0], 1]))
        for i, e in zip(clips, est):
            for p, x in zip(clip_paths(out, sources, i), e):
                write_wav_atomic(p, x, sr)
    if progress:
        progress(len(mine), len(mine))
    if not all(p.exists() for i in range(cfg.clips) for p in clip_paths(out, sources, i)):
        return None
    manifest = {"generator": GENERATOR, "name": out.name, "sources": list(sources), "sample_rate": sr,
                "splits": {"train": cfg.clips}, "stems_used": False, "model": str(model_dir),
                "priors": priors_fingerprint(Path(model_dir), list(sources)), "data": str(data), "chain": asdict(cfg)}
    write_manifest(out, manifest)
    return manifest


def read_distill_manifest(data: Path) -> dict | None:
    """The manifest of a `rtsep data distill` set, or None for any other folder."""
    import json

    try:
        m = json.loads((Path(data) / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return m if isinstance(m, dict) and m.get("generator") == GENERATOR else None
