"""A source-only data folder DIR/<source>/*.wav (any rate, channels, length) for training.

Each source is read on its own: priors never see other sources, and training mixtures are made
by summing random excerpts of independent sources, so no paired stems are needed.
"""

from __future__ import annotations

import json

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import DataError

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif", ".mp3")


def _is_heldout(data: Path) -> bool:
    try:
        return bool(json.loads((data / "manifest.json").read_text()).get("heldout"))
    except (OSError, ValueError, AttributeError):
        return False


def resolve_split(data: Path, split: str | None) -> Path:
    """DIR/<split> when it exists (generated sets), else DIR itself (a user's folder)."""
    if not data.is_dir():
        raise DataError(f"data folder not found: {data}")
    if split in ("train", "valid") and _is_heldout(data):
        raise DataError(f"{data} is a held-out evaluation set (rtsep data music4 --heldout): it has only a test "
                        "split, for `rtsep eval`, and must not be trained or tuned on")
    if split and (data / split).is_dir():
        return data / split
    return data


def list_sources(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def load_mono(path: Path, sample_rate: int) -> np.ndarray:
    """Read any soundfile format, downmix to mono, resample with soxr; float32 (samples,)."""
    try:
        audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises several types for unreadable files
        raise DataError(f"cannot read {path}: {str(exc).splitlines()[0]}") from None
    if audio.shape[0] == 0:
        raise DataError(f"empty audio file: {path}")
    mono = audio.mean(axis=1)
    if not np.isfinite(mono).all():
        raise DataError(f"audio contains NaN or Inf: {path}")
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


@dataclass
class SourceSet:
    """All clips of one source, loaded into memory at one sample rate."""

    source: str
    clips: list[np.ndarray]

    @classmethod
    def load(cls, data: Path, source: str, sample_rate: int, split: str | None = "train") -> "SourceSet":
        root = resolve_split(Path(data), split)
        folder = root / source
        if not folder.is_dir():
            have = ", ".join(list_sources(root)) or "none"
            raise DataError(f"unknown source {source!r} in {root} (sources there: {have})")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)
        if not files:
            raise DataError(f"no audio files in {folder}")
        clips = [load_mono(p, sample_rate) for p in files]
        return cls(source, clips)

    def level(self, length: int, gain: tuple[float, float] = (0.5, 1.0), count: int = 256, seed: int = 1234
              ) -> tuple[float, float]:
        """(median RMS, std of log RMS) of `count` random non-silent excerpts at the training gain:
        a prior's reference level and how far a source's level strays from it."""
        x = self.excerpts(np.random.default_rng(seed), count, length, gain=gain)
        rms = np.sqrt((x.astype(np.float64) ** 2).mean(axis=1)) + 1e-6
        return round(float(np.median(rms)), 5), round(float(np.std(np.log(rms))), 4)

    def excerpts(self, rng: np.random.Generator, batch: int, length: int, gain: tuple[float, float] = (0.5, 1.0),
                 skip_silent: bool = True) -> np.ndarray:
        """Random crops (batch, length) with random gain; short clips are zero-padded."""
        out = np.zeros((batch, length), dtype=np.float32)
        for b in range(batch):
            for _ in range(10):
                clip = self.clips[rng.integers(len(self.clips))]
                if len(clip) > length:
                    start = rng.integers(len(clip) - length + 1)
                    x = clip[start : start + length]
                else:
                    x = np.pad(clip, (0, length - len(clip)))
                if not skip_silent or np.abs(x).max() > 1e-3:
                    break
            out[b] = x * rng.uniform(*gain)
        return out
