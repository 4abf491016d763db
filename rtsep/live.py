"""Live separation from an audio input to one output channel per source (``rtsep live``).

Audio-thread discipline (STYLE.md pattern 12): the PortAudio callback only copies the selected
input channel into a bounded queue and copies ready output from another bounded queue; a worker
thread runs the block engine. Nothing in the callback allocates a model, waits or computes.

Timing, in samples at the model's rate. Input sample ``i`` (counted from the stream's start) is
played at output position ``i + delay``, where ``delay = hop + lookahead + block``: the engine's
algorithmic latency plus one callback block, which gives the worker a full hop of wall time per
block. Alignment is kept by sample index, not by queue order: a block that is not ready when its
output is due is played as silence (an underflow), dropped when it arrives (a late block), and
the next blocks still play at the same delay. Input chunks lost to a full queue are replaced by
silence, so a dropped chunk never shifts later output either.

Output channels carry each source's contribution to the input (``s_k / N``, projected so that
the channels sum to the input exactly), the same stems ``rtsep file`` writes.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .audio import AtomicWriter
from .errors import AudioError, DeviceError

__all__ = ["LiveSession", "LiveStats", "find_device", "list_devices"]

KINDS = ("input", "output")


def _sd():
    """sounddevice, imported on demand: importing it starts PortAudio and enumerates devices."""
    try:
        import sounddevice as sd
    except OSError as exc:  # the PortAudio shared library is missing
        raise DeviceError(f"PortAudio is not available ({exc}); install libportaudio2") from None
    return sd


def list_devices() -> list[dict[str, Any]]:
    """Every PortAudio device: index, name, hostapi, max in/out channels, default rate, defaults."""
    sd = _sd()
    apis = sd.query_hostapis()
    default_in, default_out = _defaults(sd)
    out = []
    for dev in sd.query_devices():
        api = apis[dev["hostapi"]]
        out.append({
            "index": int(dev["index"]),
            "name": dev["name"],
            "hostapi": api["name"],
            "inputs": int(dev["max_input_channels"]),
            "outputs": int(dev["max_output_channels"]),
            "default_samplerate": float(dev["default_samplerate"]),
            "default_input": int(dev["index"]) == default_in,
            "default_output": int(dev["index"]) == default_out,
            "hostapi_default_input": int(dev["index"]) == api.get("default_input_device", -1),
            "hostapi_default_output": int(dev["index"]) == api.get("default_output_device", -1),
        })
    return out


def _defaults(sd) -> tuple[int, int]:
    """(default input index, default output index), -1 where there is none."""
    res = []
    for kind in KINDS:
        try:
            res.append(int(sd.query_devices(kind=kind)["index"]))
        except Exception:  # PortAudioError: no default device of this kind
            res.append(-1)
    return res[0], res[1]


def _channels(dev: dict[str, Any], kind: str) -> int:
    return int(dev["inputs" if kind == "input" else "outputs"])


def _label(dev: dict[str, Any]) -> str:
    return f"{dev['index']} {dev['name']!r} ({dev['hostapi']})"


def find_device(spec: int | str | None, kind: str, channels: int = 1) -> dict[str, Any]:
    """Resolve a device by index, by case-insensitive substring of 'name, host API', or the default.

    Returns the device's entry from :func:`list_devices`. Raises DeviceError (one line) when no
    device matches, when several match equally well, or when the match has fewer than `channels`
    channels of `kind` ('input' or 'output').
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be 'input' or 'output', not {kind!r}")
    devices = list_devices()
    if not devices:
        raise DeviceError("PortAudio sees no audio devices")
    usable = [d for d in devices if _channels(d, kind) > 0]
    have = ", ".join(_label(d) for d in usable) or "none"
    if spec is None or (isinstance(spec, str) and spec.strip() == ""):
        match = [d for d in devices if d[f"default_{kind}"]]
        if not match:
            raise DeviceError(f"no default {kind} device; choose one of: {have}")
        dev = match[0]
    elif isinstance(spec, int) or str(spec).strip().lstrip("-").isdigit():
        idx = int(spec)
        match = [d for d in devices if d["index"] == idx]
        if not match:
            raise DeviceError(f"no audio device with index {idx}; {kind} devices: {have}")
        dev = match[0]
    else:
        key = str(spec).strip().lower()
        exact = [d for d in usable if d["name"].lower() == key]
        sub = [d for d in usable if key in f"{d['name']}, {d['hostapi']}".lower()]
        match = exact or sub
        if not match:
            if any(key in f"{d['name']}, {d['hostapi']}".lower() for d in devices):
                raise DeviceError(f"{kind} device {spec!r} has no {kind} channels; {kind} devices: {have}")
            raise DeviceError(f"no {kind} device matching {spec!r}; {kind} devices: {have}")
        if len(match) > 1:  # prefer the system's default host API, then a host API's own default device
            default_api = next((d["hostapi"] for d in devices if d[f"default_{kind}"]), None)
            for prefer in ([d for d in match if d["hostapi"] == default_api],
                           [d for d in match if d[f"hostapi_default_{kind}"]]):
                if len(prefer) == 1:
                    match = prefer
                    break
            else:
                names = ", ".join(_label(d) for d in match)
                raise DeviceError(f"{kind} device {spec!r} is ambiguous: {names}; give an index")
        dev = match[0]
    if _channels(dev, kind) < channels:
        raise DeviceError(f"{kind} device {_label(dev)} has {_channels(dev, kind)} {kind} channel(s), "
                          f"{channels} needed")
    return dev


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (-inf for silence)."""
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 1e-10 else -math.inf


@dataclass
class LiveStats:
    """A snapshot for the UI and for scripts. Latencies are in samples at `sample_rate`."""

    sample_rate: int
    sources: tuple[str, ...]
    running: bool = False
    seconds: float = 0.0
    blocks: int = 0
    overflows: int = 0
    underflows: int = 0
    late_blocks: int = 0
    device_overflows: int = 0
    device_underflows: int = 0
    callbacks: int = 0
    block_frames: int = 0
    latency: int = 0
    algorithmic_latency: int = 0
    device_latency_s: tuple[float, float] = (0.0, 0.0)
    load: float = 0.0
    input_db: float = -math.inf
    levels_db: tuple[float, ...] = field(default_factory=tuple)
    recorded: int = 0

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.sample_rate

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else round(v, 3)

        return {
            "sample_rate": self.sample_rate, "sources": list(self.sources), "seconds": round(self.seconds, 3),
            "blocks": self.blocks, "overflows": self.overflows, "underflows": self.underflows,
            "late_blocks": self.late_blocks, "device_overflows": self.device_overflows,
            "device_underflows": self.device_underflows, "callbacks": self.callbacks, "block_frames": self.block_frames,
            "latency_samples": self.latency, "latency_ms": round(self.latency_ms, 3),
            "algorithmic_latency_samples": self.algorithmic_latency,
            "device_latency_ms": [round(1000 * x, 3) for x in self.device_latency_s],
            "load": round(self.load, 4), "input_db": num(self.input_db),
            "levels_db": {s: num(v) for s, v in zip(self.sources, self.levels_db)}, "recorded_samples": self.recorded,
        }


class LiveSession:
    """Separate a live input into one output channel per source, optionally recording each source.

    separator: a loaded :class:`~rtsep.separator.Separator` (its engine, sources, sample rate).
    input_device / output_device: index, name substring or None (system default; the output
    defaults to the input device when it has enough output channels).
    channel: 1-based input channel to separate (mono). output_channel: 1-based first output
    channel; source k goes to output_channel + k.
    record_dir: write RECORD_DIR/<source>.wav (float, the stems summing to the input), complete
    files or none, finalised by stop() whatever ended the session.
    blocksize: frames per callback; 0 lets the host choose (adds no buffering of its own).

    Use: ``start()``, then call ``poll()`` regularly (it raises DeviceError when the device
    vanished and re-raises a worker failure), read ``stats()``, and always ``stop()``.
    """

    def __init__(self, separator, input_device: int | str | None = None, output_device: int | str | None = None,
                 channel: int = 1, output_channel: int = 1, record_dir: Path | None = None, blocksize: int = 0,
                 seed: int = 0, device_latency: str | float = "low", overwrite: bool = False,
                 queue_seconds: float = 2.0) -> None:
        if channel < 1:
            raise DeviceError(f"input channel must be 1 or more, not {channel}")
        if output_channel < 1:
            raise DeviceError(f"output channel must be 1 or more, not {output_channel}")
        if blocksize < 0:
            raise DeviceError(f"blocksize must be 0 (host's choice) or positive, not {blocksize}")
        self.sep = separator
        self.engine = separator.engine
        self.sources = tuple(separator.sources)
        self.n = len(self.sources)
        self.sample_rate = int(separator.sample_rate)
        self.channel = channel
        self.output_channel = output_channel
        self.blocksize = int(blocksize)
        self.seed = seed
        self.device_latency = device_latency
        self.in_dev = find_device(input_device, "input", channel)
        out_spec = output_device
        if out_spec is None and self.in_dev["outputs"] >= output_channel - 1 + self.n:
            out_spec = self.in_dev["index"]
        self.out_dev = find_device(out_spec, "output", output_channel - 1 + self.n)
        self._check_rate()
        self.record_dir = Path(record_dir) if record_dir is not None else None
        if self.record_dir is not None and not overwrite:
            for s in self.sources:
                if (self.record_dir / f"{s}.wav").exists():
                    raise AudioError(f"{self.record_dir / f'{s}.wav'} exists (use --overwrite)")
        g = self.engine.geometry
        self.algorithmic_latency = g.latency
        # Bounded queues: about `queue_seconds` of audio in callback-sized chunks each way.
        chunk = self.blocksize or 256
        self._in_q: queue.Queue = queue.Queue(maxsize=max(8, int(queue_seconds * self.sample_rate / chunk)))
        self._out_q: queue.Queue = queue.Queue(maxsize=max(8, int(queue_seconds * self.sample_rate / g.hop)))
        # Counters: each is written by one thread only (callback or worker).
        self._overflows = 0  # input lost: PortAudio's input-overflow flag or a full input queue
        self._underflows = 0  # output missing: PortAudio's output-underflow flag or no block ready in time
        self._device_overflows = 0  # the PortAudio-flagged part of each (host xruns, not the worker)
        self._device_underflows = 0
        self._late = 0
        self._blocks = 0
        self._callbacks = 0
        self._in_pos = 0   # input frames seen by the callback
        self._out_pos = 0  # output frames written by the callback
        self._delay: int | None = None
        self._block_frames = self.blocksize
        self._cur: tuple[int, np.ndarray] | None = None  # output chunk being played: (start index, (N, m))
        self._last_callback = 0.0
        self._levels = [-math.inf] * self.n
        self._input_db = -math.inf
        self._load = 0.0
        self._recorded = 0
        self._writers: list[AtomicWriter] = []
        self._streams: list = []
        self._worker: threading.Thread | None = None
        self._stop_worker = threading.Event()
        self._error: BaseException | None = None
        self._device_error: DeviceError | None = None
        self._started_at: float | None = None
        self._stopped_at: float | None = None
        self._stopping = False
        self._stop_lock = threading.Lock()
        self._stopped = False
        self.stream_abandoned = False
        """True when the device died under an open stream that PortAudio could not be trusted to close;
        the process should then exit without running PortAudio's own exit handler (it may hang)."""

    # -- setup -------------------------------------------------------------------------------------

    def _check_rate(self) -> None:
        sd = _sd()
        try:
            sd.check_input_settings(device=self.in_dev["index"], channels=self.channel, dtype="float32",
                                    samplerate=self.sample_rate)
        except Exception as exc:
            raise DeviceError(f"input device {_label(self.in_dev)} cannot record {self.channel} channel(s) at "
                              f"{self.sample_rate} Hz ({_short(exc)})") from None
        try:
            sd.check_output_settings(device=self.out_dev["index"], channels=self.output_channel - 1 + self.n,
                                     dtype="float32", samplerate=self.sample_rate)
        except Exception as exc:
            raise DeviceError(f"output device {_label(self.out_dev)} cannot play "
                              f"{self.output_channel - 1 + self.n} channel(s) at {self.sample_rate} Hz "
                              f"({_short(exc)})") from None

    def warm_up(self) -> None:
        """Run one block through the engine on a throwaway stream (lazy allocations, kernel choice)."""
        g = self.engine.geometry
        st = self.engine.new_stream(1, seed=self.seed)
        self.engine.process(st, np.zeros((1, g.context + g.hop + g.lookahead), np.float32))

    def start(self) -> None:
        """Warm up, open the recordings and the stream, start the worker. Raises DeviceError."""
        if self._started_at is not None:
            raise RuntimeError("a LiveSession starts once")
        self.warm_up()
        self.state = self.engine.new_stream(1, seed=self.seed)
        self._pending_in: list[np.ndarray] = []  # input fed to the engine, not yet matched by output
        self._fed = 0
        self._emitted = 0
        if self.record_dir is not None:
            for s in self.sources:
                w = AtomicWriter(self.record_dir / f"{s}.wav", self.sample_rate, 1, "wav")
                try:
                    w.__enter__()
                except BaseException:
                    self._close_writers(discard=True)
                    raise
                self._writers.append(w)
        try:
            self._open_streams()  # callbacks start queueing input at once; the worker follows
        except BaseException:
            self._stopping = self._stopped = True
            self._close_writers(discard=True)
            raise
        self._started_at = self._last_callback = time.monotonic()
        self._worker = threading.Thread(target=self._work, name="rtsep-live-worker", daemon=True)
        self._worker.start()

    def _open_streams(self) -> None:
        sd = _sd()
        self._abort = sd.CallbackAbort
        in_idx, out_idx = self.in_dev["index"], self.out_dev["index"]
        out_ch = self.output_channel - 1 + self.n
        kw = dict(samplerate=self.sample_rate, blocksize=self.blocksize, dtype="float32", latency=self.device_latency)
        try:
            if self.in_dev["hostapi"] == self.out_dev["hostapi"]:
                self._streams = [sd.Stream(device=(in_idx, out_idx), channels=(self.channel, out_ch),
                                           callback=self._duplex_callback, **kw)]
            else:  # PortAudio cannot open one duplex stream across host APIs
                self._streams = [sd.InputStream(device=in_idx, channels=self.channel, callback=self._in_callback, **kw),
                                 sd.OutputStream(device=out_idx, channels=out_ch, callback=self._out_callback, **kw)]
            for s in self._streams:
                s.start()
        except Exception as exc:
            for s in self._streams:
                try:
                    s.close()
                except Exception:
                    pass
            self._streams = []
            raise DeviceError(f"cannot start audio on {_label(self.in_dev)} -> {_label(self.out_dev)} "
                              f"({_short(exc)})") from None

    # -- audio thread ------------------------------------------------------------------------------

    def _duplex_callback(self, indata, outdata, frames, time_info, status) -> None:
        try:
            self._take_input(indata, frames, status)
            self._give_output(outdata, frames, status)
        except Exception as exc:  # a bug, not the device: report it as such, not as a vanished device
            self._error = exc
            raise self._abort from None

    def _in_callback(self, indata, frames, time_info, status) -> None:
        try:
            self._take_input(indata, frames, status)
        except Exception as exc:
            self._error = exc
            raise self._abort from None

    def _out_callback(self, outdata, frames, time_info, status) -> None:
        try:
            self._give_output(outdata, frames, status)
        except Exception as exc:
            self._error = exc
            raise self._abort from None

    def _take_input(self, indata, frames: int, status) -> None:
        self._last_callback = time.monotonic()
        self._callbacks += 1
        if status.input_overflow:
            self._overflows += 1
            self._device_overflows += 1
        try:
            self._in_q.put_nowait((self._in_pos, indata[:, self.channel - 1].copy()))
        except queue.Full:
            self._overflows += 1  # the worker zero-fills the gap, so later output keeps its alignment
        self._in_pos += frames

    def _give_output(self, outdata, frames: int, status) -> None:
        self._last_callback = time.monotonic()
        if status.output_underflow:
            self._underflows += 1
            self._device_underflows += 1
        if self._delay is None:
            self._block_frames = self.blocksize or frames
            self._delay = self.algorithmic_latency + self._block_frames
        outdata.fill(0)
        a = self._out_pos - self._delay  # engine sample index due at outdata[0]
        b = a + frames
        self._out_pos += frames
        first = self.output_channel - 1
        filled = max(a, 0)  # indices below 0 are the initial delay: silence by design
        missing = False
        while filled < b:
            if self._cur is None:
                try:
                    self._cur = self._out_q.get_nowait()
                except queue.Empty:
                    break
            start, chunk = self._cur
            end = start + chunk.shape[1]
            if end <= filled:  # arrived after its slot: already counted late by the worker
                self._cur = None
                continue
            if start > filled:  # a gap before this chunk (its predecessor was dropped): leave silence
                missing = True
                filled = min(start, b)
                continue
            take = min(end, b) - filled
            src = chunk[:, filled - start : filled - start + take]
            outdata[filled - a : filled - a + take, first : first + self.n] = src.T
            filled += take
            if filled >= end:
                self._cur = None
        if missing or filled < b:
            self._underflows += 1

    # -- worker ------------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            while True:
                try:
                    pos, x = self._in_q.get(timeout=0.02)
                except queue.Empty:
                    if self._stop_worker.is_set():
                        break
                    continue
                if pos > self._fed:  # input lost to a full queue: keep the timeline with silence
                    self._feed(np.zeros(pos - self._fed, np.float32))
                self._feed(x)
            # Drain: emit the last lookahead for the recordings (the stream has stopped by now).
            if self._fed:
                self._emit(self.engine.flush(self.state, self._fed))
            self._close_writers(discard=False)
        except BaseException as exc:  # reported by poll()/stop(); the stream keeps playing silence
            self._error = exc
            self._close_writers(discard=isinstance(exc, AudioError))

    def _feed(self, x: np.ndarray) -> None:
        self._pending_in.append(x)
        self._fed += x.shape[0]
        t0 = time.perf_counter()
        est = self.engine.process(self.state, x[None])
        if est.shape[-1]:
            dt = time.perf_counter() - t0
            rtf = dt * self.sample_rate / est.shape[-1]
            self._load = rtf if self._blocks == 0 else 0.9 * self._load + 0.1 * rtf
            self._emit(est)

    def _emit(self, est: np.ndarray) -> None:
        """est (1, 1, N, m) at engine indices [emitted, emitted + m): stems summing to the input."""
        m = est.shape[-1]
        if m == 0:
            return
        stems = est[0, 0] / self.n
        mix = np.concatenate(self._pending_in)
        self._pending_in = [mix[m:]] if mix.shape[0] > m else []
        mix = mix[:m]
        if mix.shape[0] < m:  # flush pads past the input with silence
            mix = np.pad(mix, (0, m - mix.shape[0]))
        stems = (stems + (mix - stems.sum(axis=0)) / self.n).astype(np.float32)
        start = self._emitted
        self._emitted += m
        self._blocks += m // self.engine.geometry.hop
        if not self._stopping:
            if self._delay is not None and start + self._delay < self._out_pos:
                self._late += 1  # its first sample was due before it was ready
            try:
                self._out_q.put_nowait((start, stems))
            except queue.Full:
                self._late += 1
        for k, w in enumerate(self._writers):
            w.write(stems[k : k + 1])
        self._recorded += m
        self._levels = [rms_db(s) for s in stems]
        self._input_db = rms_db(mix)

    def _close_writers(self, discard: bool) -> None:
        writers, self._writers = self._writers, []
        first: BaseException | None = None
        for w in writers:
            try:
                if discard:
                    w.__exit__(AudioError, AudioError("discarded"), None)
                else:
                    w.__exit__(None, None, None)
            except BaseException as exc:  # keep finalising the others
                first = first or exc
        if first is not None and self._error is None:
            self._error = first

    # -- control -----------------------------------------------------------------------------------

    @property
    def delay(self) -> int:
        """Samples from the callback's input to its output: algorithmic latency + one callback block."""
        return self._delay if self._delay is not None else self.algorithmic_latency + self.blocksize

    def poll(self) -> None:
        """Raise DeviceError if the device stopped or vanished; re-raise a worker failure."""
        if self._device_error is not None:
            raise self._device_error
        if self._error is not None:
            raise self._error
        if self._started_at is None or self._stopping:
            return
        dead = None
        try:
            if not all(s.active for s in self._streams):
                dead = "stopped"
        except Exception as exc:
            dead = f"failed ({_short(exc)})"
        # The stream object may still look active while no callbacks come (a server that died).
        silent_for = time.monotonic() - self._last_callback
        if dead is None and silent_for > max(2.0, 20 * (self._block_frames or 1024) / self.sample_rate):
            dead = f"delivered no audio for {silent_for:.1f} s"
        if dead is not None:
            self._device_error = DeviceError(f"audio device {_label(self.in_dev)} {dead} after "
                                             f"{self.stats().seconds:.1f} s (disconnected?)")
            self.stream_abandoned = True
            self.stop()
            raise self._device_error

    def stats(self) -> LiveStats:
        t0 = self._started_at
        end = self._stopped_at or time.monotonic()
        lat = (0.0, 0.0)
        try:
            if len(self._streams) == 1:
                lat = tuple(float(x) for x in self._streams[0].latency)
            elif len(self._streams) == 2:
                lat = (float(self._streams[0].latency), float(self._streams[1].latency))
        except Exception:
            pass
        return LiveStats(
            sample_rate=self.sample_rate, sources=self.sources, running=t0 is not None and not self._stopping,
            seconds=0.0 if t0 is None else end - t0, blocks=self._blocks, overflows=self._overflows,
            underflows=self._underflows, late_blocks=self._late, device_overflows=self._device_overflows,
            device_underflows=self._device_underflows, callbacks=self._callbacks,
            block_frames=self._block_frames, latency=self.delay, algorithmic_latency=self.algorithmic_latency,
            device_latency_s=lat, load=self._load, input_db=self._input_db, levels_db=tuple(self._levels),
            recorded=self._recorded,
        )

    def stop(self) -> None:
        """Stop the stream, drain the worker, finalise the recordings. Idempotent; raises nothing new."""
        with self._stop_lock:
            if self._stopped:
                return
            self._stopped = True
            self._stopping = True
            self._stopped_at = time.monotonic()
            if not self.stream_abandoned:
                self._close_streams()
            self._stop_worker.set()
            if self._worker is not None:
                self._worker.join()
            self._close_writers(discard=False)  # no-op unless the worker never ran

    def _close_streams(self) -> None:
        """Stop and close in a helper thread: a host API whose server died can hang or abort here."""
        streams = list(self._streams)

        def close() -> None:
            for s in streams:
                try:
                    s.stop()
                    s.close()
                except Exception:
                    pass

        t = threading.Thread(target=close, name="rtsep-live-close", daemon=True)
        t.start()
        t.join(timeout=5.0)
        if t.is_alive():
            self.stream_abandoned = True

    def __enter__(self) -> "LiveSession":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
