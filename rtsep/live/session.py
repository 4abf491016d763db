"""Live separation from an audio input to routed output channels (``rtsep live``).

Audio-thread discipline (STYLE.md pattern 12): the PortAudio callback only copies the selected
input channel into a bounded queue and copies ready output from another bounded queue; a worker
thread resamples, runs the Separator's block engine and routes. Nothing in the callback
allocates a model, waits or computes.

Rates: the device runs at its own rate (its native one, or ``--rate``); the worker resamples the
input to the model's rate and the stems back with kept low-latency polyphase streams
(rtsep.resample.PolyphaseResampler: about 0.6 ms of filter delay each way, where soxr's HQ streams
held back 70 ms at 48 kHz), so the chain is the one `rtsep file` runs, fed in callback-sized pieces.

Timing, in samples at the device's rate. Input sample ``i`` (counted from the stream's start) is
played at output position ``i + delay``, where ``delay = lead + block + margin``: ``lead`` is the
most input the chain (down-resampler, engine, up-resampler) ever needs beyond a sample before it can
emit it, computed once by running the same chain's sample counts on silence (:func:`processing_lead`),
i.e. the algorithmic latency ``hop + lookahead`` plus the resamplers' filter delay; one callback
block on top gives the worker a callback period of wall time for each block, and ``margin``
(``--margin``, default 0) more for a backend slower than that. Alignment is kept by sample index, not
by queue order: output not ready when due is played as silence (an underflow), dropped
when it arrives (a late block), and later output still plays at the same delay. Input chunks lost
to a full queue are replaced by silence, so a dropped chunk never shifts later output either.

Stems are each source's contribution to the input (``s_k / N``, projected so that they sum to the
input exactly), as ``rtsep file`` writes them; a :class:`~rtsep.live.routing.Route` mixes them onto
the output channels; on JACK the stream's output ports get aliases naming those sources.

Health: a run *kept up* when, after the first ``warmup_seconds``, at most 1% of the emitted blocks
were late, at most 1% of the output callbacks found no block ready for reasons other than the
device's own xrun flags, and no input was lost to a full queue (see :attr:`LiveStats.kept_up`).
"""

from __future__ import annotations

import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import AtomicWriter
from ..engine import BlockGeometry
from ..errors import AudioError, DeviceError
from ..fullband import Share, equal_share
from ..fullband import project as fullband_project
from ..resample import PolyphaseResampler
from .devices import JackPortNamer, _sd, check_rate, find_device, label, native_rate, short_error
from .routing import Route, parse_route

__all__ = ["LATE_FRACTION", "LiveSession", "LiveStats", "processing_lead", "project", "rms_db"]

LATE_FRACTION = 0.01
"""A run that, after warm-up, had more than this fraction of late blocks or of starved output callbacks
did not keep up."""

SWITCH_INTERVAL = 0.0005
"""Seconds between the interpreter's GIL hand-offs while a session runs (Python's default is 5 ms, as long
as a whole 256-frame callback period at 48 kHz: the audio callback would wait for the worker's GIL)."""

_LEAD_FRAMES = (32, 64, 128, 256, 512, 1024, 2048, 4096)
"""Callback sizes whose lead is computed before the stream opens (the host picks one when blocksize=0)."""


def rms_db(x: np.ndarray) -> float:
    """RMS level in dBFS (-inf for silence)."""
    if x.size == 0:
        return -math.inf
    rms = float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))
    return 20.0 * math.log10(rms) if rms > 1e-10 else -math.inf


def project(stems: np.ndarray, mix: np.ndarray, share: Share = equal_share) -> np.ndarray:
    """Mono stems (N, m) made to sum to mix (m,): `rtsep.fullband.project`, the runtime's one projection."""
    return fullband_project(stems[:, None], mix[None], share)[:, 0]


