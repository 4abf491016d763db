"""`rtsep bench`: real-time factor and per-block latency of the block engine, per backend.

Feeds a synthetic mixture hop by hop, as a live stream would, through S independent streams of one
loaded model, timing each block. RTF = compute time / audio time per stream; p50/p99/max are the
times one block took; latency_ms is the algorithmic latency (hop + lookahead) of the geometry.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from .engine import BlockEngine, BlockGeometry
from .langevin import LangevinConfig

LIVE_GEOMETRY = BlockGeometry(hop=512, context=2048, lookahead=512, crossfade=256, langevin_context=128,
                              langevin_lookahead=256)
"""Live blocks: 64 ms latency; Langevin refines 128 + 512 + 256 samples of each 3072-sample window."""


def live_geometry(hop: int, context: int, lookahead: int, crossfade: int, stride: int) -> BlockGeometry:
    """A user's live block sizes with the Langevin span `rtsep bench` measures, clipped to the window
    and rounded up to the model's stride (the span must still cover the crossfade)."""
    def up(n: int) -> int:
        return -(-n // stride) * stride

    return BlockGeometry(hop=hop, context=context, lookahead=lookahead, crossfade=crossfade,
                         langevin_context=min(context, up(LIVE_GEOMETRY.langevin_context)),
                         langevin_lookahead=min(up(max(crossfade, LIVE_GEOMETRY.langevin_lookahead)), lookahead))


def bench_engine(backend, langevin: LangevinConfig, geometry: BlockGeometry, steps: int, streams: int = 1,
                 seconds: float = 4.0, seed: int = 0) -> dict:
    engine = BlockEngine(backend, geometry, replace(langevin, steps=steps))
    sr = backend.sample_rate
    rng = np.random.default_rng(seed)
    audio = (0.3 * rng.standard_normal((1, int(seconds * sr)))).astype(np.float32)
    states = [engine.new_stream(1, seed=i) for i in range(streams)]
    warm = engine.new_stream(1)
    engine.process(warm, np.zeros((1, geometry.window), np.float32))  # warm-up, not timed
    times = []
    for pos in range(0, audio.shape[1] - geometry.hop + 1, geometry.hop):
        chunk = audio[:, pos : pos + geometry.hop]
        for st in states:
            t0 = time.perf_counter()
            out = engine.process(st, chunk)
            if out.shape[-1]:  # a call that only buffered input ran no block
                times.append(time.perf_counter() - t0)
    t = np.array(times)
    blocks = len(t) / streams
    audio_s = blocks * geometry.hop / sr
    return {"steps": steps, "streams": streams, "rtf": float(t.sum() / streams / audio_s),
            "p50_ms": float(np.percentile(t, 50) * 1e3), "p99_ms": float(np.percentile(t, 99) * 1e3),
            "max_ms": float(t.max() * 1e3), "latency_ms": geometry.latency / sr * 1e3,
            "hop_ms": geometry.hop / sr * 1e3, "blocks": int(len(t))}
