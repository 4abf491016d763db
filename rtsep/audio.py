"""Audio file I/O for ``rtsep file`` and data loading.

Every array crossing this module's API is float32 shaped ``(channels, samples)``, whatever
soundfile/soxr use internally (they are frame-major). Every problem a user can cause (a bad
path, a corrupt, truncated or empty file, an unwritable output folder, a full disk) surfaces as
a one-line :class:`~rtsep.errors.AudioError` naming the file, so the CLI can print it and exit
cleanly.

This module holds rtsep's one atomic writer (:class:`AtomicWriter`, temp name + ``os.replace``)
and the one way a *set* of outputs is published (:func:`publish`, all or none), so nothing else
should roll its own.
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import re
import secrets
import shutil
import signal
import struct
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf
import soxr

from rtsep.errors import AudioError

__all__ = [
    "FLAC_PEAK",
    "SUPPORTED_OUTPUT",
    "AtomicWriter",
    "StreamResampler",
    "clean_stale_parts",
    "hold_signals",
    "info_audio",
    "is_silent",
    "is_temp_name",
    "iter_blocks",
    "publish",
    "read_audio",
    "resample",
    "staging_dir",
    "write_audio",
]

SUPPORTED_OUTPUT = ("wav", "flac")

# wav keeps the model's output bit-exact (and lets it exceed full scale); flac is for size,
# so it gets the deepest integer depth libsndfile writes for it (it has no float subtype).
_FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}

FLAC_PEAK = 1.0
"""Largest magnitude PCM_24 FLAC holds (libsndfile maps 1.0 to 0x7FFFFF); `publish` scales a set of
stems whose peak exceeds it by one common gain, so they still sum to (gain x) the input."""

# Sample rates outside this range are not audio a separator can use (a corrupt header, usually);
# refusing them early keeps soxr from being asked for a 10^5-fold resampling.
_RATE_RANGE = (1000, 768000)

# Temp names: ".<target name>.<pid>-<8 hex>.part". The pid lets a later run tell a killed run's
# leftovers from a live writer's; the old form without it is recognised (and aged out) too.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.part$")
_LEGACY_TEMP_RE = re.compile(r"^\..+\.[0-9a-f]{8}\.part$")
STALE_AFTER_S = 60.0
"""A dead run's temp file must also be this long untouched before it is removed: a pid that is not
alive here may be alive on another host or container sharing the folder (they write every block)."""
LEGACY_STALE_AFTER_S = 3600.0

_QUALITY = "HQ"

# What soundfile raises for unreadable input: LibsndfileError (a RuntimeError), TypeError
# for odd formats, ValueError/OSError for bad arguments or the OS refusing access.
_SF_ERRORS = (RuntimeError, TypeError, ValueError, OSError)

PathLike = str | os.PathLike[str]


def _one_line(text: str) -> str:
    """Collapse ``text`` to one line, because the CLI prints errors as single lines."""
    return " ".join(text.split())


def _reason(exc: BaseException) -> str:
    """First line of a library error, preferring libsndfile's own short description."""
    text = getattr(exc, "error_string", None) or str(exc)
    lines = [line.strip() for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def _error(path: PathLike, what: str) -> AudioError:
    return AudioError(_one_line(f"{os.fspath(path)}: {what}"))


def _write_error(path: Path, exc: BaseException, need: int = 0, what: str = "cannot write audio") -> AudioError:
    """One line for a failed write; a full disk is named as such, since libsndfile reports ENOSPC as
    its generic "System error." (then the folder's free space, below what was being written, tells)."""
    full = isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
    if not full and not isinstance(exc, OSError):
        try:
            full = shutil.disk_usage(path.parent).free < need + (1 << 16)
        except OSError:
            full = False
    if full:
        return AudioError(_one_line(f"disk full writing {os.fspath(path)}"))
    return _error(path, f"{what} ({exc.strerror if isinstance(exc, OSError) and exc.strerror else _reason(exc)})")


def _check_input_path(path: PathLike) -> Path:
    """Fail early with a clear message instead of libsndfile's generic 'System error'."""
    p = Path(path)
    if not p.exists():
        raise _error(p, "no such file")
    if p.is_dir():
        raise _error(p, "is a directory, not an audio file")
    if not os.access(p, os.R_OK):
        raise _error(p, "permission denied")
    return p


def _wav_data_frames(path: Path) -> tuple[int, int] | None:
    """``(declared, present)`` frames of a RIFF/RIFX/RF64 WAV's data chunk, or None when the file is
    not a WAV or its data size is unknown (0 or 0xFFFFFFFF, as streaming writers leave it).

    libsndfile quietly shortens a WAV whose data chunk runs past the end of the file; reading the
    header ourselves is how a cut download or a killed recorder is noticed instead of processed.
    """
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
            if len(head) < 12 or head[8:12] != b"WAVE" or head[:4] not in (b"RIFF", b"RIFX", b"RF64"):
                return None
            end = ">" if head[:4] == b"RIFX" else "<"
            align = 0
            ds64 = None
            pos = 12
            for _ in range(64):  # a WAV has a handful of chunks before its data
                f.seek(pos)
                hdr = f.read(8)
                if len(hdr) < 8:
                    return None
                cid, csize = hdr[:4], struct.unpack(end + "I", hdr[4:])[0]
                if cid == b"ds64":
                    body = f.read(16)
                    if len(body) == 16:
                        ds64 = struct.unpack(end + "Q", body[8:16])[0]
                elif cid == b"fmt ":
                    body = f.read(16)
                    if len(body) < 14:
                        return None
                    align = struct.unpack(end + "H", body[12:14])[0]
                elif cid == b"data":
                    if head[:4] == b"RF64" and csize == 0xFFFFFFFF and ds64 is not None:
                        csize = ds64
                    elif csize in (0, 0xFFFFFFFF):
                        return None
                    if align <= 0:
                        return None
                    return csize // align, max(0, size - pos - 8) // align
                pos += 8 + csize + (csize & 1)
    except OSError:
        return None
    return None


def _check_complete(path: Path) -> None:
    """Refuse a truncated WAV (a header that promises more frames than the body holds): one line and
    no output beats stems silently shorter than the song; other formats are caught by a short read."""
    counts = _wav_data_frames(path)
    if counts is not None and counts[1] < counts[0]:
        raise _truncated(path, *counts)


def _truncated(path: Path, declared: int, present: int) -> AudioError:
    return _error(path, f"truncated (its header says {declared} frames, the file holds {present}); "
                        "re-export or repair it")


def _check_header(path: Path, sample_rate: int, channels: int) -> None:
    lo, hi = _RATE_RANGE
    if sample_rate <= 0 or channels <= 0:
        raise _error(path, "invalid header (no sample rate or channels)")
    if not lo <= sample_rate <= hi:
        raise _error(path, f"sample rate {sample_rate} Hz is outside {lo}..{hi} Hz (a corrupt header?)")


def _check_finite(path: PathLike, audio: np.ndarray) -> None:
    # NaN/Inf would silently poison the model's output and every metric computed from it.
    if not np.isfinite(audio).all():
        raise _error(path, "contains NaN or Inf samples")


def info_audio(path: PathLike) -> tuple[int, int, int]:
    """``(sample_rate, channels, frames)`` from the header only, to vet inputs cheaply
    (truncated WAVs and implausible rates are refused here, before any output is opened)."""
    p = _check_input_path(path)
    try:
        info = sf.info(os.fspath(p))
    except _SF_ERRORS as exc:
        raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
    if info.frames <= 0:
        raise _error(p, "audio has no samples")
    _check_header(p, int(info.samplerate), int(info.channels))
    _check_complete(p)
    return int(info.samplerate), int(info.channels), int(info.frames)


def _open(p: Path) -> sf.SoundFile:
    try:
        f = sf.SoundFile(os.fspath(p))
    except _SF_ERRORS as exc:
        raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
    try:
        if f.frames == 0:
            raise _error(p, "audio has no samples")
        _check_header(p, int(f.samplerate), int(f.channels))
        _check_complete(p)
    except BaseException:
        f.close()
        raise
    return f


def read_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Whole file as ``(channels, samples)`` float32 plus its sample rate.

    Raises AudioError (one line, naming the file) for missing paths, directories,
    unreadable/corrupt/truncated/unsupported files, empty audio and NaN/Inf samples.
    """
    p = _check_input_path(path)
    with _open(p) as f:
        try:
            data = f.read(dtype="float32", always_2d=True)
        except _SF_ERRORS as exc:
            raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
        if data.shape[0] < f.frames:
            raise _truncated(p, f.frames, data.shape[0])
        sr = f.samplerate
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise _error(p, "audio has no samples")
    audio = np.ascontiguousarray(data.T)
    _check_finite(p, audio)
    return audio, int(sr)


def iter_blocks(path: PathLike, block: int) -> Iterator[np.ndarray]:
    """Yield ``(channels, n)`` float32 blocks of ``block`` frames (the last may be shorter).

    Memory stays bounded by ``block`` so hour-long files can be separated; each block is
    checked for NaN/Inf since the whole file is never seen at once, and a body shorter than
    its header promised raises (truncated) rather than ending early.
    """
    if block <= 0:
        raise ValueError(f"block must be positive, got {block}")
    p = _check_input_path(path)
    with _open(p) as f:
        done = 0
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except _SF_ERRORS as exc:
                raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
            if data.shape[0] == 0:
                if done < f.frames:
                    raise _truncated(p, f.frames, done)
                return
            done += data.shape[0]
            chunk = np.ascontiguousarray(data.T)
            _check_finite(p, chunk)
            yield chunk


def _check_2d(audio: np.ndarray) -> np.ndarray:
    if audio.ndim != 2:
        raise ValueError(f"expected (channels, samples) audio, got shape {audio.shape}")
    return audio


def resample(audio: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample ``(channels, samples)`` audio with soxr HQ; returns the input when rates match."""
    _check_2d(audio)
    if sr_in == sr_out:
        return audio
    if audio.shape[1] == 0:
        return np.zeros((audio.shape[0], 0), dtype=np.float32)
    frames = np.ascontiguousarray(audio.T, dtype=np.float32)
    out = soxr.resample(frames, sr_in, sr_out, quality=_QUALITY)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).T)