def processing_lead(geometry: BlockGeometry, model_rate: int, device_rate: int, frames: int,
                    seconds: float = 3.0) -> int:
    """Most device samples of input the chain needs past an output sample's index before it emits it.

    Runs the live worker's sample counts (chunks of `frames` zeros through the same resampler streams;
    the engine emits `hop` samples once a block's lookahead has arrived) for `seconds` or 40 hops,
    whichever is longer: the rate ratio and the chunking repeat well within that.
    """
    g = geometry
    down = PolyphaseResampler(device_rate, model_rate, 1)
    up = PolyphaseResampler(model_rate, device_rate, 1)
    zeros = np.zeros((1, frames), np.float32)
    total = max(int(seconds * device_rate), 40 * g.hop * device_rate // model_rate)
    fed = fed_model = ready_model = out = lead = 0
    while fed < total:
        fed += frames
        fed_model += down.process(zeros).shape[1]
        ready = g.hop * max(0, (fed_model - g.lookahead) // g.hop)
        if ready > ready_model:
            got = up.process(np.zeros((1, ready - ready_model), np.float32)).shape[1]
            ready_model = ready
            if got:
                lead = max(lead, fed - out)
                out += got
    return lead


@dataclass
class LiveStats:
    """A snapshot for the UI and for scripts. Latencies are in samples at the device's `sample_rate`."""

    sample_rate: int
    model_sample_rate: int
    sources: tuple[str, ...]
    route: Route | None = None
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
    margin: int = 0
    algorithmic_latency: int = 0
    resampler_latency: int = 0
    """Device samples the chain's lead adds to the algorithmic latency: the resamplers' filter delay and the
    callback size's alignment with the hop (0 at the model's rate with a dividing block)."""
    device_latency_s: tuple[float, float] = (0.0, 0.0)
    load: float = 0.0
    input_db: float = -math.inf
    levels_db: tuple[float, ...] = field(default_factory=tuple)
    recorded: int = 0
    discarded: int = 0
    port_aliases: dict[str, str] = field(default_factory=dict)
    """Input samples still queued when the drain after stop ran out of time (a run far behind), not recorded."""
    warmup_seconds: float = 1.0
    after_warmup: dict[str, int] | None = None
    """Counters since warm-up ended (blocks, late_blocks, callbacks, underflows, overflows, compute-caused
    parts); None while warming up."""

    @property
    def latency_ms(self) -> float:
        return 1000.0 * self.latency / self.sample_rate

    @property
    def kept_up(self) -> bool:
        """False when, after warm-up, > LATE_FRACTION of blocks were late or of output callbacks starved by
        the worker, or any input was lost to a full queue (the device's own xrun flags do not count)."""
        w = self.after_warmup
        if not w:
            return True
        return (w["late_blocks"] <= LATE_FRACTION * max(1, w["blocks"])
                and w["compute_underflows"] <= LATE_FRACTION * max(1, w["callbacks"])
                and w["compute_overflows"] == 0)

    def health(self) -> str:
        """'' when the run kept up, else why not (one clause)."""
        if self.kept_up:
            return ""
        w = self.after_warmup or {}
        return (f"{w['late_blocks']} of {w['blocks']} blocks late, {w['compute_underflows']} of {w['callbacks']} "
                f"output callbacks starved, {w['compute_overflows']} input chunks lost after the first "
                f"{self.warmup_seconds:g} s (load {self.load:.2f} x real time)")

    def to_dict(self) -> dict[str, Any]:
        def num(v: float) -> float | None:
            return None if not math.isfinite(v) else round(v, 3)

        return {
            "sample_rate": self.sample_rate, "model_sample_rate": self.model_sample_rate,
            "sources": list(self.sources), "route": self.route.to_dict() if self.route is not None else None,
            "seconds": round(self.seconds, 3),
            "blocks": self.blocks, "overflows": self.overflows, "underflows": self.underflows,
            "late_blocks": self.late_blocks, "device_overflows": self.device_overflows,
            "device_underflows": self.device_underflows, "callbacks": self.callbacks, "block_frames": self.block_frames,
            "latency_samples": self.latency, "latency_ms": round(self.latency_ms, 3), "margin_samples": self.margin,
            "algorithmic_latency_samples": self.algorithmic_latency,
            "resampler_latency_samples": self.resampler_latency,
            "device_latency_ms": [round(1000 * x, 3) for x in self.device_latency_s],
            "load": round(self.load, 4), "input_db": num(self.input_db),
            "levels_db": {s: num(v) for s, v in zip(self.sources, self.levels_db)}, "recorded_samples": self.recorded,
            "discarded_samples": self.discarded, "jack_port_aliases": self.port_aliases,
            "warmup_seconds": self.warmup_seconds, "after_warmup": self.after_warmup, "kept_up": self.kept_up,
        }


class LiveSession:
    """Separate a live input onto routed output channels, optionally recording each source.

    separator: a loaded :class:`~rtsep.separator.Separator`; its engine, sources, rate and seed are used.
    input_device / output_device: index, name substring or None (system default; the output
    defaults to the input device when it has output channels).
    channel: 1-based input channel to separate (mono). output_channel: 1-based device channel that
    carries route channel 1. route / solo: see :mod:`rtsep.live.routing` (default: one source per
    channel when the device has enough, else a stereo pan).
    sample_rate: the device's rate (default: the input device's native rate); the model's rate is
    reached by resampling.
    record_dir: write RECORD_DIR/<source>.wav at the device's rate (float, the stems summing to the
    input), complete files or none, finalised by stop() whatever ended the session. stop() drains the
    queued input for at most `drain_seconds` and drops the rest (counted as `discarded`).
    blocksize: frames per callback; 0 lets the host choose (adds no buffering of its own).
    margin_ms: extra output delay, time the worker may take for a block beyond one callback period
    (a block is due one callback after its input is complete; a slow backend needs more).

    Use: ``start()``, then call ``poll()`` regularly (it raises DeviceError when the device
    vanished and re-raises a worker failure), read ``stats()``, and always ``stop()``.
    """

    def __init__(self, separator, input_device: int | str | None = None, output_device: int | str | None = None,
                 channel: int = 1, output_channel: int = 1, route: str | None = None, solo: tuple[str, ...] = (),
                 sample_rate: int | None = None, record_dir: Path | None = None, blocksize: int = 0,
                 device_latency: str | float = "low", overwrite: bool = False, queue_seconds: float = 2.0,
                 warmup_seconds: float = 1.0, drain_seconds: float = 2.0, margin_ms: float = 0.0) -> None:
        if channel < 1:
            raise DeviceError(f"input channel must be 1 or more, not {channel}")
        if output_channel < 1:
            raise DeviceError(f"output channel must be 1 or more, not {output_channel}")
        if blocksize < 0:
            raise DeviceError(f"blocksize must be 0 (host's choice) or positive, not {blocksize}")
        if not 0 <= margin_ms <= 10_000:
            raise DeviceError(f"margin must be within 0..10000 ms, not {margin_ms}")
        self.sep = separator
        self.engine = separator.engine
        self.sources = tuple(separator.sources)
        self.n = len(self.sources)
        self.model_rate = int(separator.sample_rate)
        self.seed = int(getattr(getattr(separator, "run", None), "seed", 0))
        self.channel = channel
        self.output_channel = output_channel
        self.blocksize = int(blocksize)
        self.device_latency = device_latency
        self.warmup_seconds = float(warmup_seconds)
        self.drain_seconds = float(drain_seconds)
        self.in_dev = find_device(input_device, "input", channel)
        out_spec = output_device
        if out_spec is None and self.in_dev["outputs"] >= output_channel:
            out_spec = self.in_dev["index"]
        self.out_dev = find_device(out_spec, "output", 1)
        have = int(self.out_dev["outputs"])
        available = have - (output_channel - 1)
        if available < 1:
            raise DeviceError(f"output device {label(self.out_dev)} has {have} output channel(s): "
                              f"--output-channel {output_channel} is past its last")
        self.route = parse_route(route, self.sources, available, solo)
        self.out_channels = output_channel - 1 + self.route.channels
        if self.out_channels > have:
            raise DeviceError(f"output device {label(self.out_dev)} has {have} output channel(s); the route needs "
                              f"{self.route.channels} from --output-channel {output_channel} "
                              f"(channels {output_channel}-{self.out_channels})")
        self.sample_rate = int(sample_rate) if sample_rate else native_rate(self.in_dev)
        if self.sample_rate <= 0:
            raise DeviceError(f"sample rate must be positive, not {self.sample_rate}")
        check_rate(self.in_dev, "input", channel, self.sample_rate)
        check_rate(self.out_dev, "output", self.out_channels, self.sample_rate)
        self.record_dir = Path(record_dir) if record_dir is not None else None
        if self.record_dir is not None and not overwrite:
            for s in self.sources:
                if (self.record_dir / f"{s}.wav").exists():
                    raise AudioError(f"{self.record_dir / f'{s}.wav'} exists (use --overwrite)")
        g = self.engine.geometry
        self.algorithmic_latency = g.latency  # model samples
        self._alg_device = int(round(g.latency * self.sample_rate / self.model_rate))
        self.margin = int(round(margin_ms * self.sample_rate / 1000.0))  # extra device samples of compute time
        # Bounded queues: about `queue_seconds` of audio in callback-sized chunks each way.
        chunk = self.blocksize or 256
        self._in_q: queue.Queue = queue.Queue(maxsize=max(8, int(queue_seconds * self.sample_rate / chunk)))
        self._out_q: queue.Queue = queue.Queue(maxsize=max(8, int(queue_seconds * self.model_rate / g.hop)))
        # Counters: each is written by one thread only (callback or worker).
        self._overflows = 0  # input lost: PortAudio's input-overflow flag or a full input queue
        self._underflows = 0  # output missing: PortAudio's output-underflow flag or no block ready in time
        self._device_overflows = 0  # the PortAudio-flagged part of each (host xruns, not the worker)
        self._device_underflows = 0
        self._late = 0
        self._chunks = 0  # output chunks emitted (one per engine block, give or take the resampler)
        self._callbacks = 0
        self._in_pos = 0   # input frames seen by the callback
        self._out_pos = 0  # output frames written by the callback
        self._leads: dict[int, int] = {}
        self._lead = 0
        self._delay: int | None = None
        self._block_frames = self.blocksize
        self._cur: tuple[int, np.ndarray] | None = None  # output chunk being played: (start index, (C, m))
        self._last_callback = 0.0
        self._levels = [-math.inf] * self.n
        self._input_db = -math.inf
        self._load = 0.0
        self._recorded = 0
        self._discarded = 0  # input samples dropped at stop, unprocessed (see drain_seconds)
        self._warm: dict[str, int] | None = None  # counters when warm-up ended
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
        self.port_aliases: dict[str, str] = {}
        """JACK output port -> the alias naming the sources it carries (when the host is JACK, see JackPortNamer)."""
        self.stream_abandoned = False
        """True when the device died under an open stream that PortAudio could not be trusted to close;
        the process should then exit without running PortAudio's own exit handler (it may hang)."""

    # -- setup -------------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Run one block through the engine on a throwaway stream (lazy allocations, kernel choice)."""
        g = self.engine.geometry
        st = self.engine.new_stream(1, seed=self.seed)
        self.engine.process(st, np.zeros((1, g.context + g.hop + g.lookahead), np.float32))

    def _lead_for(self, frames: int) -> int:
        lead = self._leads.get(frames)
        if lead is None:  # a callback size not computed ahead: bound it by the next computed one
            lead = self._lead_bound + frames
        return lead

    def start(self) -> None:
        """Warm up, open the recordings and the stream, start the worker. Raises DeviceError."""
        if self._started_at is not None:
            raise RuntimeError("a LiveSession starts once")
        self.warm_up()
        g, sr, msr = self.engine.geometry, self.sample_rate, self.model_rate
        for f in ((self.blocksize,) if self.blocksize else _LEAD_FRAMES):
            self._leads[f] = processing_lead(g, msr, sr, f)
        self._lead_bound = max(self._leads.values())
        self.state = self.engine.new_stream(1, seed=self.seed)
        self._down = PolyphaseResampler(sr, msr, 1)
        self._up = PolyphaseResampler(msr, sr, self.n)
        self._share = self.sep.residual_share(sr)  # the band above the model's goes by the stems' high band
        self._pending_in: list[np.ndarray] = []  # device-rate input fed, not yet matched by output
        self._pending_out: list[np.ndarray] = []  # device-rate stems (N, m) not yet matched by input
        self._fed = 0
        self._fed_model = 0
        self._emitted = 0
        if self.record_dir is not None:
            for s in self.sources:
                w = AtomicWriter(self.record_dir / f"{s}.wav", sr, 1, "wav")
                try:
                    w.__enter__()
                except BaseException:
                    self._close_writers(discard=True)
                    raise
                self._writers.append(w)
        namer = JackPortNamer.before(self.out_dev)
        try:
            self._open_streams()  # callbacks start queueing input at once; the worker follows
        except BaseException:
            self._stopping = self._stopped = True
            self._close_writers(discard=True)
            if namer is not None:
                namer.close()
            raise
        if namer is not None:
            self.port_aliases = namer.name(self.route, self.output_channel)
        self._started_at = self._last_callback = time.monotonic()
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, SWITCH_INTERVAL))
        self._worker = threading.Thread(target=self._work, name="rtsep-live-worker", daemon=True)
        self._worker.start()

    def _open_streams(self) -> None:
        sd = _sd()
        self._abort = sd.CallbackAbort
        in_idx, out_idx = self.in_dev["index"], self.out_dev["index"]
        kw = dict(samplerate=self.sample_rate, blocksize=self.blocksize, dtype="float32", latency=self.device_latency)
        try:
            if self.in_dev["hostapi"] == self.out_dev["hostapi"]:
                self._streams = [sd.Stream(device=(in_idx, out_idx), channels=(self.channel, self.out_channels),
                                           callback=self._duplex_callback, **kw)]
            else:  # PortAudio cannot open one duplex stream across host APIs
                self._streams = [sd.InputStream(device=in_idx, channels=self.channel, callback=self._in_callback, **kw),
                                 sd.OutputStream(device=out_idx, channels=self.out_channels,
                                                 callback=self._out_callback, **kw)]
            for s in self._streams:
                s.start()
        except Exception as exc:
            for s in self._streams:
                try:
                    s.close()
                except Exception:
                    pass
            self._streams = []
            raise DeviceError(f"cannot start audio on {label(self.in_dev)} -> {label(self.out_dev)} "
                              f"at {self.sample_rate} Hz ({short_error(exc)})") from None

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
            self._lead = self._lead_for(self._block_frames)
            self._delay = self._lead + self._block_frames + self.margin
        outdata.fill(0)
        a = self._out_pos - self._delay  # device-rate output index due at outdata[0]
        b = a + frames
        self._out_pos += frames
        first = self.output_channel - 1
        c = self.route.channels
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
            outdata[filled - a : filled - a + take, first : first + c] = src.T
            filled += take
            if filled >= end:
                self._cur = None
        if missing or filled < b:
            self._underflows += 1

    # -- worker ------------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            deadline = None
            while True:
                if self._stop_worker.is_set():  # drain what was queued, but only for `drain_seconds`
                    deadline = deadline or time.monotonic() + self.drain_seconds
                    if time.monotonic() > deadline:
                        self._discard_backlog()
                        break
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
                self._feed(np.zeros(0, np.float32), last=True)
            self._close_writers(discard=False)
        except BaseException as exc:  # reported by poll()/stop(); the stream keeps playing silence
            self._error = exc
            self._close_writers(discard=isinstance(exc, AudioError))

    def _discard_backlog(self) -> None:
        """Drop input still queued when the drain time ran out (a run far behind real time)."""
        while True:
            try:
                _, x = self._in_q.get_nowait()
            except queue.Empty:
                return
            self._discarded += x.shape[0]

    def _feed(self, x: np.ndarray, last: bool = False) -> None:
        """Device-rate input x (n,) -> model rate -> engine -> stems back at the device rate -> emit."""
        self._pending_in.append(x)
        self._fed += x.shape[0]
        t0 = time.perf_counter()
        xm = self._down.process(x[None], last=last)
        self._fed_model += xm.shape[1]
        est = self.engine.process(self.state, xm)
        if last:
            est = np.concatenate([est, self.engine.flush(self.state, self._fed_model)], axis=-1)
        m = est.shape[-1]
        if m or last:
            stems = self._up.process(est[0, 0] / self.n, last=last)  # (N, m'), the chain's one up-resampler
            if m:
                dt = time.perf_counter() - t0
                rtf = dt * self.model_rate / m
                self._load = rtf if self._chunks == 0 else 0.9 * self._load + 0.1 * rtf
            self._pending_out.append(stems)
            self._emit(last)

    def _emit(self, last: bool) -> None:
        """Match resampled stems with the input they belong to, project them onto it, route and queue."""
        out = np.concatenate(self._pending_out, axis=1)
        mix = np.concatenate(self._pending_in) if self._pending_in else np.zeros(0, np.float32)
        if last:  # the resampled total may differ from the input's by a sample or two: pad or trim
            m = mix.shape[0]
            if out.shape[1] < m:
                out = np.pad(out, ((0, 0), (0, m - out.shape[1])))
        else:
            m = min(out.shape[1], mix.shape[0])
        self._pending_out = [out[:, m:]] if out.shape[1] > m and not last else []
        self._pending_in = [mix[m:]] if mix.shape[0] > m else []
        if m == 0:
            return
        stems = project(out[:, :m], mix[:m], self._share)
        start = self._emitted
        self._emitted += m
        if not self._stopping:  # output due for playback (not the drain after the stream stopped)
            self._chunks += 1
            routed = self.route.apply(stems)
            if self._delay is not None and start + self._delay < self._out_pos:
                self._late += 1  # its first sample was due before it was ready
            try:
                self._out_q.put_nowait((start, routed))
            except queue.Full:
                self._late += 1
        for k, w in enumerate(self._writers):
            w.write(stems[k : k + 1])
        self._recorded += m
        self._levels = [rms_db(s) for s in stems]
        self._input_db = rms_db(mix[:m])

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
        """Device samples from the callback's input to its output: the chain's lead + one callback block."""
        if self._delay is not None:
            return self._delay
        if not self._leads:
            return 0
        return self._lead_for(self.blocksize or 256) + (self.blocksize or 256) + self.margin

    def _counters(self) -> dict[str, int]:
        return {"blocks": self._chunks, "late_blocks": self._late, "callbacks": self._callbacks,
                "underflows": self._underflows, "overflows": self._overflows,
                "compute_underflows": self._underflows - self._device_underflows,
                "compute_overflows": self._overflows - self._device_overflows}

    def poll(self) -> None:
        """Raise DeviceError if the device stopped or vanished; re-raise a worker failure."""
        if self._device_error is not None:
            raise self._device_error
        if self._error is not None:
            raise self._error
        if self._started_at is None or self._stopping:
            return
        if self._warm is None and time.monotonic() - self._started_at >= self.warmup_seconds:
            self._warm = self._counters()
        dead = None
        try:
            if not all(s.active for s in self._streams):
                dead = "stopped"
        except Exception as exc:
            dead = f"failed ({short_error(exc)})"
        # The stream object may still look active while no callbacks come (a server that died).
        silent_for = time.monotonic() - self._last_callback
        if dead is None and silent_for > max(2.0, 20 * (self._block_frames or 1024) / self.sample_rate):
            dead = f"delivered no audio for {silent_for:.1f} s"
        if dead is not None:
            self._device_error = DeviceError(f"audio device {label(self.in_dev)} {dead} after "
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
        after = None
        if self._warm is not None:
            now = self._counters()
            after = {k: now[k] - self._warm[k] for k in now}
        lead = self._lead if self._delay is not None else self.delay - (self.blocksize or 256) - self.margin
        return LiveStats(
            sample_rate=self.sample_rate, model_sample_rate=self.model_rate, sources=self.sources, route=self.route,
            running=t0 is not None and not self._stopping,
            seconds=0.0 if t0 is None else end - t0, blocks=self.state.block if hasattr(self, "state") else 0,
            overflows=self._overflows, underflows=self._underflows, late_blocks=self._late,
            device_overflows=self._device_overflows, device_underflows=self._device_underflows,
            callbacks=self._callbacks, block_frames=self._block_frames, latency=self.delay, margin=self.margin,
            algorithmic_latency=self.algorithmic_latency, resampler_latency=max(0, lead - self._alg_device),
            device_latency_s=lat, load=self._load, input_db=self._input_db, levels_db=tuple(self._levels),
            recorded=self._recorded, discarded=self._discarded, port_aliases=dict(self.port_aliases),
            warmup_seconds=self.warmup_seconds, after_warmup=after,
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
            if self._started_at is not None:
                sys.setswitchinterval(self._switch_interval)

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

