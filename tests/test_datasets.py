"""Generators are deterministic; the folder loader reads any rate/channels and refuses bad data."""

import json

import numpy as np
import pytest
import soundfile as sf

from rtsep.datasets.folder import SourceSet
from rtsep.datasets.toy4 import SOURCES, make_toy4
from rtsep.errors import DataError


def read_all(root):
    return {p.relative_to(root).as_posix(): sf.read(p)[0] for p in sorted(root.rglob("*.wav"))}


def test_toy4_deterministic_and_seeded(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    make_toy4(a, clips=3, seconds=0.1, sample_rate=8000, seed=5)
    make_toy4(b, clips=3, seconds=0.1, sample_rate=8000, seed=5)
    make_toy4(c, clips=3, seconds=0.1, sample_rate=8000, seed=6)
    fa, fb, fc = read_all(a), read_all(b), read_all(c)
    assert len(fa) == (3 + 1 + 1) * 4
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    assert not any(np.array_equal(fa[k], fc[k]) for k in fa)
    man = json.loads((a / "manifest.json").read_text())
    assert man["sources"] == list(SOURCES) and man["splits"] == {"train": 3, "valid": 1, "test": 1}
    x = fa["train/square/00000.wav"]
    assert len(x) == 800 and set(np.unique(np.abs(x)).round(4)).__len__() == 1  # +-amp only
    assert 0.8 <= np.abs(x).max() <= 1.0
    # train and test never share a stream
    assert not np.array_equal(fa["train/sine/00000.wav"], fa["test/sine/00000.wav"])


def test_folder_loader_resamples_and_downmixes(tmp_path):
    d = tmp_path / "user" / "voice"
    d.mkdir(parents=True)
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], axis=1) * 0.5
    sf.write(d / "a.wav", stereo, 44100)
    sf.write(d / "b.flac", stereo[:22050, 0], 22050)
    s = SourceSet.load(tmp_path / "user", "voice", 16000, split="train")
    assert len(s.clips) == 2 and abs(len(s.clips[0]) - 16000) <= 2 and abs(len(s.clips[1]) - 16000) <= 2
    assert abs(np.abs(s.clips[0][1000:-1000]).max() - 0.5) < 0.01
    ex = s.excerpts(np.random.default_rng(0), 4, 20000, gain=(0.5, 0.5))
    assert ex.shape == (4, 20000) and abs(np.abs(ex).max() - 0.25) < 0.01
    assert np.all(ex[:, 17000:] == 0)  # short clips are padded, not looped


@pytest.mark.parametrize("case", ["missing", "empty_dir", "not_audio", "unknown_source"])
def test_folder_loader_errors(tmp_path, case):
    root = tmp_path / "data"
    (root / "bass").mkdir(parents=True)
    if case == "missing":
        root = tmp_path / "nope"
    elif case == "not_audio":
        (root / "bass" / "x.wav").write_text("this is not audio")
    source = "guitar" if case == "unknown_source" else "bass"
    with pytest.raises(DataError) as err:
        SourceSet.load(root, source, 16000)
    assert "\n" not in str(err.value)
