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


# --- issue 29: nothing lost, nothing partial -------------------------------------------------------

def hidden_parts(folder):
    return [p for p in folder.rglob("*") if p.name.endswith(".part")] if folder.exists() else []


def error_lines(result):
    return [ln for ln in result.output.splitlines() if ln.strip() and "━" not in ln]


def test_same_name_in_different_folders_gets_distinct_tracks(random_model, tmp_path):
    rng = np.random.default_rng(5)
    xs = {}
    for folder in ("live", "studio"):
        (tmp_path / folder).mkdir()
        xs[folder] = (rng.standard_normal(5000) * 0.1).astype(np.float32)
        sf.write(tmp_path / folder / "take.wav", xs[folder], 16000, subtype="FLOAT")
    for extra in ([], ["--overwrite"], ["--overwrite"]):  # --overwrite must not let one input replace the other
        r = run(tmp_path / "live" / "take.wav", tmp_path / "studio" / "take.wav", "-o", tmp_path / "out",
                "--model", random_model, "--steps", "0", *extra)
        assert r.exit_code == 0, r.output
        assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["live_take", "studio_take"]
        for folder, x in xs.items():
            a, _ = sf.read(tmp_path / "out" / f"{folder}_take" / "a.wav")
            b, _ = sf.read(tmp_path / "out" / f"{folder}_take" / "b.wav")
            assert np.abs(a + b - x).max() < 1e-5, folder


def test_the_same_input_twice_is_separated_once(random_model, tmp_path):
    sf.write(tmp_path / "m.wav", np.random.default_rng(6).standard_normal(3000).astype(np.float32) * 0.1, 16000)
    r = run(tmp_path / "m.wav", tmp_path / "m.wav", "-o", tmp_path / "out", "--model", random_model, "--steps", "0")
    assert r.exit_code == 0, r.output
    assert stems_of(tmp_path / "out", "m") == ["a.wav", "b.wav"] and len(list((tmp_path / "out").iterdir())) == 1
    assert "given twice" in r.output


