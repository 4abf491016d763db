"""Which source plays on which output channel, at what gain: ``rtsep live --route``.

A route is a gain matrix ``(channels, sources)``; the output is ``gains @ stems``. The spec is a
comma-separated list of ``SOURCE=TARGETS`` entries:

- ``TARGETS`` is ``mute`` or targets joined by ``+``; a target is ``L`` (route channel 1), ``R``
  (channel 2), ``C`` (``L:0.5+R:0.5``) or a channel number (1-based, counted from
  ``--output-channel``), optionally ``:GAIN`` as a linear factor (``0.5``) or in dB (``-6dB``).
- ``SOURCE`` is a source name of the model, or ``*`` for every source not named elsewhere.
- Sources the spec does not name keep the default layout; ``--solo NAME`` mutes all the others.

Examples: ``drums=L,*=R`` (drums in the left ear, the rest in the right), ``guitar=mute``,
``bass=L:0.7+R:0.3``, ``drums=1,bass=2,guitar=3,piano=4``.

Default layout, by the output channels available: one source per channel when there are at least as
many channels as sources (source k on channel k); otherwise, with two or more channels, a linear
stereo pan on L/R (source k of N at position k/(N-1) from L to R, gains ``1 - p`` and ``p``); with
one channel, all sources on it. Each source's gains sum to 1 in every default layout and in any
target list without explicit gains, so the channels then still sum to the input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = ["Route", "default_gains", "parse_route"]

_NAMED = {"l": ((1, 1.0),), "r": ((2, 1.0),), "c": ((1, 0.5), (2, 0.5))}


@dataclass(frozen=True)
class Route:
    """gains (channels, sources): output channel c = sum_k gains[c, k] * stem_k."""

    sources: tuple[str, ...]
    gains: np.ndarray

    @property
    def channels(self) -> int:
        return int(self.gains.shape[0])

    def apply(self, stems: np.ndarray) -> np.ndarray:
        """stems (sources, samples) -> (channels, samples) float32."""
        return (self.gains @ stems).astype(np.float32, copy=False)

    def describe(self) -> str:
        """One line, e.g. 'bass->1, drums->1 0.67 2 0.33, guitar muted'."""
        parts = []
        for k, s in enumerate(self.sources):
            col = self.gains[:, k]
            hit = [(c + 1, g) for c, g in enumerate(col) if g != 0.0]
            if not hit:
                parts.append(f"{s} muted")
            elif len(hit) == 1 and hit[0][1] == 1.0:
                parts.append(f"{s}->{hit[0][0]}")
            else:
                parts.append(f"{s}->" + " ".join(f"{c} {g:.3g}" for c, g in hit))
        return ", ".join(parts)

    def to_dict(self) -> dict:
        return {"channels": self.channels, "sources": list(self.sources), "gains": self.gains.round(6).tolist(),
                "description": self.describe()}


def default_gains(n_sources: int, available: int) -> np.ndarray:
    """The default layout (see the module docstring) for `available` output channels."""
    if available < 1:
        raise ValueError("no output channel available")
    if available >= n_sources:
        return np.eye(n_sources)
    if available == 1:
        return np.ones((1, n_sources))
    pos = np.linspace(0.0, 1.0, n_sources) if n_sources > 1 else np.array([0.5])
    return np.stack([1.0 - pos, pos])


def _gain(text: str, entry: str) -> float:
    t = text.strip().lower()
    try:
        g = 10.0 ** (float(t[:-2]) / 20.0) if t.endswith("db") else float(t)
    except ValueError:
        raise ConfigError(f"--route {entry!r}: gain {text!r} is neither a number nor a level like -6dB") from None
    if not math.isfinite(g) or g < 0:
        raise ConfigError(f"--route {entry!r}: gain {text!r} must be finite and not negative")
    return g


def _targets(text: str, entry: str) -> list[tuple[int, float]]:
    """'L:0.7+R:0.3' -> [(1, 0.7), (2, 0.3)]; 'mute' -> []."""
    if text.strip().lower() == "mute":
        return []
    out: list[tuple[int, float]] = []
    for part in text.split("+"):
        name, _, gain = part.partition(":")
        key = name.strip().lower()
        if key in _NAMED:
            hits = _NAMED[key]
        elif key.isdigit() and int(key) >= 1:
            hits = ((int(key), 1.0),)
        else:
            raise ConfigError(f"--route {entry!r}: target {part.strip()!r} is not L, R, C, mute or a channel "
                              "number from 1")
        g = _gain(gain, entry) if gain.strip() else 1.0
        out += [(c, w * g) for c, w in hits]
    return out


def parse_route(spec: str | None, sources: tuple[str, ...] | list[str], available: int,
                solo: tuple[str, ...] | list[str] = ()) -> Route:
    """Build the Route for a device with `available` output channels; ConfigError (one line) on a bad spec.

    The route's channel count is the highest channel it uses (at least the default layout's when
    some source keeps it); the caller checks it against the device.
    """
    sources = tuple(sources)
    n = len(sources)
    default = default_gains(n, max(1, available))
    columns: dict[int, list[tuple[int, float]]] = {}
    rest: list[tuple[int, float]] | None = None
    for entry in (spec or "").split(","):
        entry = entry.strip()
        if not entry:
            continue
        name, eq, targets = entry.partition("=")
        name = name.strip()
        if not eq or not targets.strip():
            raise ConfigError(f"--route {entry!r}: expected SOURCE=TARGETS, e.g. drums=L or guitar=mute")
        parsed = _targets(targets, entry)
        if name == "*":
            if rest is not None:
                raise ConfigError("--route names '*' twice")
            rest = parsed
            continue
        if name not in sources:
            raise ConfigError(f"--route {entry!r}: no source {name!r} (the model's sources: {', '.join(sources)})")
        k = sources.index(name)
        if k in columns:
            raise ConfigError(f"--route names {name!r} twice")
        columns[k] = parsed
    for s in solo:
        if s not in sources:
            raise ConfigError(f"--solo {s!r}: no such source (the model's sources: {', '.join(sources)})")
    keeps_default = [k for k in range(n) if k not in columns and rest is None]
    used = [c for col in columns.values() for c, _ in col] + [c for c, _ in (rest or [])]
    channels = max(used + ([default.shape[0]] if keeps_default else []) + [1])
    gains = np.zeros((channels, n))
    for k in range(n):
        if k in columns or rest is not None:
            for c, g in columns.get(k, rest or []):
                gains[c - 1, k] += g
        else:
            gains[: default.shape[0], k] = default[:, k]
    if solo:
        for k, s in enumerate(sources):
            if s not in solo:
                gains[:, k] = 0.0
    return Route(sources, gains)
