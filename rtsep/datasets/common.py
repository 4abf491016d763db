"""Writing generated data sets: OUT/<split>/<source>/<clip>.wav plus OUT/manifest.json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from ..atomic import replacing, write_text

SPLITS = ("train", "valid", "test")


def split_seed(seed: int, split: str) -> int:
    """A per-split seed, so train/valid/test never share random streams."""
    return int(seed) * 1000 + SPLITS.index(split) + 1


def write_wav_atomic(path: Path, audio: np.ndarray, sample_rate: int, subtype: str = "FLOAT") -> None:
    """Write audio shaped (channels, samples) or (samples,) via a temp file and os.replace."""
    data = np.asarray(audio, dtype=np.float32)
    if data.ndim == 2:
        data = data.T
    with replacing(path) as tmp:
        sf.write(str(tmp), data, sample_rate, subtype=subtype, format=path.suffix.lstrip(".").upper() or "WAV")


def write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    """Write OUT/manifest.json atomically (written last, so its presence means the set is complete)."""
    write_text(Path(out) / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True))


def split_counts(clips: int) -> dict[str, int]:
    """Clips per split for a requested number of training clips: 10% valid and test, at least 1."""
    held = max(1, clips // 10)
    return {"train": clips, "valid": held, "test": held}