class StreamResampler:
    """Chunked soxr resampling, so long files never need to be resampled in one piece.

    Output of successive ``process`` calls concatenates to the one-shot result; pass
    ``last=True`` with the final chunk (it may be empty) to flush the filter's tail.
    """

    def __init__(self, sr_in: int, sr_out: int, channels: int) -> None:
        if channels <= 0:
            raise ValueError(f"channels must be positive, got {channels}")
        self.sr_in = int(sr_in)
        self.sr_out = int(sr_out)
        self.channels = int(channels)
        self._stream = (
            None
            if self.sr_in == self.sr_out
            else soxr.ResampleStream(self.sr_in, self.sr_out, self.channels, dtype="float32", quality=_QUALITY)
        )
        self._done = False

    def process(self, chunk: np.ndarray, last: bool = False) -> np.ndarray:
        """Resample one ``(channels, n)`` chunk; returns ``(channels, m)`` float32."""
        _check_2d(chunk)
        if chunk.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {chunk.shape[0]}")
        if self._done:
            raise RuntimeError("StreamResampler already flushed with last=True")
        self._done = last
        if self._stream is None:
            return np.ascontiguousarray(chunk, dtype=np.float32)
        frames = np.ascontiguousarray(chunk.T, dtype=np.float32)
        out = self._stream.resample_chunk(frames, last=last)
        return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, self.channels).T)


