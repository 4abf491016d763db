"""Property test of `rtsep file` on generated and mutated WAVs (issue 29).

Random subtypes, rates and channel counts, NaN/Inf samples, zero length, then one mutation: random
header bytes, a cut body, flipped body bytes, a random data-chunk size or trailing junk. Whatever
the bytes, `rtsep file` either succeeds with stems that sum to the input (as libsndfile reads it),
or exits non-zero with exactly one line; never a traceback, a `.part` file or a partial stem.
The model (toy4 on its default backend, ONNX Runtime) is loaded once: the file path is under test.
"""

from __future__ import annotations

import io
import struct
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from rtsep.cli import app
from rtsep.separator import Separator

SUBTYPES = ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE", "ULAW", "ALAW"]
MUTATIONS = ["none", "header", "truncate", "body", "data_size", "junk"]


@st.composite
def wav_files(draw) -> tuple[bytes, str]:
    """(file bytes, a description for the failure message)."""
    subtype = draw(st.sampled_from(SUBTYPES))
    bucket = draw(st.integers(0, 9))  # mostly usable files, so the success path is fuzzed too
    if bucket < 7:
        rate = draw(st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000]))
    elif bucket < 9:
        rate = draw(st.integers(1000, 200_000))  # odd but usable rates
    else:
        rate = draw(st.integers(1, 999) | st.integers(768_001, 2**31 - 1))  # refused
    channels = draw(st.integers(1, 3))
    frames = draw(st.integers(1, 1500)) if draw(st.integers(0, 9)) else 0
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    audio = rng.uniform(-1, 1, (frames, channels)) * draw(st.sampled_from([0.0, 1e-3, 0.3, 1.0, 1.7]))
    if frames and subtype in ("FLOAT", "DOUBLE") and not draw(st.integers(0, 3)):
        audio[draw(st.integers(0, frames - 1)), 0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e30]))
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="WAV", subtype=subtype)
    data = bytearray(buf.getvalue())
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "header":
        for _ in range(draw(st.integers(1, 4))):
            data[draw(st.integers(0, min(len(data), 80) - 1))] = draw(st.integers(0, 255))
    elif mutation == "truncate":
        data = data[: draw(st.integers(0, len(data)))]
    elif mutation == "body" and len(data) > 80:
        for _ in range(draw(st.integers(1, 16))):
            data[draw(st.integers(80, len(data) - 1))] = draw(st.integers(0, 255))
    elif mutation == "data_size":
        at = data.find(b"data")
        if at >= 0:
            data[at + 4:at + 8] = struct.pack("<I", draw(st.integers(0, 2**32 - 1)))
    elif mutation == "junk":
        data += bytes(draw(st.binary(min_size=1, max_size=64)))
    return bytes(data), f"{subtype} {rate} Hz {channels} ch {frames} frames, mutation {mutation}"


@pytest.fixture(scope="module")
def loaded_once():
    """`rtsep file` loads the model once per run; here once for all examples (the files are under test)."""
    sep = Separator.load("toy4")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Separator, "load", classmethod(lambda cls, *args, **kwargs: sep))
        yield sep


def _lines(output: str, *names: str) -> list[str]:
    """Output lines other than the progress bar's (its bar, or its task name when the bar is squeezed)."""
    return [ln for ln in output.splitlines()
            if ln.strip() and "━" not in ln and not any(ln.startswith(n[:6]) for n in names)]


@settings(max_examples=48, deadline=None, database=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=wav_files())
def test_file_survives_fuzzed_wavs(loaded_once, case):
    data, what = case
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = work / "in.wav"
        src.write_bytes(data)
        out = work / "out"
        r = CliRunner().invoke(app, ["file", str(src), "-o", str(out), "--model", "toy4"])
        assert r.exception is None or isinstance(r.exception, SystemExit), (what, r.exception)
        assert "Traceback" not in r.output, what
        written = [p for p in out.rglob("*") if p.is_file()] if out.exists() else []
        assert not [p for p in (out.rglob("*") if out.exists() else []) if p.name.endswith(".part")], what
        lines = _lines(r.output, src.name)
        if r.exit_code != 0:
            assert len(lines) == 1 and lines[0].startswith("error:"), (what, lines)
            assert written == [], (what, written)  # no stem at all, partial or whole
            return
        assert lines == [], (what, lines)
        stems = sorted(written)
        assert [p.name for p in stems] == [f"{s}.wav" for s in sorted(loaded_once.sources)], (what, stems)
        x, sr = sf.read(src, dtype="float32", always_2d=True)
        total = 0.0
        for p in stems:
            y, sr_y = sf.read(p, dtype="float32", always_2d=True)
            assert sr_y == sr and y.shape == x.shape, (what, p.name, y.shape, x.shape)
            total = total + y.astype(np.float64)
        assert np.abs(total - x).max() <= 1e-4 * max(1.0, float(np.abs(x).max())), what


def test_the_generator_covers_both_outcomes(loaded_once, tmp_path):
    """The property above must see successes and refusals, or it proves little: check both kinds."""
    good = io.BytesIO()
    sf.write(good, np.zeros((800, 2)) + 0.1, 16000, format="WAV", subtype="PCM_16")
    (tmp_path / "good.wav").write_bytes(good.getvalue())
    (tmp_path / "cut.wav").write_bytes(good.getvalue()[:1000])
    r = CliRunner().invoke(app, ["file", str(tmp_path / "good.wav"), str(tmp_path / "cut.wav"), "-o",
                                 str(tmp_path / "out"), "--model", "toy4"])
    assert r.exit_code == 2
    (line,) = _lines(r.output, "good.wav")
    assert line.startswith("error:") and "cut.wav: truncated" in line
    assert len(list((tmp_path / "out" / "good").glob("*.wav"))) == 4 and not (tmp_path / "out" / "cut").exists()