def test_truncated_wav_is_refused_not_processed(random_model, tmp_path):
    sf.write(tmp_path / "cut.wav", np.random.default_rng(7).standard_normal(8000).astype(np.float32) * 0.1, 16000)
    data = (tmp_path / "cut.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: len(data) // 2])
    r = run(tmp_path / "cut.wav", "-o", tmp_path / "out", "--model", random_model, "--steps", "0")
    assert r.exit_code != 0
    (line,) = error_lines(r)
    assert "truncated" in line and "8000" in line, line
    assert stems_of(tmp_path / "out", "cut") == [] and hidden_parts(tmp_path / "out") == []


def test_loud_input_to_flac_is_scaled_not_clipped(tmp_path):
    t = np.arange(12000) / 16000
    sine = 1.5 * np.sin(2 * np.pi * 440 * t)  # peak 1.5, above what FLAC holds; toy4 gives it to one stem
    x = np.stack([sine, -0.5 * sine], axis=1).astype(np.float32)
    sf.write(tmp_path / "loud.wav", x, 16000, subtype="FLOAT")
    r = run(tmp_path / "loud.wav", "-o", tmp_path / "out", "--model", "toy4", "--format", "flac")
    assert r.exit_code == 0, r.output
    files = sorted((tmp_path / "out" / "loud").glob("*.flac"))
    assert [f.name for f in files] == ["saw.flac", "sine.flac", "square.flac", "triangle.flac"]
    stems = [sf.read(f)[0] for f in files]
    comments = {sf.SoundFile(f).comment for f in files}
    assert len(comments) == 1, comments  # one gain for the whole set, or they would not sum
    gain = float(comments.pop().split("scaled by ")[1].split()[0])
    assert 0 < gain < 1 and f"{gain:.6f}" in " ".join(r.output.split())  # stated in the files and on the console
    assert max(np.abs(s).max() for s in stems) <= 1.0
    assert np.abs(sum(stems) / gain - x).max() < 1e-5


def test_samples_on_a_model_without_langevin_steps_is_refused(tmp_path):
    sf.write(tmp_path / "m.wav", np.random.default_rng(9).standard_normal(3000).astype(np.float32) * 0.1, 16000)
    r = run(tmp_path / "m.wav", "-o", tmp_path / "out", "--model", "toy4", "--samples", "2")  # toy4: K=0
    assert r.exit_code != 0
    (line,) = error_lines(r)
    assert "--samples" in line and "spread" in line, line
    assert not (tmp_path / "out").exists() or list((tmp_path / "out").rglob("*")) == []


def test_samples_of_a_deterministic_chain_are_refused_and_temperature_gives_a_spread(tmp_path):
    """music4's learned chain runs at temperature 0: --samples alone would write all-zero spread files."""
    sf.write(tmp_path / "m.wav", np.random.default_rng(9).standard_normal(8000).astype(np.float32) * 0.1, 16000)
    r = run(tmp_path / "m.wav", "-o", tmp_path / "out", "--samples", "2")
    assert r.exit_code != 0
    (line,) = error_lines(r)
    assert "temperature 0" in line and "--temperature" in line, line
    r = run(tmp_path / "m.wav", "-o", tmp_path / "out", "--samples", "2", "--temperature", "1")
    assert r.exit_code == 0, r.output
    spread, _ = sf.read(tmp_path / "out" / "m" / "drums.spread.wav")
    assert np.abs(spread).max() > 1e-4


def test_full_disk_is_one_clear_line(random_model, tmp_path, monkeypatch):
    import errno

    real = sf.SoundFile.write
    calls = {"n": 0}

    def full(self, data):
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(sf.SoundFile, "write", full)
    sf.write(tmp_path / "m.wav", np.random.default_rng(10).standard_normal(3000).astype(np.float32) * 0.1, 16000)
    r = run(tmp_path / "m.wav", "-o", tmp_path / "out", "--model", random_model, "--steps", "0")
    assert r.exit_code != 0
    (line,) = error_lines(r)
    assert line.startswith(f"error: disk full writing {tmp_path / 'out' / 'm'}"), line
    assert stems_of(tmp_path / "out", "m") == [] and hidden_parts(tmp_path / "out") == []


def test_stale_parts_of_a_killed_run_are_removed(random_model, tmp_path):
    import os
    import subprocess
    import sys
    import time

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # a pid that is no longer running, as after a SIGKILL
    track = tmp_path / "out" / "m"
    track.mkdir(parents=True)
    stale = [track / f".a.wav.{p.pid}-0123abcd.part", track / ".b.wav.89abcdef.part",
             tmp_path / "out" / f".m.{p.pid}-00ff00ff.part"]
    keep = [track / "notes.txt", track / f".a.wav.{os.getpid()}-0123abcd.part"]
    for f in stale + keep:
        f.write_bytes(b"x")
    old = time.time() - 7200
    for f in stale + keep:
        os.utime(f, (old, old))
    sf.write(tmp_path / "m.wav", np.random.default_rng(11).standard_normal(3000).astype(np.float32) * 0.1, 16000)
    r = run(tmp_path / "m.wav", "-o", tmp_path / "out", "--model", random_model, "--steps", "0")
    assert r.exit_code == 0, r.output
    assert not any(f.exists() for f in stale) and all(f.exists() for f in keep)
    assert stems_of(tmp_path / "out", "m") == sorted(["a.wav", "b.wav", *(f.name for f in keep)])


@pytest.mark.parametrize("models", ["empty", "missing"])
def test_models_without_any_installed_is_one_line(tmp_path, models):
    import os
    import subprocess
    import sys

    root = tmp_path / "models"
    if models == "empty":
        root.mkdir()
    env = {**os.environ, "RTSEP_MODELS": str(root)}
    r = subprocess.run([sys.executable, "-m", "rtsep", "models"], env=env, capture_output=True, text=True, timeout=120)
    text = (r.stdout + r.stderr).strip()
    assert "Traceback" not in text and len(text.splitlines()) == 1, text
    assert str(root) in text and "no models" in text
    assert r.returncode != 0


def test_models_lists_installed_and_marks_a_broken_card(tmp_path, monkeypatch):
    import shutil

    root = tmp_path / "models"
    shutil.copytree(next(p for p in __import__("pathlib").Path(__file__).parents if (p / "models").is_dir())
                    / "models" / "toy4", root / "toy4", ignore=shutil.ignore_patterns("*.pt", "onnx", "priors"))
    (root / "broken").mkdir()
    (root / "broken" / "card.json").write_text("{not json")
    monkeypatch.setenv("RTSEP_MODELS", str(root))
    r = CliRunner().invoke(app, ["models"])
    assert r.exit_code == 0, r.output
    lines = r.output.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("broken: ") and lines[1].startswith("toy4: sources "), lines


LONG_SECONDS = 180  # a few seconds of work even on an idle machine: the signal must land mid-file


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_signal_mid_file_leaves_nothing_partial(tmp_path, sig):
    """What docker stop / systemd / CI send (SIGTERM), and Ctrl-C: one line, non-zero, nothing partial."""
    import os
    import signal
    import subprocess
    import sys
    import time

    x = (np.random.default_rng(12).standard_normal(16000 * LONG_SECONDS) * 0.1).astype(np.float32)
    sf.write(tmp_path / "long.wav", x, 16000)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rtsep", "file", str(tmp_path / "long.wav"), "-o", str(out),
                             "--model", "toy4", "--steps", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # ^ a shell's background job starts with SIGINT ignored, and Python then installs no Ctrl-C handler
    deadline = time.monotonic() + 120
    while not [p for p in hidden_parts(out) if p.is_file()] and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)  # wait until stems are being written
    assert proc.poll() is None, "finished before it could be interrupted: make the input longer"
    proc.send_signal(getattr(signal, sig))
    stdout, stderr = proc.communicate(timeout=60)
    lines = [ln for ln in (stdout + stderr).splitlines() if ln.strip() and "━" not in ln]
    assert proc.returncode == {"SIGTERM": 143, "SIGINT": 130}[sig], (proc.returncode, stdout, stderr)
    assert "Traceback" not in stderr and len(lines) == 1, lines
    assert hidden_parts(out) == [] and list(out.rglob("*.wav")) == []
    assert not os.path.exists(out / "long")
