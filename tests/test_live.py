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

from jack_harness import PERIOD, REPO, JackServer, find_delay, wait_for_ports

SR = 16000
HOP, CONTEXT, LOOKAHEAD, CROSSFADE = 512, 4096, 512, 256
SOURCES = ("sine", "saw")

pytestmark = pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd is not installed (apt-get install jackd2)")


# -- fixtures ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def jack_server(tmp_path_factory):
    server = JackServer(f"rtsep-test-{os.getpid()}", tmp_path_factory.mktemp("jack") / "jackd.log")
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


def start_live(server: JackServer, *args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rtsep", *map(str, args)], env=server.env, cwd=REPO,
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


def one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    assert "Traceback" not in stderr, stderr
    assert lines and lines[-1].startswith("error:"), stderr
    return lines[-1]


# -- tests -------------------------------------------------------------------------------------------

def test_devices_lists_jack(jack_server):
    r = rtsep(jack_server, "devices")
    assert r.returncode == 0, r.stderr
    assert "JACK Audio Connection Kit" in r.stdout and "system" in r.stdout


def test_unknown_device_is_one_line_error(jack_server, tiny_model):
    r = rtsep(jack_server, "live", "--device", "nonexistent-device", "--model", tiny_model, "--seconds", "1")
    assert r.returncode == 5
    line = one_line_error(r.stderr)
    assert len(r.stderr.strip().splitlines()) == 1 and "nonexistent-device" in line
    r = rtsep(jack_server, "live", "--device", "jack", "--channels", "3", "--model", tiny_model, "--seconds", "1")
    assert r.returncode == 5 and "channel" in one_line_error(r.stderr)


def test_live_sums_to_input_at_reported_latency(jack_server, tiny_model, tmp_path):
    """Stems on the output ports sum to input channel 2, delayed by exactly the reported latency."""
    rec_dir, stats_path = tmp_path / "rec", tmp_path / "stats.json"
    x = mixture(3.0)
    distractor = (0.5 * np.sin(2 * np.pi * 1000 * np.arange(len(x)) / SR)).astype(np.float32)
    proc = start_live(jack_server, *live_args(tiny_model, "--channels", "2", "--seconds", "5.5", "--record", rec_dir,
                                              "--json", stats_path))
    player, recorder = jack_server.client("rtsep-player"), jack_server.client("rtsep-recorder")
    try:
        # Ports only once the live process has enumerated its devices: PortAudio lists every JACK
        # client with ports as a device of its own.
        wait_for_portaudio(player, proc, ("PortAudio:in_0", "PortAudio:in_1", "PortAudio:out_0", "PortAudio:out_1"))
        outs = [player.outports.register(f"out_{i}") for i in range(2)]
        ins = [recorder.inports.register(f"in_{i}") for i in range(2)]
        go, play_start, chunks, recording = threading.Event(), [], [], threading.Event()

        @player.set_process_callback
        def play(frames):
            now = player.last_frame_time
            if go.is_set() and not play_start:
                play_start.append(now)
            for port, sig in zip(outs, (distractor, x)):
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
        player.connect(outs[0], "PortAudio:in_0")
        player.connect(outs[1], "PortAudio:in_1")
        recorder.connect("PortAudio:out_0", ins[0])
        recorder.connect("PortAudio:out_1", ins[1])
        recording.set()
        time.sleep(0.1)
        go.set()
        time.sleep(len(x) / SR + 0.4)  # the signal plus well over the latency
        recording.clear()
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        for c in (player, recorder):
            c.deactivate()
            c.close()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err
    stats = json.loads(stats_path.read_text())
    assert stats["latency_samples"] == HOP + LOOKAHEAD + PERIOD == 1280, stats
    assert stats["algorithmic_latency_samples"] == HOP + LOOKAHEAD
    assert stats["block_frames"] == PERIOD
    assert (stats["overflows"], stats["underflows"], stats["late_blocks"]) == (0, 0, 0), stats
    assert stats["blocks"] > 4.5 * SR / HOP
    assert "late blocks 0" in out

    # The recorder saw every cycle from its first: a gapless timeline in JACK frames.
    times = np.array([t for t, _ in chunks])
    assert np.all(np.diff(times) == PERIOD), f"the test's recorder missed JACK cycles: {np.unique(np.diff(times))}"
    y = np.concatenate([sum(ch) for _, ch in chunks])  # sum of the source channels
    at = play_start[0] - int(times[0])  # where the played signal starts in y's timeline
    assert at >= 0
    delay = find_delay(y[at:], x, max_lag=4 * SR // 10)
    assert delay == stats["latency_samples"], (delay, stats)
    assert len(y) >= at + delay + len(x)
    np.testing.assert_allclose(y[at + delay : at + delay + len(x)], x, atol=1e-4, rtol=0)
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


def test_ctrl_c_stops_cleanly_and_finalises(jack_server, tiny_model, tmp_path):
    rec_dir = tmp_path / "rec"
    proc = start_and_wait(jack_server, *live_args(tiny_model, "--seconds", "60", "--record", rec_dir))
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "live:" in out
    lengths = {sf.info(rec_dir / f"{s}.wav").frames for s in SOURCES}
    assert len(lengths) == 1 and lengths.pop() >= SR // 2


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
