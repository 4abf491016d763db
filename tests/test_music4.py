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


@needs_fluidsynth
def test_v2_draws_banks_meters_and_records_them(first: tuple[Path, dict, list[tuple[int, int]]]) -> None:
    manifest = first[1]
    installed = [Path(p).name for p in music4.TRAIN_BANKS if Path(p).is_file()]
    assert manifest["version"] == "v2" and manifest["soundfonts"] == installed
    assert not any(r in f.lower() for f in manifest["soundfonts"] for r in music4.RESERVED)
    clips = [c for split in SPLITS for c in manifest["clips"][split]]
    assert len(clips) == sum(split_counts(CLIPS).values())
    for c in clips:
        assert set(c["banks"]) == set(SOURCES) and set(c["banks"].values()) <= set(installed)
        assert c["meter"] in music4.METERS and 60 <= c["bpm"] <= 180


def test_v2_songs_vary_and_stay_deterministic() -> None:
    """Many songs: several meters and tempi, swing sometimes; the same seed gives the same notes."""
    styles = [music4._song(np.random.default_rng(i), 4.0, "v2", music4.METERS)[3] for i in range(40)]
    assert {s["meter"] for s in styles} == set(music4.METERS)
    assert min(s["bpm"] for s in styles) < 90 and max(s["bpm"] for s in styles) > 150
    assert any(s["swing"] > 0 for s in styles) and any(s["swing"] == 0 for s in styles)
    a = music4._song(np.random.default_rng(5), 4.0, "v2", music4.METERS)
    b = music4._song(np.random.default_rng(5), 4.0, "v2", music4.METERS)
    assert a == b


def test_meters_shape_the_drum_bars() -> None:
    """3/4 and 6/8 bars hold 12 sixteenths: the backbeat lands on beats 2 and 3 (3/4) or the second
    dotted quarter (6/8), and crashes open every bar boundary of a fill at 3-beat spacing."""
    for meter, backbeat in (("3/4", {1.0, 2.0}), ("6/8", {1.5})):
        notes = music4._drums(np.random.default_rng(0), 12.0, meter)
        snares = {round(t % 3.0, 2) for t, _, p, v in notes if p == music4.SNARE and v > 60 and t % 3.0 < 2.9}
        assert backbeat <= snares, (meter, snares)
    for seed in range(5):  # 4/4 as in v1: backbeat on 2 and 4, or half time on 3
        v1 = music4._drums(np.random.default_rng(seed), 16.0)
        snares = {round(t % 4.0, 2) for t, _, p, v in v1 if p == music4.SNARE and v > 60}
        assert snares & {1.0, 2.0} and not snares & {0.0, 0.5}, snares


def test_augment_is_deterministic_and_keeps_length() -> None:
    rng = np.random.default_rng(3)
    x = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    for src in SOURCES:
        aug = music4._augment(rng, src)
        y = music4.apply_augment(x, 16000, aug)
        assert y.shape == x.shape and np.isfinite(y).all()
        np.testing.assert_array_equal(y, music4.apply_augment(x, 16000, aug))
    tilt_up = music4.apply_augment(x, 16000, {"tilt": 3.0})
    spec_x, spec_y = np.abs(np.fft.rfft(x)), np.abs(np.fft.rfft(tilt_up))
    assert spec_y[6000:].mean() > 2 * spec_x[6000:].mean()  # 3 dB/octave: +9 dB at 8 kHz


@needs_fluidsynth
def test_reserved_and_missing_banks_refused_in_one_line(tmp_path: Path) -> None:
    font = tmp_path / "TimGM6mb.sf2"
    font.write_bytes(b"RIFF\0\0\0\0sfbk")
    with pytest.raises(DataError, match="reserved"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=[Path(music4.TRAIN_SOUNDFONTS[0]), font])
    with pytest.raises(DataError, match="nope.sf2 not found"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, soundfont=[Path(music4.TRAIN_SOUNDFONTS[0]),
                                                                     tmp_path / "nope.sf2"])
    with pytest.raises(DataError, match="unknown meter '5/4'"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, meters=("4/4", "5/4"))
    with pytest.raises(DataError, match="unknown generator"):
        make_music4(tmp_path / "x", 1, 0.5, SR, seed=0, generator="v9")
    assert not (tmp_path / "x").exists()


@needs_fluidsynth
def test_cli_missing_bank_is_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "rtsep", "data", "music4", str(tmp_path / "x"), "--clips", "1",
                          "--seconds", "0.5", "--soundfont", str(tmp_path / "missing.sf2")],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode != 0
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 1 and "missing.sf2 not found" in lines[0], lines
    assert not (tmp_path / "x").exists()


@needs_fluidsynth
def test_generator_v1_is_the_old_single_bank_4_4_set(tmp_path: Path) -> None:
    m = make_music4(tmp_path / "v1", 1, 0.5, SR, seed=7, generator="v1")
    assert "version" not in m and "clips" not in m and m["soundfont"] == "FluidR3_GM.sf2"
    style = music4._song(np.random.default_rng(1), 4.0, "v1")[3]
    assert style["meter"] == "4/4" and style["swing"] == 0.0 and 80 <= style["bpm"] <= 160


@needs_fluidsynth
def test_more_clips_over_a_set_render_only_the_new_ones(tmp_path: Path) -> None:
    """Clip i depends only on the recipe, so extending a set (or rerunning an interrupted one) reuses files."""
    out = tmp_path / "grow"
    make_music4(out, CLIPS, SECONDS, SR, seed=7)
    kept = {p: p.stat().st_ino for p in out.rglob("*.wav")}
    calls: list[str] = []
    real = music4._render_or_default

    def counted(midi: Path, *a, **k):  # noqa: ANN002, ANN003, ANN202
        calls.append(midi.name)
        return real(midi, *a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(music4, "_render_or_default", counted)
        make_music4(out, CLIPS + 1, SECONDS, SR, seed=7)
    assert len(calls) == 4  # one new training clip, four stems; valid and test keep their one clip
    assert all(p.stat().st_ino == ino for p, ino in kept.items())  # not rewritten
    fresh = tmp_path / "fresh"
    make_music4(fresh, CLIPS + 1, SECONDS, SR, seed=7)
    grown, want = _load(out), _load(fresh)
    assert grown.keys() == want.keys()
    for k in want:
        np.testing.assert_array_equal(grown[k], want[k], err_msg=k)
    make_music4(out, CLIPS + 1, SECONDS, SR, seed=8)  # another recipe: every clip rendered anew
    assert not all(p.stat().st_ino == ino for p, ino in kept.items())
