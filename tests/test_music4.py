"""music4: deterministic, complete, non-silent FluidSynth-rendered stems."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from rtsep.datasets.common import SPLITS, split_counts
from rtsep.datasets import music4
from rtsep.datasets.music4 import SOURCES, make_music4
from rtsep.errors import DataError

CLIPS, SECONDS, SR = 2, 1.0, 16000

needs_fluidsynth = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="fluidsynth not installed")


def _load(root: Path) -> dict[str, np.ndarray]:
    return {str(p.relative_to(root)): sf.read(str(p), dtype="float32")[0] for p in sorted(root.rglob("*.wav"))}


@pytest.fixture(scope="module")
def first(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[tuple[int, int]]]:
    if shutil.which("fluidsynth") is None:
        pytest.skip("fluidsynth not installed")
    out = tmp_path_factory.mktemp("music4a")
    calls: list[tuple[int, int]] = []
    manifest = make_music4(out, CLIPS, SECONDS, SR, seed=7, progress=lambda d, t: calls.append((d, t)))
    return out, manifest, calls


@needs_fluidsynth
def test_layout_and_manifest(first: tuple[Path, dict, list[tuple[int, int]]]) -> None:
    out, manifest, calls = first
    counts = split_counts(CLIPS)
    assert manifest["name"] == "music4"
    assert manifest["sources"] == list(SOURCES) == ["bass", "drums", "guitar", "piano"]
    assert manifest["sample_rate"] == SR and manifest["seconds"] == SECONDS and manifest["seed"] == 7
    assert manifest["soundfont"] == "FluidR3_GM.sf2"
    assert manifest["splits"] == counts
    assert manifest["generator"] == "rtsep.datasets.music4"
    assert json.loads((out / "manifest.json").read_text()) == manifest
    total = sum(counts.values())
    assert calls == [(i + 1, total) for i in range(total)]
    for split in SPLITS:
        for src in SOURCES:
            files = sorted((out / split / src).glob("*.wav"))
            assert [f.name for f in files] == [f"{i:05d}.wav" for i in range(counts[split])]
            for f in files:
                info = sf.info(str(f))
                assert info.samplerate == SR and info.channels == 1
                assert info.frames == round(SECONDS * SR)


@needs_fluidsynth
def test_stems_not_silent_and_normalised(first: tuple[Path, dict, list[tuple[int, int]]]) -> None:
    for name, audio in _load(first[0]).items():
        peak = float(np.abs(audio).max())
        assert 0.9 * 0.5 - 1e-4 <= peak <= 0.9 + 1e-4, (name, peak)
        assert float(np.sqrt(np.mean(audio**2))) > 1e-3, name
        assert float(np.abs(audio[: SR // 10]).max()) > 0, name  # notes start at time 0


@needs_fluidsynth
def test_same_seed_identical_other_seed_differs(
    first: tuple[Path, dict, list[tuple[int, int]]], tmp_path: Path
) -> None:
    a = _load(first[0])
    make_music4(tmp_path / "b", CLIPS, SECONDS, SR, seed=7)
    b = _load(tmp_path / "b")
    assert a.keys() == b.keys() and len(a) == 4 * sum(split_counts(CLIPS).values())
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    make_music4(tmp_path / "c", CLIPS, SECONDS, SR, seed=8)
    c = _load(tmp_path / "c")
    assert a.keys() == c.keys()
    for k in a:
        assert a[k].shape != c[k].shape or not np.allclose(a[k], c[k]), k


@needs_fluidsynth
def test_splits_differ(first: tuple[Path, dict, list[tuple[int, int]]]) -> None:
    a = _load(first[0])
    for src in SOURCES:
        assert not np.allclose(a[f"train/{src}/00000.wav"], a[f"valid/{src}/00000.wav"])


def test_missing_fluidsynth_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(music4.shutil, "which", lambda name: None)
    with pytest.raises(DataError, match="fluidsynth is not installed.*apt-get install fluidsynth fluid-soundfont-gm"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0)


@needs_fluidsynth
def test_missing_soundfont_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found.*apt-get install fluidsynth fluid-soundfont-gm"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=tmp_path / "nope.sf2")
    assert not (tmp_path / "x" / "manifest.json").exists()


@needs_fluidsynth
def test_musescore_soundfont_refused(tmp_path: Path) -> None:
    font = tmp_path / "MuseScore_General.sf2"
    font.write_bytes(b"RIFF\0\0\0\0sfbk")
    with pytest.raises(DataError, match="held-out"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=font)
    link = tmp_path / "default-GM.sf2"  # Debian points default-GM.sf3 at MuseScore once it is installed
    link.symlink_to(font)
    with pytest.raises(DataError, match="held-out"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=link)
    assert not (tmp_path / "x").exists()


@needs_fluidsynth
def test_heldout_set_has_only_a_test_split(tmp_path: Path) -> None:
    if not Path(music4.TRAIN_SOUNDFONTS[0]).is_file():
        pytest.skip("FluidR3_GM not installed")
    m = make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=Path(music4.TRAIN_SOUNDFONTS[0]), heldout=True)
    assert m["heldout"] is True and m["splits"] == {"test": 1}
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == ["manifest.json", "test"]
    assert len(list((tmp_path / "x" / "test" / "piano").glob("*.wav"))) == 1
    from rtsep.datasets.folder import SourceSet

    assert len(SourceSet.load(tmp_path / "x", "piano", SR, "test").clips) == 1
    for split in ("train", "valid"):  # never trained or tuned on
        with pytest.raises(DataError, match="held-out evaluation set"):
            SourceSet.load(tmp_path / "x", "piano", SR, split)


@needs_fluidsynth
def test_broken_soundfont_raises(tmp_path: Path) -> None:
    font = tmp_path / "broken.sf2"
    font.write_bytes(b"not a soundfont")
    with pytest.raises(DataError, match="not a SoundFont"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=font)
    # fluidsynth itself exits 0 on a bad soundfont; the renderer must still report it.
    midi = tmp_path / "bass.mid"
    music4._write_midi(midi, [(0.0, 1.0, 40, 100)], 33, 0, 120.0, 2.0)
    with pytest.raises(DataError, match="fluidsynth failed on bass.mid: .*not a SoundFont"):
        music4._render(midi, tmp_path / "bass.wav", font, SR, timeout=30.0)
