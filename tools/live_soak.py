"""Soak test: `rtsep live` through a real JACK server (dummy backend, no sound card) for minutes.

Why: the README's live claim ("N minutes live through JACK with no xrun caused by rtsep") needs a
run far longer than the ~5 s of tests/test_live.py, with the xruns counted and attributed. This
tool reuses that test's setup (RECIPES.md, "A live audio test with no sound card"): its own
`jackd -d dummy` (default 48 kHz, 1024 frames, 2 playback ports: a stereo sound card, so rtsep
resamples to its model's rate and back and routes its sources onto L/R), `python -m rtsep live
--device jack [--route ...]` in a subprocess, a JACK-Client player looping a known mixture
(resampled to the server's rate) into `PortAudio:in_0` and a separate recorder on `PortAudio:out_*`
(two clients: no graph cycle). At the end rtsep gets SIGINT (Ctrl-C) and jackd SIGTERM, always,
also when the tool itself is interrupted. rtsep's resident memory (VmRSS) is sampled once a minute.
The tool keeps the sum of the recorded channels for the whole run (4 bytes a frame: ~0.7 GB an hour
at 48 kHz); cycles its own recorder missed on a busy machine are holes, left out of the checks.

Attribution of xruns:
- jackd logs `JackEngine::XRun: client = NAME was not finished, state = S` (or `client NAME finished
  after current callback`) for each late client; one naming rtsep's JACK client (`PortAudio*`) is
  counted as caused by rtsep (state Running: its callback overran; Triggered: its process thread
  was not scheduled in time). Late lines naming only this tool's clients are the tool's, an xrun
  notification naming no client is the host's.
- rtsep's own counters (its `--json`): underflows/overflows minus their `device_*` part (those are
  PortAudio's xrun flags, i.e. the JACK xruns above) and late blocks are compute falling behind:
  caused by rtsep.
Separation sanity, with rtsep's route (gains G, channels x sources, from its --json): the output
channels must sum to the looped input delayed by rtsep's latency (the model projects its stems onto
the mixture; checked when every source's gains sum alike, as in the default layouts), not be silent,
differ from what unseparated stems (mix/N each) would give (G @ mix/N), and, when the reference
stems are available (default: data/music4-example, clip 0 = examples/music4-mix.wav), have a
positive mean SI-SDR improvement per channel against the routed references G @ refs.

    python tools/live_soak.py [--seconds 600] [--rate 48000] [--outputs 2] [--route SPEC] [--model music4]
                              [--steps K] [--json OUT]

Exit status 0 when no xrun was caused by rtsep and the output looks separated, 1 otherwise.
Needs jackd2, libportaudio2 and the `JACK-Client` and `sounddevice` packages.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tools")]
from jack_harness import RTSEP_CLIENT, JackServer, find_delay, wait_for_ports  # noqa: E402

from rtsep.audio import resample  # noqa: E402
from rtsep.live import rms_db as db  # noqa: E402

DEFAULT_MIX = REPO / "examples" / "music4-mix.wav"
DEFAULT_REFS = "data/music4-example/test/{source}/00000.wav"  # the stems of examples/music4-mix.wav
XRUN_RE = re.compile(r"JackEngine::XRun: client(?: = | )(\S+?)(?: was not finished, state = (\w+)| finished after)")


class LogTail:
    """jackd's xrun lines, each tagged with the phase (startup/run/shutdown) in which it was read."""

    def __init__(self, path: Path) -> None:
        self.path, self.pos, self.rest = path, 0, ""
        self.xruns: list[dict[str, Any]] = []

    def read(self, phase: str, final: bool = False) -> None:
        with open(self.path, "rb") as f:
            f.seek(self.pos)
            data = f.read()
        self.pos += len(data)
        lines = (self.rest + data.decode(errors="replace")).split("\n")
        self.rest = "" if final else lines.pop()
        for line in lines:
            m = XRUN_RE.search(line)
            if m:
                self.xruns.append({"phase": phase, "client": m.group(1), "state": m.group(2) or "finished late"})


