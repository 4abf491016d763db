"""`rtsep live` end to end through a real JACK server on its dummy backend: no sound card needed.

The test process drives PortAudio's JACK ports with JACK-Client (a player and a recorder, two
clients so the graph has no cycle and adds no period), while `python -m rtsep live` runs in a
subprocess: PortAudio enumerates devices when sounddevice is imported, so the JACK server must
exist and JACK_DEFAULT_SERVER must be set before that process starts (RECIPES.md).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tools"))
from jack_harness import PERIOD, REPO, JackServer, find_delay, wait_for_ports  # noqa: E402

SR = 16000
HOP, CONTEXT, LOOKAHEAD, CROSSFADE = 512, 4096, 512, 256
SOURCES = ("sine", "saw")

needs_jack = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd is not installed (apt-get install jackd2)")
TOY4 = REPO / "models" / "toy4"
PERIOD48 = 1024  # 21 ms cycles at 48 kHz: the test's Python JACK clients keep up on a busy machine


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jack_server(tmp_path_factory):
    server = JackServer(f"rtsep-test-{os.getpid()}", tmp_path_factory.mktemp("jack") / "jackd.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jack48(tmp_path_factory):
    """A 48 kHz server with two playback ports: a stereo sound card at the usual rate."""
    server = JackServer(f"rtsep-test48-{os.getpid()}", tmp_path_factory.mktemp("jack48") / "jackd.log", rate=48000,
                        capture=2, playback=2, period=PERIOD48)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    """Random-init tiny priors and encoder for two sources; consistency on, so stems sum to the input."""
    from rtsep.card import update_card
    from rtsep.nn.encoder import Encoder, EncoderConfig
    from rtsep.nn.flow import FlowPrior, PriorConfig
    from rtsep.train.checkpoint import save_weights

    model_dir = tmp_path_factory.mktemp("live-model")
    torch.manual_seed(0)
    for s in SOURCES:
        cfg = PriorConfig(source=s, sample_rate=SR, n_flows=2, hidden=8, layers=2)
        prior = FlowPrior(cfg).train()
        with torch.no_grad():
            prior(torch.randn(2, 1, 512) * 0.3, 0.1)  # sets ActNorm's `initialized` buffer
        save_weights(model_dir / "priors" / f"{s}.pt", prior)
        update_card(model_dir, "priors", s, value={"config": cfg.to_dict()})
    ecfg = EncoderConfig(sources=list(SOURCES), sample_rate=SR, filters=16, bottleneck=8, hidden=16, blocks=2,
                         consistency=True)
    save_weights(model_dir / "encoder.pt", Encoder(ecfg))
    update_card(model_dir, "encoder", value={"config": ecfg.to_dict()})
    update_card(model_dir, "sample_rate", value=SR)
    return model_dir


# -- helpers -----------------------------------------------------------------------------------------

def rtsep(server: JackServer, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rtsep", *map(str, args)], env=server.env, cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)


def live_args(model: Path, *extra) -> list:
    return ["live", "--device", "jack", "--model", model, "--steps", "0", "--threads", "1", "--hop", HOP,
            "--context", CONTEXT, "--lookahead", LOOKAHEAD, "--crossfade", CROSSFADE, *extra]


# `python -m rtsep` that also says, as it exits, whether torch was imported (the ONNX path must not).
TORCH_PROBE = ("import atexit, sys\n"
               "atexit.register(lambda: print('torch imported:', 'torch' in sys.modules, flush=True))\n"
               "sys.argv[0] = 'rtsep'\n"
               "from rtsep.cli import main\n"
               "main()\n")


def start_live(server: JackServer, *args, probe_torch: bool = False) -> subprocess.Popen:
    head = ["-c", TORCH_PROBE] if probe_torch else ["-m", "rtsep"]
    return subprocess.Popen([sys.executable, *head, *map(str, args)], env=server.env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_portaudio(client, proc: subprocess.Popen, ports=("PortAudio:in_0", "PortAudio:out_0")) -> None:
    try:
        wait_for_ports(client, proc, ports)
    except RuntimeError as exc:
        pytest.fail(str(exc))


def start_and_wait(server: JackServer, *args) -> subprocess.Popen:
    """`rtsep live ARGS` once its JACK ports exist, plus a second for its blocks to flow."""
    proc = start_live(server, *args)
    client = server.client("rtsep-watch")
    try:
        wait_for_portaudio(client, proc)
    finally:
        client.close()
    time.sleep(1.0)
    return proc


def mixture(seconds: float) -> np.ndarray:
    """Sine 440 Hz and saw 110 Hz, mixed by mean (as the model mixes)."""
    t = np.arange(int(seconds * SR)) / SR
    sine = 0.8 * np.sin(2 * np.pi * 440 * t)
    saw = 0.8 * (2 * ((110 * t) % 1.0) - 1)
    return ((sine + saw) / 2).astype(np.float32)



def assert_played(got: np.ndarray, want: np.ndarray, stats: dict, atol: float = 1e-4) -> None:
    """got == want to atol, except where the run itself reported output dropouts: a callback the worker
    starved plays silence and counts in stats['underflows'] (a busy CI machine may cause one). A
    mismatch that is not silence, or silence the stats do not account for, fails."""
    bad = np.abs(got - want) > atol
    if not bad.any():
        return
    assert np.abs(got[bad]).max() < atol, f"{bad.sum()} samples differ and are not dropouts"
    assert bad.sum() <= stats["underflows"] * stats["block_frames"], (
        f"{bad.sum()} samples of silence, {stats['underflows']} underflows reported", stats)

def drive(server: JackServer, proc: subprocess.Popen, inputs: list[np.ndarray], outputs: int,
          tail: float = 0.6) -> tuple[np.ndarray, int]:
    """Play inputs[k] into PortAudio:in_k and record PortAudio:out_0..outputs-1 through JACK-Client
    (two clients: no graph cycle). Returns (recorded (outputs, T), index in it where playing began)."""
    rate = server.rate
    player, recorder = server.client("rtsep-player"), server.client("rtsep-recorder")
    try:
        # Ports only once the live process has enumerated its devices: PortAudio lists every JACK
        # client with ports as a device of its own.
        wait_for_portaudio(player, proc, tuple(f"PortAudio:in_{i}" for i in range(len(inputs)))
                           + tuple(f"PortAudio:out_{i}" for i in range(outputs)))
        outs = [player.outports.register(f"out_{i}") for i in range(len(inputs))]
        ins = [recorder.inports.register(f"in_{i}") for i in range(outputs)]
        go, play_start, chunks, recording = threading.Event(), [], [], threading.Event()

        @player.set_process_callback
        def play(frames):
            now = player.last_frame_time
            if go.is_set() and not play_start:
                play_start.append(now)
            for port, sig in zip(outs, inputs):
                buf = port.get_array()
                buf[:] = 0
                if play_start:
                    seg = sig[now - play_start[0] : now - play_start[0] + frames]
                    buf[: len(seg)] = seg

        @recorder.set_process_callback
        def record(frames):
            if recording.is_set():
                chunks.append((recorder.last_frame_time, [p.get_array().copy() for p in ins]))

        player.activate()
        recorder.activate()
        for port in player.get_ports("PortAudio:"):  # PortAudio auto-connects to system:*: undo that
            for other in player.get_all_connections(port):
                if port.is_input:
                    player.disconnect(other, port)
                else:
                    player.disconnect(port, other)
        for i, port in enumerate(outs):
            player.connect(port, f"PortAudio:in_{i}")
        for i, port in enumerate(ins):
            recorder.connect(f"PortAudio:out_{i}", port)
        recording.set()
        time.sleep(0.1)
        go.set()
        time.sleep(max(len(x) for x in inputs) / rate + tail)  # the signal plus well over the latency
        recording.clear()
    except BaseException:
        proc.kill()
        raise
    finally:
        for c in (player, recorder):
            c.deactivate()
            c.close()
    # The recorder saw every cycle from its first: a gapless timeline in JACK frames.
    times = np.array([t for t, _ in chunks])
    gaps = np.unique(np.diff(times))
    assert np.all(np.diff(times) == server.period), f"the test's recorder missed JACK cycles: {gaps}"
    y = np.stack([np.concatenate([ch[k] for _, ch in chunks]) for k in range(outputs)])
    at = play_start[0] - int(times[0])  # where the played signal starts in y's timeline
    assert at >= 0
    return y, at


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[str, str]:
    try:
        return proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()


def tone_mix(rate: int, seconds: float, sine: float, saw: float) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return ((sine * np.sin(2 * np.pi * 440 * t) + saw * (2 * ((110 * t) % 1.0) - 1)) / 2).astype(np.float32)


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines and lines[-1].startswith("error:"), stderr
    return lines[-1]


# -- routing and timing, no JACK needed -------------------------------------------------------------

M4 = ("bass", "drums", "guitar", "piano")


def test_default_routes_follow_the_device():
    from rtsep.live import parse_route

    np.testing.assert_array_equal(parse_route(None, M4, 4).gains, np.eye(4))  # enough channels: one each
    np.testing.assert_array_equal(parse_route(None, M4, 8).gains, np.eye(4))
    stereo = parse_route(None, M4, 2).gains  # a stereo device: first source left, last right, linear pan
    np.testing.assert_allclose(stereo, [[1, 2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3, 1]])
    np.testing.assert_allclose(stereo.sum(axis=0), 1.0)  # L + R still sums to the input
    np.testing.assert_array_equal(parse_route(None, M4, 1).gains, np.ones((1, 4)))


def test_route_spec_gains_mute_solo():
    from rtsep.live import parse_route

    r = parse_route("drums=L,*=R", M4, 2)
    np.testing.assert_array_equal(r.gains, [[0, 1, 0, 0], [1, 0, 1, 1]])
    r = parse_route("guitar=mute,bass=L:0.5+R:-6dB", M4, 2)
    np.testing.assert_allclose(r.gains[:, 0], [0.5, 10 ** (-6 / 20)])
    assert not r.gains[:, 2].any() and "guitar muted" in r.describe()
    np.testing.assert_allclose(r.gains[:, 1], [2 / 3, 1 / 3])  # unnamed sources keep the default layout
    r = parse_route("drums=3,piano=C", M4, 4)
    assert r.channels == 4 and r.gains[2, 1] == 1 and list(r.gains[:2, 3]) == [0.5, 0.5]
    assert parse_route("drums=6", M4, 2).channels == 6  # the session refuses it against the device
    r = parse_route(None, M4, 2, solo=("drums",))
    assert r.gains[:, [0, 2, 3]].sum() == 0 and r.gains[:, 1].sum() == pytest.approx(1.0)


@pytest.mark.parametrize("spec, words", [("nosuch=L", "no source 'nosuch'"), ("drums", "SOURCE=TARGETS"),
                                         ("drums=X", "target 'X'"), ("drums=L:loud", "gain 'loud'"),
                                         ("drums=L,drums=R", "twice"), ("drums=0", "target '0'")])
def test_bad_route_is_one_config_error(spec, words):
    from rtsep.errors import ConfigError
    from rtsep.live import parse_route

    with pytest.raises(ConfigError) as e:
        parse_route(spec, M4, 2)
    assert words in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="--solo 'x'"):
        parse_route(None, M4, 2, solo=("x",))


def test_processing_lead_is_the_algorithmic_latency_plus_the_resamplers():
    from rtsep.engine import BlockGeometry
    from rtsep.live import processing_lead

    g = BlockGeometry(hop=512, context=2048, lookahead=512, crossfade=256)
    assert processing_lead(g, 16000, 16000, 256) == 1024  # no resampling: hop + lookahead exactly
    assert processing_lead(g, 16000, 16000, 300) == 1320  # a callback that does not divide the hop
    lead48 = processing_lead(g, 16000, 48000, 256)
    assert 3 * 1024 < lead48 < 3 * 1024 + 48000 // 10  # the soxr streams add their delay, well under 100 ms


def test_live_modules_import_no_torch_nor_portaudio():
    code = ("import sys, rtsep.live, rtsep.live.session, rtsep.live.routing, rtsep.live.devices; "
            "print('torch' in sys.modules, 'sounddevice' in sys.modules)")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.split() == ["False", "False"], r.stderr


# -- through JACK ----------------------------------------------------------------------------------------

@needs_jack
def test_devices_lists_jack(jack_server):
    r = rtsep(jack_server, "devices")
    assert r.returncode == 0, r.stderr
    assert "JACK Audio Connection Kit" in r.stdout and "system" in r.stdout


@needs_jack
def test_unknown_device_is_one_line_error(jack_server, tiny_model):
    r = rtsep(jack_server, "live", "--device", "nonexistent-device", "--model", tiny_model, "--seconds", "1")
    assert r.returncode == 5
    line = one_line_error(r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "nonexistent-device" in line
    r = rtsep(jack_server, "live", "--device", "jack", "--channels", "3", "--model", tiny_model, "--seconds", "1")
    assert r.returncode == 5 and "channel" in one_line_error(r.stderr)
    # Two routed channels from device channel 4 of 4: the count the device has and the channels needed.
    r = rtsep(jack_server, *live_args(tiny_model, "--output-channel", "4", "--route", "sine=1,saw=2", "--seconds", "1"))
    line = one_line_error(r.stderr)
    assert r.returncode == 5 and "has 4 output channel(s)" in line and "channels 4-5" in line, line
    r = rtsep(jack_server, *live_args(tiny_model, "--output-channel", "5", "--seconds", "1"))
    line = one_line_error(r.stderr)
    assert r.returncode == 5 and "has 4 output channel(s)" in line and "--output-channel 5" in line, line
    r = rtsep(jack_server, "live", "--device", "jack", "--model", tiny_model, "--route", "drums=L", "--seconds", "1")
    assert r.returncode == 6 and "no source 'drums'" in one_line_error(r.stderr)
    r = rtsep(jack_server, *live_args(tiny_model, "--rate", "48000", "--seconds", "1"))  # a 16 kHz server
    line = one_line_error(r.stderr)
    assert r.returncode == 5 and "48000 Hz" in line and "native rate is 16000 Hz" in line, line


@needs_jack
def test_live_sums_to_input_at_reported_latency(jack_server, tiny_model, tmp_path):
    """Stems on the output ports sum to input channel 2, delayed by exactly the reported latency."""
    rec_dir, stats_path = tmp_path / "rec", tmp_path / "stats.json"
    x = mixture(3.0)
    distractor = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(x)) / SR)).astype(np.float32)
    proc = start_live(jack_server, *live_args(tiny_model, "--channels", "2", "--seconds", "5.5", "--record", rec_dir,
                                              "--json", stats_path))
    y, at = drive(jack_server, proc, [distractor, x], outputs=2, tail=0.4)
    out, err = finish(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    stats = json.loads(stats_path.read_text())
    assert stats["sample_rate"] == stats["model_sample_rate"] == SR
    assert stats["latency_samples"] == HOP + LOOKAHEAD + PERIOD == 1280, stats
    assert stats["algorithmic_latency_samples"] == HOP + LOOKAHEAD and stats["resampler_latency_samples"] == 0
    assert stats["block_frames"] == PERIOD
    assert (stats["overflows"], stats["underflows"], stats["late_blocks"]) == (0, 0, 0), stats
    assert stats["blocks"] > 4.5 * SR / HOP and stats["kept_up"]
    assert stats["route"]["gains"] == [[1.0, 0.0], [0.0, 1.0]]  # 4 device outputs, 2 sources: one each
    assert "late blocks 0" in out

    y = y.sum(axis=0)  # sum of the source channels
    delay = find_delay(y[at:], x, max_lag=4 * SR // 10)
    assert delay == stats["latency_samples"], (delay, stats)
    assert len(y) >= at + delay + len(x)
    assert_played(y[at + delay : at + delay + len(x)], x, stats)
    assert np.abs(y[: at + delay]).max() < 1e-4  # silence before, not the distractor on channel 1

    # Recordings: complete files, one per source, summing to the input the stream took in.
    files = [rec_dir / f"{s}.wav" for s in SOURCES]
    stems = []
    for f in files:
        data, sr = sf.read(f, dtype="float32")
        assert sr == SR and data.ndim == 1
        stems.append(data)
    assert len({len(s) for s in stems}) == 1 and len(stems[0]) == stats["recorded_samples"]
    assert not list(rec_dir.glob(".*.part"))
    r = stems[0] + stems[1]
    start = find_delay(r, x, max_lag=len(r) - len(x))
    np.testing.assert_allclose(r[start : start + len(x)], x, atol=1e-4, rtol=0)
    assert np.abs(stems[0] - stems[1]).max() > 1e-3  # two different stems, not two copies of the mix / 2


@needs_jack
def test_routed_source_lands_on_its_channel_at_48k(jack48, tmp_path):
    """toy4 at a 48 kHz stereo device: `sine=L,*=R` puts a sine-heavy mixture's sine on L; L + R is the
    input, resampled to 16 kHz and back, delayed by exactly the reported latency (with a 10 ms margin)."""
    rate, stats_path = 48000, tmp_path / "stats.json"
    x = tone_mix(rate, 3.0, sine=0.8, saw=0.05)  # offline, toy4 puts ~27x more energy on sine than the rest
    proc = start_live(jack48, "live", "--device", "jack", "--model", TOY4, "--threads", "1", "--route", "sine=L,*=R",
                      "--margin", "10", "--seconds", "5.5", "--json", stats_path)
    y, at = drive(jack48, proc, [x], outputs=2)
    out, err = finish(proc)
    assert proc.returncode == 0 and "Traceback" not in err, err
    stats = json.loads(stats_path.read_text())
    assert (stats["sample_rate"], stats["model_sample_rate"]) == (rate, 16000)
    assert stats["route"]["channels"] == 2 and stats["route"]["gains"][0] == [0.0, 1.0, 0.0, 0.0]
    assert stats["resampler_latency_samples"] > 0
    assert stats["block_frames"] == PERIOD48
    assert stats["margin_samples"] == 480  # --margin 10 (ms)
    assert stats["latency_samples"] == 3 * (HOP + 512) + stats["resampler_latency_samples"] + PERIOD48 + 480
    assert stats["kept_up"], stats
    delay = find_delay(y.sum(axis=0)[at:], x, max_lag=rate // 2)
    assert delay == stats["latency_samples"], (delay, stats)
    seg = y[:, at + delay : at + delay + len(x)]
    assert_played(seg.sum(axis=0), x, stats)
    left, right = np.square(seg[:, rate:], dtype=np.float64).sum(axis=1)  # past the first second's context
    assert left > 10 * right > 0, (left, right)


@needs_jack
def test_default_model_records_at_device_rate_and_sigterm_ends_cleanly(jack48, tmp_path):
    """`rtsep live` with no model option (the default, music4) on a 48 kHz stereo device: the stereo
    default route, recordings at 48 kHz that sum to what was played, SIGTERM ends it as Ctrl-C, and
    the default ONNX path never imports torch."""
    from rtsep.audio import resample

    rate, rec_dir, stats_path = 48000, tmp_path / "rec", tmp_path / "stats.json"
    mix, sr = sf.read(REPO / "examples" / "music4-mix.wav", dtype="float32")
    x = resample(mix[None, : 3 * sr], sr, rate)[0]
    proc = start_live(jack48, "live", "--device", "jack", "--threads", "1", "--seconds", "60", "--record", rec_dir,
                      "--json", stats_path, probe_torch=True)
    y, at = drive(jack48, proc, [x], outputs=2)
    reader = jack48.client("rtsep-aliases")
    try:  # the JACK ports are named by the sources they carry (the default pan: three on each side)
        aliases = [reader.get_port_by_name(f"PortAudio:out_{i}").aliases for i in range(2)]
    finally:
        reader.close()
    proc.send_signal(signal.SIGTERM)
    out, err = finish(proc, timeout=30)
    assert proc.returncode == 0 and "Traceback" not in err, err
    assert "live:" in out and f"recorded to {rec_dir}" in out
    assert "torch imported: False" in out  # the default backend for music4 is ONNX Runtime, without torch
    stats = json.loads(stats_path.read_text())
    assert stats["sources"] == ["bass", "drums", "guitar", "piano"] and stats["sample_rate"] == rate
    np.testing.assert_allclose(stats["route"]["gains"], [[1, 2 / 3, 1 / 3, 0], [0, 1 / 3, 2 / 3, 1]], atol=1e-6)
    assert stats["kept_up"], stats
    assert aliases == [["rtsep:bass+drums+guitar"], ["rtsep:drums+guitar+piano"]], (aliases, stats["jack_port_aliases"])
    assert stats["jack_port_aliases"] == {"PortAudio:out_0": "rtsep:bass+drums+guitar",
                                          "PortAudio:out_1": "rtsep:drums+guitar+piano"}
    delay = find_delay(y.sum(axis=0)[at:], x, max_lag=rate // 2)
    assert delay == stats["latency_samples"]
    assert_played(y.sum(axis=0)[at + delay : at + delay + len(x)], x, stats)
    assert np.abs(y[0] - y[1]).max() > 1e-2  # L and R differ: separated, not mix/2 twice
    stems = []
    for s in stats["sources"]:
        data, file_rate = sf.read(rec_dir / f"{s}.wav", dtype="float32")
        assert file_rate == rate
        stems.append(data)
    assert {len(s) for s in stems} == {stats["recorded_samples"]}
    r = np.sum(stems, axis=0)
    start = find_delay(r, x, max_lag=len(r) - len(x))
    np.testing.assert_allclose(r[start : start + len(x)], x, atol=1e-4, rtol=0)
    assert not list(rec_dir.glob(".*.part"))


@needs_jack
def test_falling_behind_exits_non_zero_with_a_hint(jack_server):
    """Too many Langevin steps on the torch backend: blocks come late, so exit 7 and one line naming the fixes."""
    proc = start_live(jack_server, "live", "--device", "jack", "--model", TOY4, "--backend", "torch", "--steps", "2",
                      "--threads", "1", "--seconds", "2")
    out, err = finish(proc)
    line = one_line_error(err)
    assert proc.returncode == 7, (out, err)
    assert "could not keep up" in line and "--backend onnx" in line and "--steps (now 2)" in line, line


@needs_jack
def test_ctrl_c_stops_cleanly_and_finalises(jack_server, tiny_model, tmp_path):
    rec_dir = tmp_path / "rec"
    proc = start_and_wait(jack_server, *live_args(tiny_model, "--seconds", "60", "--record", rec_dir))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "live:" in out
    lengths = {sf.info(rec_dir / f"{s}.wav").frames for s in SOURCES}
    assert len(lengths) == 1 and lengths.pop() >= SR // 2


@needs_jack
def test_device_vanishing_mid_stream_is_one_line_error(tiny_model, tmp_path):
    """Killing the JACK server under a running session: exit 5, one-line error, recordings kept."""
    server = JackServer(f"rtsep-vanish-{os.getpid()}", tmp_path / "jackd.log")
    try:
        rec_dir = tmp_path / "rec"
        proc = start_and_wait(server, *live_args(tiny_model, "--seconds", "60", "--record", rec_dir))
    finally:
        server.stop()
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 5, err
    assert "audio device" in one_line_error(err)
    lengths = {sf.info(rec_dir / f"{s}.wav").frames for s in SOURCES}
    assert len(lengths) == 1 and lengths.pop() >= SR // 2
