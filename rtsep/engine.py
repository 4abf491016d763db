"""Block engine: overlapping windows of a stream -> encoder -> Langevin -> crossfaded sources.

The loaded model (a Backend: torch or ONNX Runtime) is read-only and shared; everything that
belongs to one stream lives in StreamState, so one model serves many streams. Offline
processing is the same loop fed from a file, and each block's RNG is derived from (seed, block
index) alone, so a stream cut into any chunk sizes gives exactly the offline result.

Geometry, in samples: each block emits `hop` new samples; its window adds `context` before and
`lookahead` after. The first `crossfade` (<= lookahead) samples of a block's output are faded
in from the previous block's estimate of the same samples. Algorithmic latency = hop + lookahead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from .langevin import LangevinConfig, Step, refine


class Backend(Protocol):
    """What the engine needs from a model; implemented by the torch and the ONNX backends."""

    sources: tuple[str, ...]
    sample_rate: int
    stride: int

    def encode(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mix (B, W) -> (mean, log_scale), each (B, N, W)."""

    def langevin(self, x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        """Run a Langevin chain: x (B, N, W), mix (B, 1, W) -> x after `steps` (see rtsep.langevin)."""


@dataclass(frozen=True)
class BlockGeometry:
    hop: int = 16384
    context: int = 4096
    lookahead: int = 4096
    crossfade: int = 1024
    langevin_context: int | None = None
    """Context samples the Langevin steps refine (<= context); None = all. Shorter saves prior passes."""
    langevin_lookahead: int | None = None
    """Lookahead samples the Langevin steps refine (crossfade <= it <= lookahead); None = all."""

    def __post_init__(self) -> None:
        if not 0 <= self.crossfade <= min(self.lookahead, self.hop):
            raise ValueError("crossfade must be within [0, min(lookahead, hop)]")
        if self.langevin_context is not None and not 0 <= self.langevin_context <= self.context:
            raise ValueError("langevin_context must be within [0, context]")
        if self.langevin_lookahead is not None and not self.crossfade <= self.langevin_lookahead <= self.lookahead:
            raise ValueError("langevin_lookahead must be within [crossfade, lookahead]")

    @property
    def window(self) -> int:
        return self.context + self.hop + self.lookahead

    @property
    def latency(self) -> int:
        """Algorithmic latency in samples: a sample leaves once its block's lookahead has arrived."""
        return self.hop + self.lookahead

    def check(self, stride: int) -> None:
        for name in ("hop", "context", "lookahead", "langevin_context", "langevin_lookahead"):
            if (getattr(self, name) or 0) % stride:
                raise ValueError(f"{name} must be a multiple of {stride} samples")


@dataclass
class StreamState:
    """Per-stream state: pending input, the previous block's tail, the block counter."""

    channels: int
    geometry: BlockGeometry
    n_sources: int
    seed: int = 0
    samples: int = 1
    buffer: np.ndarray = field(init=False)
    tail: np.ndarray = field(init=False)
    block: int = 0
    pending: int = 0

    def __post_init__(self) -> None:
        g = self.geometry
        # buffer holds input [block*hop - context, ...): starts with `context` zeros of left padding
        self.buffer = np.zeros((self.channels, g.context), dtype=np.float32)
        self.tail = np.zeros((self.samples, self.channels, self.n_sources, g.crossfade), dtype=np.float32)


class BlockEngine:
    """Runs one Backend over any number of StreamStates."""

    def __init__(self, backend: Backend, geometry: BlockGeometry, langevin: LangevinConfig) -> None:
        geometry.check(backend.stride)
        self.backend = backend
        self.geometry = geometry
        self.langevin = langevin
        c = geometry.crossfade
        self.fade_in = (0.5 - 0.5 * np.cos(np.pi * (np.arange(c) + 0.5) / c)).astype(np.float32) if c else None

    def new_stream(self, channels: int, seed: int = 0, samples: int = 1) -> StreamState:
        return StreamState(channels, self.geometry, len(self.backend.sources), seed=seed, samples=samples)

    def process(self, state: StreamState, chunk: np.ndarray) -> np.ndarray:
        """Feed input (channels, n); returns the newly completed output (samples, channels, N, m)."""
        state.buffer = np.concatenate([state.buffer, chunk.astype(np.float32, copy=False)], axis=1)
        outs = []
        g = self.geometry
        while state.buffer.shape[1] >= g.window:
            outs.append(self._block(state, state.buffer[:, : g.window]))
            state.buffer = state.buffer[:, g.hop :]
        return self._cat(state, outs)

    def flush(self, state: StreamState, total: int) -> np.ndarray:
        """Pad the end with silence until all `total` input samples have been emitted."""
        g = self.geometry
        outs = []
        emitted = state.block * g.hop
        while emitted < total:
            need = g.window - state.buffer.shape[1]
            if need > 0:
                state.buffer = np.concatenate([state.buffer, np.zeros((state.channels, need), np.float32)], axis=1)
            outs.append(self._block(state, state.buffer[:, : g.window]))
            state.buffer = state.buffer[:, g.hop :]
            emitted += g.hop
        out = self._cat(state, outs)
        return out[..., : out.shape[-1] - (emitted - total)] if emitted > total else out

    def _cat(self, state: StreamState, outs: list[np.ndarray]) -> np.ndarray:
        if not outs:
            return np.zeros((state.samples, state.channels, len(self.backend.sources), 0), np.float32)
        return np.concatenate(outs, axis=-1)

    def _block(self, state: StreamState, window: np.ndarray) -> np.ndarray:
        g, s, c = self.geometry, state.samples, state.channels
        n = len(self.backend.sources)
        mean, _ = self.backend.encode(window)  # (C, N, W)
        start = g.context - (g.context if g.langevin_context is None else g.langevin_context)
        stop = g.window - g.lookahead + (g.lookahead if g.langevin_lookahead is None else g.langevin_lookahead)
        w = stop - start
        x0 = np.broadcast_to(mean[None, :, :, start:stop], (s, c, n, w)).reshape(s * c, n, w)
        mix = np.broadcast_to(window[None, :, start:stop], (s, c, w)).reshape(s * c, w)
        rng = np.random.default_rng([state.seed, state.block])
        est = refine(x0, mix, self.backend.langevin, self.langevin, rng,
                     log_probs=getattr(self.backend, "log_probs", None),
                     band_prior=getattr(self.backend, "band_prior", None),
                     tf_grad=getattr(self.backend, "tf_grad", None)).reshape(s, c, n, w)
        a = g.context - start  # where this block's hop begins inside the refined span
        out = est[..., a : a + g.hop].copy()
        if g.crossfade:
            head = out[..., : g.crossfade]
            if state.block > 0:
                out[..., : g.crossfade] = state.tail + (head - state.tail) * self.fade_in
            state.tail = est[..., a + g.hop : a + g.hop + g.crossfade].copy()
        state.block += 1
        return out