def finite(v: Any) -> Any:
    """v with -inf/nan (silence in dB) as None, so the JSON is strict."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, dict):
        return {k: finite(w) for k, w in v.items()}
    if isinstance(v, (list, tuple)):
        return [finite(w) for w in v]
    return v


def on_timeline(t: np.ndarray, chunks: list[np.ndarray], period: int) -> tuple[np.ndarray, np.ndarray]:
    """Recorded cycles (each `period` frames, starting at JACK frame t[i]) placed on one timeline from
    t[0]: (audio (..., T), mask (T,) of the frames actually recorded)."""
    n = int(t[-1] - t[0]) + period
    y = np.zeros(chunks[0].shape[:-1] + (n,), np.float32)
    have = np.zeros(n, bool)
    for ti, a in zip(t - t[0], chunks):
        y[..., ti : ti + period] = a
        have[ti : ti + period] = True
    return y, have


def rss_mb(pid: int) -> float | None:
    """Resident memory of a process in MB (Linux /proc), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=600.0, help="how long to play into rtsep (default 600)")
    ap.add_argument("--model", default="music4", help="model name or directory for `rtsep live`")
    ap.add_argument("--rate", type=int, default=48000, help="JACK server rate in Hz (default 48000)")
    ap.add_argument("--period", type=int, default=1024, help="JACK frames per cycle (default 1024)")
    ap.add_argument("--outputs", type=int, default=2, help="JACK playback ports, i.e. the device's outputs (default 2)")
    ap.add_argument("--route", default=None, help="rtsep live --route SPEC (default: rtsep's layout for the outputs)")
    ap.add_argument("--steps", type=int, default=None, help="Langevin steps per block (default: the card's)")
    ap.add_argument("--backend", default="auto", help="auto, onnx or torch")
    ap.add_argument("--threads", type=int, default=1, help="rtsep's compute threads (default 1)")
    ap.add_argument("--mix", type=Path, default=DEFAULT_MIX, help="mono mixture looped into rtsep's input")
    ap.add_argument("--refs", default=None, help="reference stems, a path with {source} (default: the stems of "
                                                 "examples/music4-mix.wav when that is the mix and they exist)")
    ap.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = ap.parse_args(argv)
    for tool in ("jackd", "jack_wait"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} not found (apt-get install jackd2)")

    x, mix_rate = sf.read(args.mix, dtype="float32", always_2d=True)
    sr, period = args.rate, args.period
    x = np.ascontiguousarray(resample(x.mean(axis=1)[None], mix_rate, sr)[0])
    L = len(x)
    xp = np.concatenate([x, np.resize(x, 4096)])  # xp[i : i + frames] loops x for frames <= 4096
    refs_pattern = args.refs or (DEFAULT_REFS if args.mix.resolve() == DEFAULT_MIX else None)

    def on_term(signum, frame):  # SIGTERM: stop as on Ctrl-C
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="rtsep-soak-"))
    report: dict[str, Any] = {"command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]), "mix": str(args.mix),
                              "seconds_requested": args.seconds, "model": args.model, "steps": args.steps,
                              "backend": args.backend, "threads": args.threads, "route": args.route,
                              "jack": {"rate": sr, "period": period, "outputs": args.outputs, "backend": "dummy",
                                       "realtime": False}}
    server = proc = player = recorder = None
    tail: LogTail | None = None
    interrupted = False
    error: str | None = None
    phase = "startup"
    xrun_cb: list[tuple[str, float]] = []  # (phase, delay in us) from JACK's xrun notification
    chunks: collections.deque = collections.deque()
    play_start: list[int] = []
    go, recording = threading.Event(), threading.Event()
    t_go = t_stop = 0.0
    rtsep_stats: dict[str, Any] = {}
    rtsep_rc: int | None = None
    rss: list[tuple[float, float | None]] = []  # (seconds into the run, rtsep's VmRSS in MB)
    try:
        server = JackServer(f"rtsep-soak-{os.getpid()}", tmp / "jackd.log", sr, own_session=True, capture=2,
                            playback=args.outputs, period=period)
        tail = LogTail(tmp / "jackd.log")
        cmd = [sys.executable, "-m", "rtsep", "live", "--device", "jack", "--model", args.model,
               "--backend", args.backend, "--threads", str(args.threads), "--json", str(tmp / "live.json")]
        if args.steps is not None:
            cmd += ["--steps", str(args.steps)]
        if args.route is not None:
            cmd += ["--route", args.route]
        report["rtsep_command"] = " ".join(cmd[1:])
        with open(tmp / "live.out", "wb") as out, open(tmp / "live.err", "wb") as err:  # files: a pipe could fill
            proc = subprocess.Popen(cmd, env=server.env, cwd=REPO, stdout=out, stderr=err, start_new_session=True)
        player, recorder = server.client("soak-player"), server.client("soak-recorder")
        player.set_xrun_callback(lambda delay: xrun_cb.append((phase, float(delay))))
        wait_for_ports(player, proc, timeout=180)
        outs = sorted(p.name for p in player.get_ports(RTSEP_CLIENT + ":", is_audio=True, is_output=True))
        out_port = player.outports.register("out_0")
        ins = [recorder.inports.register(f"in_{i}") for i in range(len(outs))]

        @player.set_process_callback
        def play(frames: int) -> None:
            now = player.last_frame_time
            buf = out_port.get_array()
            if go.is_set():
                if not play_start:
                    play_start.append(now)
                i = (now - play_start[0]) % L
                buf[:] = xp[i : i + frames]
            else:
                buf[:] = 0

        @recorder.set_process_callback
        def record(frames: int) -> None:
            if recording.is_set():
                chunks.append((recorder.last_frame_time, np.stack([p.get_array() for p in ins])))

        player.activate()
        recorder.activate()
        for port in player.get_ports(RTSEP_CLIENT + ":"):  # PortAudio auto-connects to system:*: undo that
            for other in player.get_all_connections(port):
                if port.is_input:
                    player.disconnect(other, port)
                else:
                    player.disconnect(port, other)
        player.connect(out_port, f"{RTSEP_CLIENT}:in_0")
        for name, port in zip(outs, ins):
            recorder.connect(name, port)

        # The run: drain the recorder into a mono sum (for the timeline check) and a per-channel tail.
        times: list[int] = []
        sums: list[np.ndarray] = []
        tail_chunks: collections.deque = collections.deque(maxlen=(L + 2 * sr) // period + 2)

        def drain() -> None:
            while chunks:
                t, a = chunks.popleft()
                times.append(t)
                sums.append(a.sum(axis=0))
                tail_chunks.append((t, a))

        recording.set()
        time.sleep(0.1)
        tail.read(phase)
        phase = "run"
        go.set()
        t_go = time.monotonic()
        print(f"live_soak: playing {args.mix.name} (looped) into rtsep for {args.seconds:g} s ...", flush=True)
        next_note = t_go + 60
        rss.append((0.0, rss_mb(proc.pid)))
        while time.monotonic() < t_go + args.seconds:
            time.sleep(min(0.25, max(0.0, t_go + args.seconds - time.monotonic())))
            drain()
            tail.read(phase)
            if proc.poll() is not None:
                raise RuntimeError(f"rtsep live exited during the run with status {proc.returncode}")
            if time.monotonic() >= next_note:
                next_note += 60
                rss.append((time.monotonic() - t_go, rss_mb(proc.pid)))
                print(f"live_soak: {time.monotonic() - t_go:.0f} s, jackd xruns so far {len(xrun_cb)}", flush=True)
        rss.append((time.monotonic() - t_go, rss_mb(proc.pid)))
        time.sleep(1.0)  # let the last played input come out (latency < 1 s), then stop
        go.clear()
        t_stop = time.monotonic()
        time.sleep(0.1)
        recording.clear()
        drain()
        tail.read(phase)
    except KeyboardInterrupt:
        interrupted = True
        t_stop = t_stop or time.monotonic()
        error = "interrupted"
    except Exception as exc:
        t_stop = t_stop or time.monotonic()
        error = f"{type(exc).__name__}: {exc}"
    finally:
        phase = "shutdown"
        go.clear()
        recording.clear()
        try:
            if proc is not None:
                if proc.poll() is None:
                    proc.send_signal(signal.SIGINT)
                    try:
                        proc.wait(timeout=60)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
                rtsep_rc = proc.returncode
        finally:
            for c in (player, recorder):
                if c is not None:
                    try:
                        c.deactivate()
                        c.close()
                    except Exception:
                        pass
            if server is not None:
                server.stop()
            if tail is not None:
                tail.read(phase)
                tail.read(phase, final=True)

    # -- report ----------------------------------------------------------------------------------
    live_out = (tmp / "live.out").read_text(errors="replace") if (tmp / "live.out").exists() else ""
    live_err = (tmp / "live.err").read_text(errors="replace") if (tmp / "live.err").exists() else ""
    if (tmp / "live.json").exists():
        rtsep_stats = json.loads((tmp / "live.json").read_text())
    report["seconds_run"] = round(t_stop - t_go, 2) if t_go else 0.0
    report["interrupted"] = interrupted
    report["error"] = error
    report["rtsep_exit_status"] = rtsep_rc
    report["rtsep_summary"] = next((ln for ln in live_out.splitlines() if ln.startswith("live:")), None)
    report["rtsep_stats"] = rtsep_stats
    if rtsep_rc not in (0, None) or "Traceback" in live_err:
        report["rtsep_stderr_tail"] = live_err.strip().splitlines()[-10:]

    # xruns, by phase and cause
    counted = ("startup", "run")
    by_phase = {p: sum(1 for ph, _ in xrun_cb if ph == p) for p in ("startup", "run", "shutdown")}
    lines = tail.xruns if tail is not None else []
    rtsep_lines = [x for x in lines if x["client"].startswith(RTSEP_CLIENT)]
    tool_lines = [x for x in lines if x["client"].startswith("soak-")]
    rs = rtsep_stats
    compute = {"underflows": rs.get("underflows", 0) - rs.get("device_underflows", 0),
               "overflows": rs.get("overflows", 0) - rs.get("device_overflows", 0),
               "late_blocks": rs.get("late_blocks", 0)} if rs else {}
    report["xruns"] = {
        "jack_notifications": by_phase,
        "max_delay_us": max((d for _, d in xrun_cb), default=0.0),
        "jackd_late_clients": lines,
        "caused_by_rtsep_jack": sum(1 for x in rtsep_lines if x["phase"] in counted),
        "caused_by_rtsep_jack_states": dict(collections.Counter(x["state"] for x in rtsep_lines
                                                                if x["phase"] in counted)),
        "caused_by_tool_jack": sum(1 for x in tool_lines if x["phase"] in counted),
        "rtsep_device_flags": {"underflows": rs.get("device_underflows"), "overflows": rs.get("device_overflows")},
        "caused_by_rtsep_compute": compute,
        "note": "startup and run counted; shutdown (SIGINT, ports removed) reported only",
    }
    rtsep_xruns = report["xruns"]["caused_by_rtsep_jack"] + sum(compute.values()) if rs else None

    # separation sanity over what the recorder captured
    sep: dict[str, Any] = {}
    route = rs.get("route") or {}
    sources = rs.get("sources") or []
    gains = np.asarray(route.get("gains") or np.eye(len(sources)), dtype=np.float64)  # (channels, sources)
    first_ch = 0  # rtsep's route starts on PortAudio:out_0 (no --output-channel here)
    col = gains.sum(axis=0) if gains.size else np.ones(1)
    sum_gain = float(col[0]) if np.allclose(col, col[0]) else None  # sum of outputs = sum_gain * input
    sep["route"] = route.get("description")
    if play_start and len(sums) > 0:
        # Place each recorded cycle at its JACK frame time: cycles the recorder missed (its own xruns
        # on a busy machine) are holes, left out of every check below, not a shifted timeline.
        t_arr = np.asarray(times, dtype=np.int64)
        y, have = on_timeline(t_arr, sums, period)
        at = int(play_start[0] - t_arr[0])  # where the played signal starts in y's timeline
        seg = min(L, 3 * sr)
        max_lag = sr // 2
        sep["recorder_missed_cycles"] = int(np.sum(~have)) // period
        if at >= 0 and len(y) >= at + seg + max_lag and have[at : at + seg + max_lag].all():
            delay = find_delay(y[at:], x[:seg], max_lag)
            sep["measured_delay_samples"] = delay
            start = at + delay
            n_played = int(round((t_stop - t_go) * sr)) if t_go else 0
            end = min(len(y), start + n_played - sr)  # player stopped at t_stop; leave a second of margin
            if end > start and sum_gain is not None:
                expect = sum_gain * np.take(x, np.arange(start - at - delay, end - at - delay), mode="wrap")
                ok_s = have[start:end]
                err = np.where(ok_s, np.abs(y[start:end] - expect), 0.0)
                k = (len(err) // period) * period
                per = err[:k].reshape(-1, period).max(axis=1)
                whole = ok_s[:k].reshape(-1, period).all(axis=1)
                sep["sum_max_abs_error"] = float(err.max())
                sep["sum_bad_periods"] = int(np.sum(per[whole] > 1e-3))
                sep["sum_periods"] = int(whole.sum())
                sep["sum_periods_missed"] = int((~whole).sum())
                before = y[:start][have[:start]]
                sep["silence_before_db"] = db(before) if before.size else None
            # per-channel tail: the last full loop (or what there is) after a second of warm-up
            tail_t = np.asarray([t for t, _ in tail_chunks], dtype=np.int64)
            tail_y, tail_have = on_timeline(tail_t, [a for _, a in tail_chunks], period)
            t0 = int(tail_t[0])  # JACK frame of tail_y[:, 0]
            b = min(int(t_arr[-1]) + period, play_start[0] + delay + n_played - sr)
            a = max(t0, play_start[0] + delay + sr, b - L)
            if b - a >= sr:
                n_ch, n = gains.shape
                keep_t = tail_have[a - t0 : b - t0]  # recorded samples only
                out = tail_y[first_ch : first_ch + n_ch, a - t0 : b - t0][:, keep_t].astype(np.float64)
                mix = np.take(x, np.arange(a - play_start[0] - delay, b - play_start[0] - delay), mode="wrap")[keep_t]
                names = [f"ch{c + 1}" for c in range(n_ch)]
                row = gains.sum(axis=1)[:, None]  # what each channel would get from unseparated stems: row * mix/N
                sep["window_seconds"] = round((b - a) / sr, 2)
                sep["output_db"] = {c: db(out[k]) for k, c in enumerate(names)}
                sep["input_db"] = db(mix)
                sep["max_abs_diff_from_unseparated"] = float(np.abs(out - row * mix / n).max())
                if refs_pattern and sources and all(Path(refs_pattern.format(source=s)).exists() for s in sources):
                    from rtsep.metrics import si_sdr, si_sdr_improvement

                    ref = []
                    for s_name in sources:
                        r, r_rate = sf.read(refs_pattern.format(source=s_name), dtype="float32", always_2d=True)
                        ref.append(resample(r.mean(axis=1)[None], r_rate, sr)[0])
                    ref = np.stack([np.resize(r, L) for r in ref])
                    ref = np.take(ref, np.arange(a - play_start[0] - delay, b - play_start[0] - delay), axis=1,
                                  mode="wrap")[:, keep_t].astype(np.float64)
                    ref_ch, mix_ch = gains @ ref, row * mix  # the routed references and the routed mixture
                    keep = [c for c in range(n_ch) if np.abs(ref_ch[c]).max() > 0 and row[c, 0] > 0]
                    sdri = si_sdr_improvement(ref_ch[keep], out[keep], mix_ch[keep])
                    sep["refs"] = refs_pattern
                    sep["si_sdr_db"] = {names[c]: round(float(v), 2) for c, v in zip(keep, si_sdr(ref_ch[keep],
                                                                                                  out[keep]))}
                    sep["si_sdri_db"] = {names[c]: round(float(v), 2) for c, v in zip(keep, sdri)}
                    sep["si_sdri_mean_db"] = round(float(np.mean(sdri)), 2)
    checks = {
        "not_silent": bool(sep.get("output_db")) and max(sep["output_db"].values()) > -50,
        "sums_to_input": sum_gain is None or ("sum_bad_periods" in sep  # vacuous when gains differ per source
                                              and sep["sum_bad_periods"] <= 0.01 * sep["sum_periods"]),
        "not_mix_copies": sep.get("max_abs_diff_from_unseparated", 0.0) > 1e-2,
        "si_sdri_positive": sep.get("si_sdri_mean_db", 1.0) > 0,  # vacuous without references
    }
    sep["checks"] = checks
    report["separation"] = sep
    mem = [m for _, m in rss if m is not None]
    report["rss_mb"] = {"samples": [(round(t, 1), None if m is None else round(m, 1)) for t, m in rss],
                        "start": round(mem[0], 1) if mem else None, "end": round(mem[-1], 1) if mem else None,
                        "growth": round(mem[-1] - mem[0], 1) if len(mem) > 1 else None}
    separated = all(checks.values())
    ok = error is None and rtsep_rc == 0 and rtsep_xruns == 0 and separated
    report["rtsep_caused_xruns"] = rtsep_xruns
    report["separated"] = separated
    report["ok"] = ok

    # -- print -----------------------------------------------------------------------------------
    xr = report["xruns"]
    print(f"played {report['seconds_run']:.1f} s live through JACK (dummy, {sr} Hz, {period} frames), rtsep exit "
          f"{rtsep_rc}" + (f", error: {error}" if error else ""))
    print(f"  rtsep: {report['rtsep_summary']}" + (f", load {rs.get('load')}" if rs else ""))
    print(f"  jackd xruns: startup {by_phase['startup']}, run {by_phase['run']}, shutdown {by_phase['shutdown']} "
          f"(max delay {xr['max_delay_us']:.0f} us); late clients: "
          + (", ".join(f"{k} x{v}" for k, v in collections.Counter(
              f"{x['client']}/{x['state']}@{x['phase']}" for x in lines).items()) or "none"))
    rm = report["rss_mb"]
    print(f"  rtsep RSS: {rm['start']} MB at the start of the run, {rm['end']} MB at its end "
          f"(growth {rm['growth']} MB)")
    print(f"  caused by rtsep: {rtsep_xruns} (jack {xr['caused_by_rtsep_jack']}, compute {compute})")
    print(f"  separation: delay {sep.get('measured_delay_samples')} samples (rtsep says {rs.get('latency_samples')}),"
          f" sum error {sep.get('sum_max_abs_error', float('nan')):.1e} ({sep.get('sum_bad_periods')} bad of "
          f"{sep.get('sum_periods')} periods), levels dB " + ", ".join(f"{k} {v:.1f}" for k, v in
                                                                      sep.get("output_db", {}).items()))
    if "si_sdri_db" in sep:
        print("  SI-SDRi dB over the last " + f"{sep['window_seconds']} s: " + ", ".join(
            f"{k} {v:+.1f}" for k, v in sep["si_sdri_db"].items()) + f" (mean {sep['si_sdri_mean_db']:+.1f})")
    print(f"  checks: {checks} -> {'OK' if ok else 'FAIL'}")
    if report.get("rtsep_stderr_tail"):
        print("  rtsep stderr:\n    " + "\n    ".join(report["rtsep_stderr_tail"]))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(finite(report), indent=2) + "\n")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