def is_silent(audio: np.ndarray, threshold_db: float = -100.0) -> bool:
    """True when the peak level is below ``threshold_db`` dBFS (empty audio is silent).

    Peak rather than RMS: a file with any audible event is not silent, however short.
    """
    if audio.size == 0:
        return True
    peak = float(np.max(np.abs(audio)))
    if not np.isfinite(peak):
        return False
    return peak <= 0.0 or 20.0 * np.log10(peak) < threshold_db


def _output_format(path: Path, fmt: str | None) -> str:
    name = (fmt if fmt is not None else path.suffix.lstrip(".")).lower()
    if name not in SUPPORTED_OUTPUT:
        raise _error(path, f"unsupported output format {name or '(none)'!r}; use one of {', '.join(SUPPORTED_OUTPUT)}")
    return name


def is_temp_name(name: str) -> bool:
    """True for the hidden temp names this module creates (``.<name>.<pid>-<hex>.part``, or the older
    ``.<name>.<hex>.part``): the only files `clean_stale_parts` will ever remove."""
    return bool(_TEMP_RE.match(name) or _LEGACY_TEMP_RE.match(name))


def _temp_name(name: str) -> str:
    return f".{name}.{os.getpid()}-{secrets.token_hex(4)}.part"


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there: never judge a pid on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: alive, someone else's
        return True
    return True


