"""Tests for rtsep.audio: round trips, one-line errors, chunked reading/resampling, atomic writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from rtsep.audio import (
    SUPPORTED_OUTPUT,
    AtomicWriter,
    StreamResampler,
    info_audio,
    is_silent,
    iter_blocks,
    read_audio,
    resample,
    write_audio,
)
from rtsep.errors import AudioError

SR = 16000


def _noise(channels: int, n: int, seed: int = 0, scale: float = 0.5) -> np.ndarray:
    return (np.random.default_rng(seed).uniform(-scale, scale, (channels, n))).astype(np.float32)


def _assert_one_line(exc: pytest.ExceptionInfo[AudioError], name: str) -> None:
    msg = str(exc.value)
    assert "\n" not in msg and "\r" not in msg, msg
    assert name in msg, msg


# --- round trips -------------------------------------------------------------------------------


def test_stereo_float_wav_round_trip_is_exact(tmp_path: Path) -> None:
    audio = _noise(2, 3001, scale=1.5)  # float wav keeps values beyond full scale
    path = tmp_path / "st.wav"
    write_audio(path, audio, SR)
    back, sr = read_audio(path)
    assert sr == SR
    assert back.dtype == np.float32 and back.shape == (2, 3001)
    np.testing.assert_array_equal(back, audio)
    assert sf.info(str(path)).subtype == "FLOAT"
    assert info_audio(path) == (SR, 2, 3001)


def test_mono_flac_round_trip_pcm24(tmp_path: Path) -> None:
    audio = _noise(1, 2000, seed=1)
    path = tmp_path / "m.flac"
    write_audio(path, audio, 22050)
    back, sr = read_audio(path)
    assert sr == 22050 and back.shape == (1, 2000) and back.dtype == np.float32
    assert np.max(np.abs(back - audio)) < 1e-4
    assert sf.info(str(path)).subtype == "PCM_24"


def test_flac_clips_out_of_range(tmp_path: Path) -> None:
    audio = np.array([[2.0, -3.0, 0.25]], dtype=np.float32)
    path = tmp_path / "c.wav.out"
    write_audio(path, audio, SR, fmt="flac")
    back, _ = read_audio(path)
    np.testing.assert_allclose(back, [[1.0, -1.0, 0.25]], atol=1e-4)


def test_unsupported_output_format(tmp_path: Path) -> None:
    assert SUPPORTED_OUTPUT == ("wav", "flac")
    with pytest.raises(AudioError) as e:
        write_audio(tmp_path / "x.mp3", _noise(1, 10), SR)
    _assert_one_line(e, "x.mp3")
    assert list(tmp_path.iterdir()) == []


# --- read errors -------------------------------------------------------------------------------


def _bad_files(tmp_path: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    files["missing"] = tmp_path / "missing.wav"
    d = tmp_path / "adir.wav"
    d.mkdir()
    files["directory"] = d
    t = tmp_path / "text.wav"
    t.write_text("this is not audio\nsecond line\n")
    files["text"] = t
    tr = tmp_path / "trunc.wav"
    sf.write(str(tr), _noise(2, 1000).T, SR, subtype="FLOAT")
    tr.write_bytes(tr.read_bytes()[:20])
    files["truncated"] = tr
    z = tmp_path / "zero.wav"
    sf.write(str(z), np.zeros((0, 2), dtype=np.float32), SR, subtype="FLOAT")
    files["zero"] = z
    nan = tmp_path / "nan.wav"
    a = _noise(1, 100)
    a[0, 50] = np.nan
    sf.write(str(nan), a.T, SR, subtype="FLOAT")
    files["nan"] = nan
    inf = tmp_path / "inf.wav"
    a = _noise(2, 100)
    a[1, 3] = -np.inf
    sf.write(str(inf), a.T, SR, subtype="FLOAT")
    files["inf"] = inf
    return files


_CASES = ["missing", "directory", "text", "truncated", "zero", "nan", "inf"]


@pytest.mark.parametrize("case", _CASES)
def test_read_audio_errors_are_one_line(tmp_path: Path, case: str) -> None:
    path = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError) as e:
        read_audio(path)
    _assert_one_line(e, path.name)


@pytest.mark.parametrize("case", _CASES)
def test_iter_blocks_errors_are_one_line(tmp_path: Path, case: str) -> None:
    path = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError) as e:
        list(iter_blocks(path, 64))
    _assert_one_line(e, path.name)


@pytest.mark.parametrize("case", ["missing", "directory", "text", "truncated", "zero"])
def test_info_audio_errors_are_one_line(tmp_path: Path, case: str) -> None:
    path = _bad_files(tmp_path)[case]
    with pytest.raises(AudioError) as e:
        info_audio(path)
    _assert_one_line(e, path.name)


def test_zero_length_wav_has_valid_header(tmp_path: Path) -> None:
    path = _bad_files(tmp_path)["zero"]
    info = sf.info(str(path))  # the file itself is a well-formed empty wav
    assert info.frames == 0 and info.channels == 2


# --- block reading -----------------------------------------------------------------------------


@pytest.mark.parametrize("block", [1, 100, 1000, 5000])
def test_iter_blocks_reassembles_exactly(tmp_path: Path, block: int) -> None:
    audio = _noise(2, 2345, seed=3)
    path = tmp_path / "b.wav"
    write_audio(path, audio, SR)
    blocks = list(iter_blocks(path, block))
    assert all(b.dtype == np.float32 and b.shape[0] == 2 for b in blocks)
    assert all(b.shape[1] == block for b in blocks[:-1])
    assert 0 < blocks[-1].shape[1] <= block
    assert len(blocks) == -(-2345 // block)
    full, _ = read_audio(path)
    np.testing.assert_array_equal(np.concatenate(blocks, axis=1), full)


def test_iter_blocks_rejects_bad_block(tmp_path: Path) -> None:
    path = tmp_path / "b.wav"
    write_audio(path, _noise(1, 10), SR)
    with pytest.raises(ValueError):
        list(iter_blocks(path, 0))


# --- resampling --------------------------------------------------------------------------------


def test_resample_sine_round_trip() -> None:
    sr_hi, sr_lo = 44100, 16000
    n = sr_hi // 2
    t = np.arange(n) / sr_hi
    sine = (0.5 * np.sin(2 * np.pi * 1000.0 * t)).astype(np.float32)[None, :]
    lo = resample(sine, sr_hi, sr_lo)
    assert lo.dtype == np.float32 and lo.shape[0] == 1
    assert abs(lo.shape[1] - n * sr_lo / sr_hi) <= 1
    back = resample(lo, sr_lo, sr_hi)
    assert back.shape[0] == 1 and abs(back.shape[1] - n) <= 1
    m = min(n, back.shape[1])
    edge = 2000
    ref, got = sine[0, edge : m - edge], back[0, edge : m - edge]
    err_db = 10 * np.log10(np.sum((got - ref) ** 2) / np.sum(ref**2))
    assert err_db < -30, err_db


def test_resample_noop_and_stereo() -> None:
    a = _noise(2, 1000)
    assert resample(a, SR, SR) is a
    out = resample(a, 48000, 24000)
    assert out.shape == (2, 500) and out.dtype == np.float32
    # channels stay independent: resampling each alone gives the same result
    np.testing.assert_allclose(out[1:], resample(a[1:], 48000, 24000), atol=1e-6)


@pytest.mark.parametrize("channels,sr_in,sr_out", [(1, 44100, 16000), (2, 16000, 48000), (2, 22050, 22050)])
def test_stream_resampler_matches_one_shot(channels: int, sr_in: int, sr_out: int) -> None:
    audio = _noise(channels, 20000, seed=5)
    rng = np.random.default_rng(7)
    cuts = np.sort(rng.choice(np.arange(1, audio.shape[1]), size=12, replace=False))
    chunks = np.split(audio, cuts, axis=1)
    sr = StreamResampler(sr_in, sr_out, channels)
    outs = [sr.process(c, last=(i == len(chunks) - 1)) for i, c in enumerate(chunks)]
    assert all(o.dtype == np.float32 and o.shape[0] == channels for o in outs)
    streamed = np.concatenate(outs, axis=1)

    if sr_in == sr_out:
        np.testing.assert_array_equal(streamed, audio)
    else:
        ref_stream = soxr.ResampleStream(sr_in, sr_out, channels, dtype="float32", quality="HQ")
        ref = ref_stream.resample_chunk(np.ascontiguousarray(audio.T), last=True).reshape(-1, channels).T
        assert streamed.shape == ref.shape
        np.testing.assert_allclose(streamed, ref, atol=1e-5)
    assert abs(streamed.shape[1] - resample(audio, sr_in, sr_out).shape[1]) <= 2


def test_stream_resampler_flush_with_empty_last_chunk() -> None:
    audio = _noise(2, 5000, seed=9)
    sr = StreamResampler(16000, 8000, 2)
    out = np.concatenate([sr.process(audio), sr.process(np.zeros((2, 0), np.float32), last=True)], axis=1)
    assert abs(out.shape[1] - 2500) <= 2
    with pytest.raises(RuntimeError):
        sr.process(audio)


def test_is_silent() -> None:
    assert is_silent(np.zeros((2, 100), np.float32))
    assert is_silent(np.zeros((1, 0), np.float32))
    assert is_silent(np.full((1, 10), 1e-6, np.float32))  # -120 dBFS
    assert not is_silent(np.full((1, 10), 1e-3, np.float32))  # -60 dBFS
    assert is_silent(np.full((1, 10), 1e-3, np.float32), threshold_db=-50.0)
    spike = np.zeros((2, 1000), np.float32)
    spike[1, 500] = 0.1
    assert not is_silent(spike)


# --- atomic writer -----------------------------------------------------------------------------


def test_atomic_writer_chunks_and_no_leftovers(tmp_path: Path) -> None:
    audio = _noise(2, 3000, seed=11)
    target = tmp_path / "sub" / "out.wav"  # missing folders are created
    with AtomicWriter(target, SR, 2) as w:
        assert w.path == target
        for c in np.array_split(audio, 7, axis=1):
            w.write(c)
            assert not target.exists()  # only visible once complete
        assert len(list(target.parent.iterdir())) == 1  # the hidden temp file
        tmp = next(target.parent.iterdir())
        assert tmp.name.startswith(".out.wav") and tmp.name.endswith(".part")
    assert [p.name for p in target.parent.iterdir()] == ["out.wav"]
    back, sr = read_audio(target)
    assert sr == SR
    np.testing.assert_array_equal(back, audio)


@pytest.mark.parametrize("exc_type", [ValueError, KeyboardInterrupt])
def test_atomic_writer_exception_leaves_nothing(tmp_path: Path, exc_type: type[BaseException]) -> None:
    target = tmp_path / "out.flac"
    with pytest.raises(exc_type):
        with AtomicWriter(target, SR, 1) as w:
            w.write(_noise(1, 1000))
            raise exc_type("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_writer_keeps_previous_target_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.wav"
    old = _noise(1, 50, seed=2)
    write_audio(target, old, SR)
    with pytest.raises(RuntimeError):
        with AtomicWriter(target, SR, 1) as w:
            w.write(_noise(1, 1000))
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out.wav"]
    np.testing.assert_array_equal(read_audio(target)[0], old)


def test_atomic_writer_channel_mismatch_cleans_up(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        with AtomicWriter(tmp_path / "o.wav", SR, 2) as w:
            w.write(_noise(1, 10))
    assert list(tmp_path.iterdir()) == []


def test_atomic_writer_uncreatable_folder(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(AudioError) as e:
        AtomicWriter(afile / "out.wav", SR, 1)
    _assert_one_line(e, "afile")
    with pytest.raises(AudioError) as e:
        write_audio(afile / "deeper" / "out.wav", _noise(1, 10), SR)
    _assert_one_line(e, "afile")
    assert afile.read_text() == "x"


# --- truncated input (issue 29): a header promising more than the body holds is refused ----------


def _truncated_wav(path: Path, subtype: str = "PCM_16", keep: float = 0.5) -> Path:
    sf.write(str(path), _noise(2, 4000).T, SR, subtype=subtype)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


@pytest.mark.parametrize("subtype", ["PCM_16", "FLOAT"])
@pytest.mark.parametrize("reader", ["info", "read", "blocks"])
def test_truncated_wav_is_refused(tmp_path: Path, subtype: str, reader: str) -> None:
    path = _truncated_wav(tmp_path / "cut.wav", subtype)
    assert 0 < sf.info(str(path)).frames < 4000  # libsndfile alone would read the shorter body silently
    fn = {"info": info_audio, "read": read_audio, "blocks": lambda p: list(iter_blocks(p, 512))}[reader]
    with pytest.raises(AudioError, match="truncated") as e:
        fn(path)
    _assert_one_line(e, "cut.wav")
    assert "4000" in str(e.value)  # says what the header promised


def test_wav_with_unknown_data_size_is_read_to_its_end(tmp_path: Path) -> None:
    """Streaming writers (ffmpeg to a pipe) leave 0xFFFFFFFF as the data size: not a truncation."""
    path = tmp_path / "stream.wav"
    audio = _noise(1, 1000, seed=4)
    sf.write(str(path), audio.T, SR, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = b"\xff\xff\xff\xff"
    path.write_bytes(bytes(data))
    back, _ = read_audio(path)
    assert back.shape == (1, 1000)
    assert info_audio(path)[2] == 1000


def test_complete_wav_with_odd_chunks_is_not_called_truncated(tmp_path: Path) -> None:
    path = tmp_path / "list.wav"
    sf.write(str(path), _noise(1, 777).T, SR, subtype="PCM_24")
    with sf.SoundFile(str(path), "r+") as f:
        f.title = "odd"  # adds a LIST chunk after the data
    assert info_audio(path) == (SR, 1, 777)


# --- disk full (issue 29): say so, not libsndfile's "System error." --------------------------------


def test_disk_full_while_writing_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def full(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sf.SoundFile, "write", full)
    target = tmp_path / "x.wav"
    with pytest.raises(AudioError) as e:
        write_audio(target, _noise(1, 100), SR)
    assert str(e.value) == f"disk full writing {target}"
    assert list(tmp_path.iterdir()) == []


def test_libsndfile_error_on_a_full_disk_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """libsndfile reports ENOSPC as "System error."; the free space on the folder tells them apart."""
    from types import SimpleNamespace

    def failing(self, data):
        raise sf.LibsndfileError(2, prefix="")  # SF_ERR_SYSTEM -> "System error."

    monkeypatch.setattr(sf.SoundFile, "write", failing)
    free = {"bytes": 0}
    monkeypatch.setattr("rtsep.audio.shutil.disk_usage", lambda p: SimpleNamespace(free=free["bytes"]))
    with pytest.raises(AudioError, match=r"^disk full writing .*x\.wav$"):
        write_audio(tmp_path / "x.wav", _noise(1, 100), SR)
    free["bytes"] = 10**11  # plenty of room: another system error keeps libsndfile's words
    with pytest.raises(AudioError, match="System error"):
        write_audio(tmp_path / "x.wav", _noise(1, 100), SR)
    assert list(tmp_path.iterdir()) == []


def _tiny_tmpfs(path: Path) -> bool:
    import subprocess

    path.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(path)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_real_full_disk_on_a_tiny_tmpfs(tmp_path: Path) -> None:
    import subprocess

    disk = tmp_path / "tiny"
    if not _tiny_tmpfs(disk):
        pytest.skip("cannot mount a tmpfs here (needs root); the monkeypatched tests above cover the mapping")
    try:
        for fmt in ("wav", "flac"):
            with pytest.raises(AudioError) as e:
                write_audio(disk / f"x.{fmt}", _noise(1, 200000, seed=5), SR)
            assert str(e.value) == f"disk full writing {disk / f'x.{fmt}'}"
            assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


# --- temp names and stale .part files of killed runs (issue 29) ----------------------------------


def _dead_pid() -> int:
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_temp_name_carries_the_pid(tmp_path: Path) -> None:
    import os as _os

    from rtsep.audio import is_temp_name

    with AtomicWriter(tmp_path / "a.wav", SR, 1) as w:
        (tmp,) = list(tmp_path.iterdir())
        assert tmp.name.startswith(f".a.wav.{_os.getpid()}-") and is_temp_name(tmp.name)
        w.write(_noise(1, 10))
    assert not is_temp_name("a.wav") and not is_temp_name(".a.wav.part") and not is_temp_name("notes.part")


def test_clean_stale_parts_removes_only_dead_runs_temp_files(tmp_path: Path) -> None:
    import os as _os
    import time

    from rtsep.audio import clean_stale_parts

    dead = _dead_pid()
    gone = [tmp_path / f".a.wav.{dead}-0123abcd.part", tmp_path / ".b.wav.89abcdef.part"]  # dead run; old format
    kept = [tmp_path / f".a.wav.{_os.getpid()}-0123abcd.part",  # a live writer (this process)
            tmp_path / f".d.wav.{dead}-0123abcd.part",  # pid unknown here but just written: maybe another host's
            tmp_path / ".c.wav.fedcba98.part",  # old format but fresh: maybe still being written
            tmp_path / "notes.part", tmp_path / ".hidden", tmp_path / "a.wav", tmp_path / ".a.wav.1-xyz.part"]
    stage = tmp_path / f".song.{dead}-00ff00ff.part"  # a dead run's staging folder
    (stage / "song").mkdir(parents=True)
    for p in [*gone, *kept, stage / "song" / "a.wav"]:
        p.write_bytes(b"x")
    old = time.time() - 2 * 3600
    for p in [*gone, kept[0], *kept[3:], stage, stage / "song", stage / "song" / "a.wav"]:
        _os.utime(p, (old, old))
    removed = clean_stale_parts(tmp_path)
    assert sorted(removed) == sorted([*gone, stage])
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert clean_stale_parts(tmp_path / "missing") == []


# --- publishing a set of stems: all or none, FLAC with a stated headroom (issue 29) ---------------


def _staged_pair(folder: Path, peak: float) -> tuple[np.ndarray, list[Path]]:
    x = _noise(2, 5000, seed=6, scale=1.0)
    x *= peak / np.abs(x).max()
    a = (0.7 * x).astype(np.float32)
    b = (x - a).astype(np.float32)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / "a.wav", folder / "b.wav"]
    for p, s in zip(paths, (a, b)):
        write_audio(p, s, SR)
    return x, paths


@pytest.mark.parametrize("peak", [0.5, 1.5])
def test_publish_flac_keeps_loud_stems_summable(tmp_path: Path, peak: float) -> None:
    from rtsep.audio import FLAC_PEAK, publish

    x, staged = _staged_pair(tmp_path / "stage", peak)
    top = max(float(np.abs(read_audio(p)[0]).max()) for p in staged)  # the loudest stem, not the mix
    gain = publish(staged, tmp_path / "out", "flac")
    assert gain == (1.0 if top <= FLAC_PEAK else pytest.approx(FLAC_PEAK / top))
    stems = [read_audio(tmp_path / "out" / f"{s}.flac")[0] for s in "ab"]
    assert max(np.abs(s).max() for s in stems) <= 1.0
    np.testing.assert_allclose((stems[0] + stems[1]) / gain, x, atol=3e-6 * peak / gain)
    if gain < 1:
        assert f"{gain:.6f}" in sf.SoundFile(str(tmp_path / "out" / "a.flac")).comment
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.flac", "b.flac"]
    assert not any((tmp_path / "stage").iterdir())  # the staged copies are moved or removed


def test_publish_wav_moves_float_stems_exactly(tmp_path: Path) -> None:
    from rtsep.audio import publish

    x, staged = _staged_pair(tmp_path / "stage", 1.5)
    before = [read_audio(p)[0] for p in staged]
    assert publish(staged, tmp_path / "out", "wav") == 1.0
    for p, s in zip(staged, before):
        np.testing.assert_array_equal(read_audio(tmp_path / "out" / p.name)[0], s)


@pytest.mark.parametrize("fmt", ["wav", "flac"])
def test_publish_is_all_or_none(tmp_path: Path, fmt: str) -> None:
    from rtsep.audio import publish

    _, staged = _staged_pair(tmp_path / "stage", 0.5)
    (tmp_path / "out" / f"b.{fmt}").mkdir(parents=True)  # the second target cannot be replaced
    with pytest.raises(AudioError):
        publish(staged, tmp_path / "out", fmt)
    assert [p.name for p in (tmp_path / "out").iterdir()] == [f"b.{fmt}"]  # no a.<fmt>, no .part


def test_replacing_keeps_the_old_file_and_no_temp_when_the_write_fails(tmp_path):
    """Cards, checkpoints, graphs, manifests and reports share one atomic writer: a failed write leaves
    the previous file whole and nothing beside it."""
    from rtsep.atomic import replacing, write_text

    path = tmp_path / "card.json"
    write_text(path, "old")
    with pytest.raises(RuntimeError):
        with replacing(path) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["card.json"]
    write_text(path, "new")
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["card.json"]


def test_replacing_lets_the_umask_set_permissions(tmp_path):
    """A written card or graph is readable by the other users of a shared model folder (umask 022: 0644),
    not mkstemp's owner-only 0600."""
    import os
    import stat

    from rtsep.atomic import write_text

    old = os.umask(0o022)
    try:
        write_text(tmp_path / "card.json", "{}")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "card.json").stat().st_mode) == 0o644
