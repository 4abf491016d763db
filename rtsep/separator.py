"""Separator: the one object the CLI and the library both use to split audio into sources.

Stems are returned as each source's contribution to the input (the model mixes by mean, so a
stem is s_k / N): they sum back to the input exactly, at the input's rate and channel count.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .audio import AtomicWriter, StreamResampler, info_audio, iter_blocks, resample
from .bundle import Bundle, models_dir, resolve_model
from .engine import BlockEngine, BlockGeometry
from .errors import AudioError, BundleError
from .fullband import Share, project, residual_share
from .langevin import LangevinConfig

__all__ = ["DEFAULT_MODEL", "MODELS_DIR", "BACKENDS", "RunConfig", "Separator", "resolve_model"]

DEFAULT_MODEL = "music4"
MODELS_DIR = models_dir() or Path(__file__).resolve().parent / "models"
"""Where installed models are looked up when this module is imported (see `rtsep.bundle.models_dir`)."""
BACKENDS = ("auto", "onnx", "torch")


@dataclass(frozen=True)
class RunConfig:
    """Run-time knobs, separate from the model: Langevin steps, chains, seed, block geometry."""

    steps: int = 4
    samples: int = 1
    seed: int = 0
    geometry: BlockGeometry = BlockGeometry()
    langevin: LangevinConfig = LangevinConfig()


class Separator:
    """Split (channels, samples) audio into (sources, channels, samples) stems."""

    def __init__(self, backend, run: RunConfig = RunConfig()) -> None:
        self.backend = backend
        self.run = run
        lcfg = replace(run.langevin, steps=run.steps)
        self.engine = BlockEngine(backend, run.geometry, lcfg)

    @classmethod
    def load(cls, model: str | Path | Bundle = DEFAULT_MODEL, backend: str = "auto", steps: int | None = None,
             samples: int = 1, seed: int = 0, geometry: BlockGeometry | None = None, provider: str = "auto",
             threads: int | None = None, space: str | None = None, temperature: float | None = None) -> Separator:
        """Load an installed model by name, a model directory or a Bundle; Langevin defaults come from
        its card (`space`: "signal" or "mask" and `temperature` override the card's chain, see `rtsep.langevin`).
        `backend` "auto" is ONNX Runtime where the bundle has graphs (no torch imported), else torch.
        A priors-only set (no encoder, a card that sets a chain) separates with that chain from equal
        shares."""
        bundle = Bundle.load(model)
        if backend not in BACKENDS:
            raise BundleError(f"unknown backend {backend!r} ({', '.join(BACKENDS)})")
        if backend == "auto":
            backend = "onnx" if bundle.has_onnx else "torch"
        if not bundle.has_encoder and not (bundle.langevin.steps if steps is None else steps):
            raise BundleError(f"{bundle.path} has no encoder, so it needs Langevin steps (its card's, or --steps K "
                              "> 0): without them it would split the mixture equally")
        if backend == "torch":
            from .backends import TorchBackend

            be = TorchBackend(bundle, threads=threads, encoder=bundle.has_encoder)
        else:
            from .onnx_backend import OnnxBackend

            be = OnnxBackend(bundle, provider=provider, threads=threads)
        lcfg = bundle.langevin
        if space is not None:
            lcfg = replace(lcfg, space=space)
        if temperature is not None:
            lcfg = replace(lcfg, temperature=temperature)
        run = RunConfig(steps=lcfg.steps if steps is None else steps, samples=samples, seed=seed,
                        geometry=geometry or BlockGeometry(), langevin=lcfg)
        return cls(be, run)

    @property
    def bundle(self) -> Bundle | None:
        """The model this separator runs (None for a hand-made backend)."""
        return getattr(self.backend, "bundle", None)

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self.backend.sources)

    @property
    def sample_rate(self) -> int:
        return int(self.backend.sample_rate)

    def separate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """audio (channels, samples) -> stems (sources, channels, samples) summing to audio."""
        mean, _ = self._separate_array(audio, sample_rate)
        return mean

    def _separate_array(self, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        if audio.shape[1] == 0:
            raise AudioError("empty audio")
        if not np.isfinite(audio).all():
            raise AudioError("audio contains NaN or Inf")
        x = resample(audio, sample_rate, self.sample_rate)
        state = self.engine.new_stream(audio.shape[0], seed=self.run.seed, samples=self.run.samples)
        est = np.concatenate([self.engine.process(state, x), self.engine.flush(state, x.shape[1])], axis=-1)
        return self._finish(est, audio, sample_rate)

    def residual_share(self, sample_rate: int) -> Share:
        """How a stream at `sample_rate` shares what the model's stems leave of the input: by the bundle's
        learned high-band network where it has one (`rtsep train highband`), else by rule."""
        bundle = self.bundle
        return residual_share(sample_rate, self.sample_rate, bundle.highband if bundle is not None else None)

    def raw_stems(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The model's stems (sources, channels, samples) at the input's rate before the mixture projection:
        what `rtsep train highband` learns to complete."""
        audio = np.atleast_2d(np.asarray(audio, dtype=np.float32))
        x = resample(audio, sample_rate, self.sample_rate)
        state = self.engine.new_stream(audio.shape[0], seed=self.run.seed, samples=self.run.samples)
        est = np.concatenate([self.engine.process(state, x), self.engine.flush(state, x.shape[1])], axis=-1)
        return self._upsample(est, audio.shape[1], sample_rate).mean(axis=0)

    def _upsample(self, est: np.ndarray, t: int, sample_rate: int) -> np.ndarray:
        """est (S, C, N, T') at model rate -> stems (S, N, C, t) at the input rate, unprojected."""
        n = est.shape[2]
        stems = est.transpose(0, 2, 1, 3) / n  # (S, N, C, T')
        stems = np.stack([np.stack([resample(s, self.sample_rate, sample_rate) for s in chain]) for chain in stems])
        stems = stems[..., :t]
        if stems.shape[-1] < t:
            stems = np.pad(stems, [(0, 0)] * 3 + [(0, t - stems.shape[-1])])
        return stems

    def _finish(self, est: np.ndarray, audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
        """est (S, C, N, T') at model rate -> (mean stems, spread) at input rate, stems summing to audio."""
        stems = self._upsample(est, audio.shape[1], sample_rate)
        mean = project(stems.mean(axis=0), audio, self.residual_share(sample_rate))
        spread = stems.std(axis=0)
        return mean.astype(np.float32), spread.astype(np.float32)

    def separate_file(self, path: Path, out_dir: Path, fmt: str = "wav",
                      progress: Callable[[int, int], None] | None = None, block_seconds: float = 10.0) -> list[Path]:
        """Stream a file of any length through the engine with bounded memory; write stems atomically.

        Writes OUT_DIR/<track>/<source>.<fmt> (and <source>.spread.<fmt> when samples > 1); nothing is
        left behind if reading, separating or writing fails or is interrupted.
        """
        sr, channels, frames = info_audio(path)
        track = out_dir / Path(path).stem
        names = [track / f"{s}.{fmt}" for s in self.sources]
        if self.run.samples > 1:
            names += [track / f"{s}.spread.{fmt}" for s in self.sources]
        writers = [AtomicWriter(p, sr, channels, fmt) for p in names]
        n = len(self.sources)
        down = StreamResampler(sr, self.sample_rate, channels)
        ups = [[StreamResampler(self.sample_rate, sr, channels) for _ in range(n)] for _ in range(self.run.samples)]
        state = self.engine.new_stream(channels, seed=self.run.seed, samples=self.run.samples)
        share = self.residual_share(sr)  # one per stream: it keeps the stems' last samples
        # Input at the original rate must stay aligned with the output: keep a delay line of it.
        pending_in: list[np.ndarray] = []
        pending_out: list[np.ndarray] = []
        fed_model = 0
        block = max(1, int(block_seconds * sr))
        try:
            for w in writers:
                w.__enter__()
            chunks = iter_blocks(path, block)
            done_in = 0
            last = False
            while not last:
                chunk = next(chunks, None)
                last = chunk is None
                if chunk is not None:
                    pending_in.append(chunk)
                    done_in += chunk.shape[1]
                x = down.process(chunk if chunk is not None else np.zeros((channels, 0), np.float32), last=last)
                fed_model += x.shape[1]
                est = self.engine.process(state, x)
                if last:
                    est = np.concatenate([est, self.engine.flush(state, fed_model)], axis=-1)
                self._emit(est, ups, pending_in, pending_out, writers, last, share)
                if progress:
                    progress(min(done_in, frames), frames)
            for w in writers:
                w.__exit__(None, None, None)
        except BaseException as exc:
            for w in writers:
                w.__exit__(type(exc), exc, exc.__traceback__)
            raise
        return names

    def _emit(self, est: np.ndarray, ups, pending_in: list[np.ndarray], pending_out: list[np.ndarray], writers,
              last: bool, share: Share) -> None:
        """Resample a piece of output back, align it with the input it belongs to, make it sum exactly."""
        s_chains, c, n, _ = est.shape
        back = np.stack([np.stack([ups[s][k].process(est[s, :, k] / n, last=last) for k in range(n)])
                         for s in range(s_chains)])  # (S, N, C, m): every resampler saw equal lengths
        pending_out.append(back)
        out = np.concatenate(pending_out, axis=-1)
        audio = np.concatenate(pending_in, axis=1) if pending_in else np.zeros((c, 0), np.float32)
        if last:  # the resampled total may differ by a sample or two from the input's: pad or trim
            m = audio.shape[1]
            if out.shape[-1] < m:
                out = np.pad(out, [(0, 0)] * 3 + [(0, m - out.shape[-1])])
        else:
            m = min(out.shape[-1], audio.shape[1])
        pending_out.clear()
        pending_in.clear()
        if out.shape[-1] > m and not last:
            pending_out.append(out[..., m:])
        if audio.shape[1] > m:
            pending_in.append(audio[:, m:])
        if m == 0:
            return
        stems, mix = out[..., :m], audio[:, :m]
        mean = project(stems.mean(axis=0), mix, share)
        for k in range(n):
            writers[k].write(mean[k])
        if s_chains > 1:
            spread = stems.std(axis=0)
            for k in range(n):
                writers[n + k].write(spread[k])
