"""`rtsep file`: stems sum to the input; bad input gets one line, a non-zero exit and no stems."""

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from rtsep.cli import app


def run(*args):
    return CliRunner().invoke(app, ["file", *map(str, args)])


def one_line_error(result):
    lines = [ln for ln in result.output.splitlines() if ln.strip() and "━" not in ln]
    return [ln for ln in lines if ln.startswith("error:")]


def stems_of(out, track):
    return sorted(p.name for p in (out / track).glob("*")) if (out / track).exists() else []


def test_happy_path_stereo_44k(random_model, tmp_path):
    x = (np.random.default_rng(0).standard_normal((30000, 2)) * 0.2).astype(np.float32)
    sf.write(tmp_path / "song.wav", x, 44100, subtype="FLOAT")
    r = run(tmp_path / "song.wav", "-o", tmp_path / "out", "--model", random_model, "--steps", "1", "--format", "flac")
    assert r.exit_code == 0, r.output
    stems = [sf.read(tmp_path / "out" / "song" / f"{s}.flac") for s in ("a", "b")]
    assert all(sr == 44100 and a.shape == x.shape for a, sr in stems)
    total = sum(a for a, _ in stems)
    assert 10 * np.log10(np.mean((total - x) ** 2) / np.mean(x**2)) < -40  # FLAC is 24-bit
    # never overwrite silently
    r = run(tmp_path / "song.wav", "-o", tmp_path / "out", "--model", random_model, "--format", "flac")
    assert r.exit_code != 0 and len(one_line_error(r)) == 1


def test_samples_write_spread(random_model, tmp_path):
    sf.write(tmp_path / "m.wav", np.random.default_rng(1).standard_normal(8000).astype(np.float32) * 0.1, 16000)
    r = run(tmp_path / "m.wav", "-o", tmp_path / "o", "--model", random_model, "--samples", "3", "--steps", "2")
    assert r.exit_code == 0, r.output
    assert stems_of(tmp_path / "o", "m") == ["a.spread.wav", "a.wav", "b.spread.wav", "b.wav"]
    spread, _ = sf.read(tmp_path / "o" / "m" / "a.spread.wav")
    assert spread.std() > 0


def test_mask_space_chain_sums_to_input_and_samples(random_model, tmp_path):
    x = np.random.default_rng(2).standard_normal(9000).astype(np.float32) * 0.1
    sf.write(tmp_path / "m.wav", x, 16000, subtype="FLOAT")
    r = run(tmp_path / "m.wav", "-o", tmp_path / "o", "--model", random_model, "--samples", "2", "--steps", "3",
            "--space", "mask")
    assert r.exit_code == 0, r.output
    a, _ = sf.read(tmp_path / "o" / "m" / "a.wav")
    b, _ = sf.read(tmp_path / "o" / "m" / "b.wav")
    assert np.abs(a + b - x).max() < 1e-5
    spread, _ = sf.read(tmp_path / "o" / "m" / "a.spread.wav")
    assert spread.std() > 0  # temperature 1: the chains differ


def bad_inputs(tmp_path):
    (tmp_path / "text.wav").write_text("not audio at all")
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1), np.float32), 16000)
    nan = np.zeros(4000, np.float32)
    nan[100] = np.nan
    sf.write(tmp_path / "nan.wav", nan, 16000, subtype="FLOAT")
    (tmp_path / "unsupported.xyz").write_bytes(b"\x00\x01" * 100)
    return ["text.wav", "empty.wav", "nan.wav", "unsupported.xyz", "missing.wav"]


def test_bad_inputs_fail_one_line_each_and_good_ones_still_run(random_model, tmp_path):
    names = bad_inputs(tmp_path)
    sf.write(tmp_path / "good.wav", np.random.default_rng(2).standard_normal(4000).astype(np.float32) * 0.1, 16000)
    r = run(*[tmp_path / n for n in names], tmp_path / "good.wav", "-o", tmp_path / "out", "--model", random_model)
    assert r.exit_code != 0
    assert r.exception is None or isinstance(r.exception, SystemExit)
    errors = one_line_error(r)
    assert len(errors) == len(names), r.output
    for n in names:
        assert stems_of(tmp_path / "out", n.split(".")[0]) == [], n
    assert stems_of(tmp_path / "out", "good") == ["a.wav", "b.wav"]


def test_silent_input_gives_silent_stems(random_model, tmp_path):
    sf.write(tmp_path / "quiet.wav", np.zeros(5000, np.float32), 16000)
    r = run(tmp_path / "quiet.wav", "-o", tmp_path / "out", "--model", random_model, "--steps", "0")
    assert r.exit_code == 0, r.output
    a, _ = sf.read(tmp_path / "out" / "quiet" / "a.wav")
    assert len(a) == 5000 and np.abs(a).max() == 0


@pytest.mark.parametrize("case", ["unwritable", "bad_model", "bad_format", "bad_space"])
def test_setup_errors(random_model, tmp_path, case):
    sf.write(tmp_path / "m.wav", np.zeros(1000, np.float32), 16000)
    args = [tmp_path / "m.wav", "-o", tmp_path / "out", "--model", random_model]
    if case == "unwritable":
        (tmp_path / "afile").write_text("x")
        args[2] = tmp_path / "afile" / "out"
    elif case == "bad_model":
        args[4] = tmp_path / "nope"
    elif case == "bad_format":
        args += ["--format", "mp4"]
    else:
        args += ["--space", "latent"]
    r = run(*args)
    assert r.exit_code != 0 and len(one_line_error(r)) == 1, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit)


def test_interrupt_leaves_no_partial_stem(random_model, tmp_path, monkeypatch):
    from rtsep.engine import BlockEngine

    sf.write(tmp_path / "long.wav", np.random.default_rng(3).standard_normal(200000).astype(np.float32) * 0.1, 16000)
    calls = {"n": 0}
    real = BlockEngine.process

    def interrupted(self, state, chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, state, chunk)

    monkeypatch.setattr(BlockEngine, "process", interrupted)
    r = CliRunner().invoke(app, ["file", str(tmp_path / "long.wav"), "-o", str(tmp_path / "out"), "--model",
                                 str(random_model), "--steps", "0"])
    assert r.exit_code == 130
    assert list((tmp_path / "out").rglob("*.wav")) == [] and list((tmp_path / "out").rglob("*.part")) == []


def test_eval_with_an_out_of_range_chain_setting_is_one_line(toy_data):
    r = CliRunner().invoke(app, ["eval", "separate", "toy4", "--data", str(toy_data), "--clips", "1", "--steps", "1",
                                 "--space", "signal", "--relabel-every", "2"])
    assert r.exit_code == 6, r.output
    assert "relabel_every 2" in r.output and "Traceback" not in r.output and len(r.output.strip().splitlines()) == 1