def _last_modified(path: Path) -> float:
    """Newest mtime of a file, or of a folder and everything in it (a staging folder's files)."""
    newest = path.lstat().st_mtime
    if path.is_dir() and not path.is_symlink():
        for root, dirs, files in os.walk(path):
            for n in (*dirs, *files):
                with contextlib.suppress(OSError):
                    newest = max(newest, os.lstat(os.path.join(root, n)).st_mtime)
    return newest


def clean_stale_parts(folder: PathLike, now: float | None = None) -> list[Path]:
    """Remove the temp files (and staging folders) that killed runs left in ``folder``; returns them.

    Only names of this module's own pattern are touched, and only when the run that made them is
    gone: its pid is not alive here and nothing in it changed for `STALE_AFTER_S` (names without a
    pid, from older versions: `LEGACY_STALE_AFTER_S`). Anything else in the folder is left alone.
    """
    folder = Path(folder)
    now = time.time() if now is None else now
    removed: list[Path] = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for p in entries:
        m = _TEMP_RE.match(p.name)
        if m is not None:
            stale = not _pid_alive(int(m["pid"]))
            age = STALE_AFTER_S
        else:
            stale = bool(_LEGACY_TEMP_RE.match(p.name))
            age = LEGACY_STALE_AFTER_S
        try:
            if not stale or now - _last_modified(p) < age:
                continue
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:
            continue
        removed.append(p)
    return removed


