"""Audio file I/O for ``rtsep file`` and data loading.

Every array crossing this module's API is float32 shaped ``(channels, samples)``, whatever
soundfile/soxr use internally (they are frame-major). Every problem a user can cause (a bad
path, a corrupt or empty file, an unwritable output folder) surfaces as a one-line
:class:`~rtsep.errors.AudioError` naming the file, so the CLI can print it and exit cleanly.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import numpy as np
import soundfile as sf
import soxr

from rtsep.errors import AudioError

__all__ = [
    "SUPPORTED_OUTPUT",
    "AtomicWriter",
    "StreamResampler",
    "info_audio",
    "is_silent",
    "iter_blocks",
    "read_audio",
    "resample",
    "write_audio",
]

SUPPORTED_OUTPUT = ("wav", "flac")

# wav keeps the model's output bit-exact (and lets it exceed full scale); flac is for size,
# so it gets the deepest integer depth libsndfile writes for it.
_FORMATS = {"wav": ("WAV", "FLOAT"), "flac": ("FLAC", "PCM_24")}

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


def _check_input_path(path: PathLike) -> Path:
    """Fail early with a clear message instead of libsndfile's generic 'System error'."""
    p = Path(path)
    if not p.exists():
        raise _error(p, "no such file")
    if p.is_dir():
        raise _error(p, "is a directory, not an audio file")
    return p


def _check_finite(path: PathLike, audio: np.ndarray) -> None:
    # NaN/Inf would silently poison the model's output and every metric computed from it.
    if not np.isfinite(audio).all():
        raise _error(path, "contains NaN or Inf samples")


def info_audio(path: PathLike) -> tuple[int, int, int]:
    """``(sample_rate, channels, frames)`` from the header only, to vet inputs cheaply."""
    p = _check_input_path(path)
    try:
        info = sf.info(os.fspath(p))
    except _SF_ERRORS as exc:
        raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
    if info.frames <= 0:
        raise _error(p, "audio has no samples")
    if info.samplerate <= 0 or info.channels <= 0:
        raise _error(p, "invalid header (no sample rate or channels)")
    return int(info.samplerate), int(info.channels), int(info.frames)


def read_audio(path: PathLike) -> tuple[np.ndarray, int]:
    """Whole file as ``(channels, samples)`` float32 plus its sample rate.

    Raises AudioError (one line, naming the file) for missing paths, directories,
    unreadable/corrupt/unsupported files, empty audio and NaN/Inf samples.
    """
    p = _check_input_path(path)
    try:
        data, sr = sf.read(os.fspath(p), dtype="float32", always_2d=True)
    except _SF_ERRORS as exc:
        raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise _error(p, "audio has no samples")
    audio = np.ascontiguousarray(data.T)
    _check_finite(p, audio)
    return audio, int(sr)


def iter_blocks(path: PathLike, block: int) -> Iterator[np.ndarray]:
    """Yield ``(channels, n)`` float32 blocks of ``block`` frames (the last may be shorter).

    Memory stays bounded by ``block`` so hour-long files can be separated; each block is
    checked for NaN/Inf since the whole file is never seen at once.
    """
    if block <= 0:
        raise ValueError(f"block must be positive, got {block}")
    p = _check_input_path(path)
    try:
        f = sf.SoundFile(os.fspath(p))
    except _SF_ERRORS as exc:
        raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
    with f:
        if f.frames == 0:
            raise _error(p, "audio has no samples")
        while True:
            try:
                data = f.read(block, dtype="float32", always_2d=True)
            except _SF_ERRORS as exc:
                raise _error(p, f"cannot read audio ({_reason(exc)})") from exc
            if data.shape[0] == 0:
                return
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


class AtomicWriter:
    """Write an output file in chunks so that it appears complete or not at all.

    Chunks go to a hidden ``.name.<random>.part`` file next to the target (same filesystem,
    so the final ``os.replace`` is atomic); any exception, KeyboardInterrupt included,
    deletes it, so a crash or Ctrl-C never leaves a truncated file that looks finished.
    """

    def __init__(self, path: PathLike, sample_rate: int, channels: int, fmt: str | None = None) -> None:
        self._path = Path(path)
        self.fmt = _output_format(self._path, fmt)
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
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

    def __enter__(self) -> AtomicWriter:
        if self._file is not None:
            raise RuntimeError("AtomicWriter is not reentrant")
        major, subtype = _FORMATS[self.fmt]
        # O_EXCL on a random name: never clobber another writer's temp file; mode 0o666
        # lets the umask decide permissions, as for any normally created file.
        for _ in range(100):
            tmp = self._dir / f".{self._path.name}.{secrets.token_hex(4)}.part"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                continue
            except OSError as exc:
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
        except _SF_ERRORS as exc:
            self._discard()
            raise _error(self._path, f"cannot write audio ({_reason(exc)})") from exc
        except BaseException:
            self._discard()
            raise
        self.frames = 0
        return self

    def write(self, chunk: np.ndarray) -> None:
        """Append a ``(channels, n)`` chunk (flac: clipped to [-1, 1], as PCM requires)."""
        if self._file is None:
            raise RuntimeError("AtomicWriter.write called outside its with-block")
        _check_2d(chunk)
        if chunk.shape[0] != self.channels:
            raise ValueError(f"expected {self.channels} channels, got {chunk.shape[0]}")
        frames = np.ascontiguousarray(chunk.T, dtype=np.float32)
        if self.fmt == "flac":
            frames = np.clip(frames, -1.0, 1.0)
        try:
            self._file.write(frames)
        except _SF_ERRORS as exc:
            raise _error(self._path, f"cannot write audio ({_reason(exc)})") from exc
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

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        if exc_type is not None:
            self._discard()
            return False
        f, tmp = self._file, self._tmp
        assert f is not None and tmp is not None
        try:
            f.close()  # flushes and finalizes the header; can fail on a full disk
            self._file = None
            os.replace(tmp, self._path)
            self._tmp = None
        except _SF_ERRORS as exc:
            self._discard()
            raise _error(self._path, f"cannot finish writing audio ({_reason(exc)})") from exc
        except BaseException:
            self._discard()
            raise
        return False


def write_audio(path: PathLike, audio: np.ndarray, sample_rate: int, fmt: str | None = None) -> None:
    """Write ``(channels, samples)`` audio in one go, atomically (see AtomicWriter)."""
    _check_2d(audio)
    with AtomicWriter(path, sample_rate, audio.shape[0], fmt) as w:
        w.write(audio)
