"""toy4: the thesis's toy set, one periodic waveform per source (DESIGN.md §3)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .common import SPLITS, split_counts, split_seed, write_manifest, write_wav_atomic

SOURCES = ("sine", "square", "saw", "triangle")


def piano_key_hz(key: np.ndarray | float) -> np.ndarray:
    """Frequency of piano key 1..88 (A0 = 1, A4 = 49)."""
    return 440.0 * 2.0 ** ((np.asarray(key, dtype=np.float64) - 49) / 12)


def waveform(source: str, freq: float, phase: float, amp: float, n: int, sample_rate: int) -> np.ndarray:
    """One toy source: frequency in Hz, phase in cycles [0, 1), peak amplitude amp."""
    cyc = (np.arange(n) * (freq / sample_rate) + phase) % 1.0
    if source == "sine":
        y = np.sin(2 * np.pi * cyc)
    elif source == "square":
        y = np.where(cyc < 0.5, 1.0, -1.0)
    elif source == "saw":
        y = 2.0 * cyc - 1.0
    elif source == "triangle":
        y = 1.0 - 4.0 * np.abs(cyc - 0.5)
    else:
        raise ValueError(f"unknown toy4 source {source!r}")
    return (amp * y).astype(np.float32)


def random_clip(rng: np.random.Generator, source: str, n: int, sample_rate: int) -> np.ndarray:
    """Key uniform over the 88 piano keys, random phase, amplitude uniform in [0.8, 1]."""
    key = rng.integers(1, 89)
    return waveform(source, float(piano_key_hz(key)), rng.random(), rng.uniform(0.8, 1.0), n, sample_rate)


def make_toy4(
    out: Path,
    clips: int,
    seconds: float,
    sample_rate: int,
    seed: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write OUT/<split>/<source>/<i>.wav for every split; deterministic given seed."""
    n = int(round(seconds * sample_rate))
    counts = split_counts(clips)
    total, done = sum(counts.values()), 0
    for split in SPLITS:
        rng = np.random.default_rng(split_seed(seed, split))
        for i in range(counts[split]):
            for source in SOURCES:
                write_wav_atomic(out / split / source / f"{i:05d}.wav", random_clip(rng, source, n, sample_rate), sample_rate)
            done += 1
            if progress:
                progress(done, total)
    manifest = {
        "name": "toy4",
        "sources": list(SOURCES),
        "sample_rate": sample_rate,
        "seconds": seconds,
        "seed": seed,
        "splits": counts,
        "generator": "rtsep.datasets.toy4",
    }
    write_manifest(out, manifest)
    return manifest