@contextlib.contextmanager
def hold_signals() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back for a few renames, so an interrupt lands before or after a set of
    outputs is published, never half-way (a pending signal is delivered on exit)."""
    mask = getattr(signal, "pthread_sigmask", None)
    if mask is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    old = mask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        mask(signal.SIG_SETMASK, old)


class AtomicWriter:
    """Write an output file in chunks so that it appears complete or not at all.

    Chunks go to a hidden ``.name.<pid>-<random>.part`` file next to the target (same filesystem,
    so the final ``os.replace`` is atomic); any exception, KeyboardInterrupt included, deletes it,
    so a crash or Ctrl-C never leaves a truncated file that looks finished (a SIGKILL can: a later
    run's `clean_stale_parts` removes it). A full disk is reported as "disk full writing PATH".
    ``comment`` is stored in the file's comment tag.
    """

    def __init__(self, path: PathLike, sample_rate: int, channels: int, fmt: str | None = None,
                 comment: str | None = None) -> None:
        self._path = Path(path)
        self.fmt = _output_format(self._path, fmt)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.comment = comment
        if self.sample_rate <= 0 or self.channels <= 0:
            raise _error(self._path, f"invalid output sample rate {sample_rate} or channel count {channels}")
        self._dir = self._path.parent
        # Check the folder now, before the caller spends minutes computing the output.
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            blocker = next((a for a in (self._dir, *self._dir.parents) if a.exists()), None)
            if blocker is not None and not blocker.is_dir():
                raise _error(self._dir, f"cannot create output folder ({blocker} is a file)") from exc
            if exc.errno == errno.ENOSPC:
                raise _write_error(self._path, exc) from exc
            raise _error(self._dir, f"cannot create output folder ({exc.strerror or _reason(exc)})") from exc
        if not os.access(self._dir, os.W_OK | os.X_OK):
            raise _error(self._dir, "output folder is not writable")
        if self._path.is_dir():
            raise _error(self._path, "output path is a directory")
        self._tmp: Path | None = None
        self._file: sf.SoundFile | None = None
        self.frames = 0

    @property
    def path(self) -> Path:
        """The final target path (the file only exists there after a successful exit)."""
        return self._path

    @property
    def tmp(self) -> Path | None:
        """The temp file while one exists (after `finish`, the complete file awaiting `commit`)."""
        return self._tmp

    def __enter__(self) -> AtomicWriter:
        if self._file is not None or self._tmp is not None:
            raise RuntimeError("AtomicWriter is not reentrant")
        major, subtype = _FORMATS[self.fmt]
        # O_EXCL on a random name: never clobber another writer's temp file; mode 0o666
        # lets the umask decide permissions, as for any normally created file.
        for _ in range(100):
            tmp = self._dir / _temp_name(self._path.name)
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                    raise _write_error(self._path, exc) from exc
                raise _error(self._dir, f"cannot write to output folder ({exc.strerror or _reason(exc)})") from exc
            os.close(fd)
            break
        else:  # pragma: no cover - needs 100 random collisions
            raise _error(self._dir, "cannot create a temporary output file")
        self._tmp = tmp
        try:
            self._file = sf.SoundFile(
                os.fspath(tmp), mode="w", samplerate=self.sample_rate, channels=self.channels,
                format=major, subtype=subtype,
            )
            if self.comment:
                self._file.comment = self.comment  # before the first frame: FLAC writes tags up front
        except _SF_ERRORS as exc:
            self._discard()
            raise _write_error(self._path, exc) from exc
        except BaseException:
            self._discard()
            raise
        self.frames = 0
        return self

    def write(self, chunk: np.ndarray) -> None:
        """Append a ``(channels, n)`` chunk (flac: clipped to [-1, 1], as PCM requires; `publish`
        scales a set of stems first so that nothing is clipped)."""
        if self._file is None:
            raise RuntimeError("AtomicWriter.write called outside its with-block")
        _check_2d(chunk)
        if chunk.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {chunk.shape[0]}")
        frames = np.ascontiguousarray(chunk.T, dtype=np.float32)
        if self.fmt == "flac":
            frames = np.clip(frames, -FLAC_PEAK, FLAC_PEAK)
        try:
            self._file.write(frames)
        except _SF_ERRORS as exc:
            raise _write_error(self._path, exc, need=frames.nbytes) from exc
        self.frames += frames.shape[0]

    def _discard(self) -> None:
        """Close and delete the temp file, never raising: it runs while another error unwinds."""
        f, self._file = self._file, None
        if f is not None:
            try:
                f.close()
            except Exception:
                pass
        tmp, self._tmp = self._tmp, None
        if tmp is not None:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def finish(self) -> Path:
        """Close the temp file (flushing it: a full disk shows here) and return it, still hidden;
        `commit` moves it into place, `abort` deletes it. For publishing several files together."""
        f = self._file
        if f is None or self._tmp is None:
            raise RuntimeError("AtomicWriter.finish called outside its with-block")
        try:
            f.close()  # flushes and finalizes the header; can fail on a full disk
            self._file = None
        except _SF_ERRORS as exc:
            self._discard()
            raise _write_error(self._path, exc, what="cannot finish writing audio") from exc
        except BaseException:
            self._discard()
            raise
        return self._tmp

    def commit(self) -> None:
        """Move the finished temp file onto the target (atomic: same folder)."""
        tmp = self._tmp
        if tmp is None or self._file is not None:
            raise RuntimeError("AtomicWriter.commit needs a finished file")
        try:
            os.replace(tmp, self._path)
        except OSError as exc:
            self._discard()
            raise _error(self._path, f"cannot finish writing audio ({exc.strerror or _reason(exc)})") from exc
        self._tmp = None

    def abort(self) -> None:
        """Delete the temp file (never raises)."""
        self._discard()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is not None:
            self._discard()
            return False
        try:
            self.finish()
            self.commit()
        except BaseException:
            self._discard()
            raise
        return False


def _peak(path: Path, block: int = 1 << 16) -> float:
    peak = 0.0
    for chunk in iter_blocks(path, block):
        peak = max(peak, float(np.max(np.abs(chunk))) if chunk.size else 0.0)
    return peak


def _swap_in(pairs: Sequence[tuple[Path, Path]]) -> None:
    """Rename each complete ``src`` onto its ``dst``, all or none: a ``dst`` that is replaced is first
    kept under a temp name and put back if a later rename fails; signals are held meanwhile."""
    done: list[tuple[Path, Path, Path | None]] = []
    current = pairs[0][1] if pairs else Path()
    with hold_signals():
        try:
            for src, dst in pairs:
                current = dst
                backup = None
                if dst.exists():
                    backup = dst.parent / _temp_name(dst.name)
                    os.replace(dst, backup)
                done.append((src, dst, backup))
                os.replace(src, dst)
        except OSError as exc:
            for src, dst, backup in reversed(done):
                with contextlib.suppress(OSError):
                    if src.exists():  # this rename is the one that failed
                        if backup is not None:
                            os.replace(backup, dst)
                        continue
                    os.replace(dst, src)
                    if backup is not None:
                        os.replace(backup, dst)
            raise _error(current, f"cannot publish output ({exc.strerror or _reason(exc)})") from exc
        for _, _, backup in done:
            if backup is not None:
                with contextlib.suppress(OSError):
                    backup.unlink()


def publish(staged: Sequence[PathLike], target_dir: PathLike, fmt: str) -> float:
    """Move a set of staged float-WAV outputs (one track's stems) into ``target_dir`` as ``fmt``,
    all or none; returns the gain applied to every file of the set (1.0 unless said otherwise).

    FLAC holds integers up to full scale only, so a set whose peak exceeds `FLAC_PEAK` is scaled by
    one common gain ``FLAC_PEAK / peak`` (stated in each file's comment tag, and returned for the
    caller to print): the stems then sum to gain x input instead of being clipped. WAV stays float
    and is moved as it is. Existing targets are replaced. The staged files are consumed.
    """
    target = Path(target_dir)
    fmt = _output_format(target / f"x.{fmt}", fmt)
    staged = [Path(p) for p in staged]
    dests = [target / f"{p.name[: len(p.name) - len(p.suffix)]}.{fmt}" for p in staged]
    for d in dests:
        if d.is_dir():
            raise _error(d, "output path is a directory")
    target.mkdir(parents=True, exist_ok=True)
    if fmt == "wav" and all(_FORMATS["wav"][1] == sf.info(os.fspath(p)).subtype for p in staged):
        try:
            _swap_in(list(zip(staged, dests)))
            return 1.0
        except AudioError:
            if not all(p.exists() for p in staged):
                raise
            # every rename was rolled back (e.g. another filesystem): copy them instead
    peak = max((_peak(p) for p in staged), default=0.0) if fmt == "flac" else 0.0
    gain = FLAC_PEAK / peak if peak > FLAC_PEAK else 1.0
    comment = (f"rtsep: scaled by {gain:.6f} ({20 * math.log10(gain):+.2f} dB) to fit FLAC; divide by it "
               "to sum to the input" if gain < 1.0 else None)
    writers: list[AtomicWriter] = []
    try:
        for src, dst in zip(staged, dests):
            sr, channels, _ = info_audio(src)
            w = AtomicWriter(dst, sr, channels, fmt, comment=comment)
            writers.append(w)
            w.__enter__()
            for chunk in iter_blocks(src, 1 << 16):
                w.write(chunk * np.float32(gain) if gain < 1.0 else chunk)
            w.finish()
        _swap_in([(w.tmp, w.path) for w in writers])  # type: ignore[misc]
    finally:
        for w in writers:
            w.abort()
    for src in staged:
        with contextlib.suppress(OSError):
            src.unlink()
    return gain


@contextlib.contextmanager
def staging_dir(out_dir: PathLike, name: str) -> Iterator[Path]:
    """A hidden folder ``OUT/.<name>.<pid>-<hex>.part`` to compute a set of outputs in before they
    are `publish`-ed; removed on exit whatever happens (a killed run's is `clean_stale_parts`' job)."""
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
        path = out / _temp_name(name)
        path.mkdir()
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise _write_error(out / name, exc) from exc
        blocker = next((a for a in (out, *out.parents) if a.exists()), None)
        if blocker is not None and not blocker.is_dir():
            raise _error(out, f"cannot create output folder ({blocker} is a file)") from exc
        raise _error(out, f"cannot create output folder ({exc.strerror or _reason(exc)})") from exc
    try:
        yield path
    finally:
        with hold_signals():
            shutil.rmtree(path, ignore_errors=True)


def write_audio(path: PathLike, audio: np.ndarray, sample_rate: int, fmt: str | None = None) -> None:
    """Write ``(channels, samples)`` audio in one go, atomically (see AtomicWriter)."""
    _check_2d(audio)
    with AtomicWriter(path, sample_rate, audio.shape[0], fmt) as w:
        w.write(audio)
