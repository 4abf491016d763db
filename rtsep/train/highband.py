"""`rtsep train highband`: the small network that shares the band above the model's Nyquist among the stems.

A 16 kHz model hears nothing above 8 kHz of a 44.1 kHz input; the projection's residual there (cymbals,
a guitar's air) must still go to the right stems. The network (`rtsep.fullband.LearnedHighBandShare`)
sees each stem's energy in three guide bands at the top of the model's band and the residual's own
spectral shape, per 23 ms frame, and answers softmax shares. It trains on rendered stems at the input
rate: the model's unprojected stems of training mixtures, and the least-squares error of
stems + share * residual against the true stems, summed exactly over each hop with the runtime's
weight ramp (moments per hop, so a step is cheap). What uses stems: only this network.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..atomic import replacing
from ..card import provenance, update_card
from ..datasets.folder import SourceSet, list_sources, resolve_split
from ..errors import DataError
from ..fullband import HIGHBAND_FILE, LearnedHighBandShare, frame_size
from ..progress import bar


def _track(items, label: str, show: bool):
    items = list(items)
    with bar(disable=not show) as progress:
        task = progress.add_task(label, total=len(items), info="")
        for item in items:
            yield item
            progress.advance(task)


@dataclass
class HighBandTraining:
    steps: int = 1500
    hidden: int = 32
    lr: float = 3e-3
    seed: int = 0
    gain_min: float = 0.5
    gain_max: float = 1.0
    clips: int | None = None
    """Training clips used (default all)."""


def clip_moments(sep, stems: np.ndarray, gains: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (F, D) and per-hop moments (F, 3 + 2N) of one mono clip (N, T) of true stems.

    Row j belongs to frame j; its moments are over the hop whose weights ramp from frame j-1's to j's:
    sum r^2, sum f r^2, sum f^2 r^2, then sum r d_k and sum f r d_k (f the ramp, d = true - model stem)."""
    n, t = stems.shape
    true = stems * gains[:, None] / n  # each source's contribution to the mix (the model mixes by mean)
    mix = true.sum(axis=0)
    est = sep.raw_stems(mix[None], sample_rate)[:, 0].astype(np.float64)  # (N, T)
    res = mix - est.sum(axis=0)
    share = LearnedHighBandShare({}, sample_rate, sep.sample_rate)
    hop, n_fft = share.hop, share.n_fft
    x = np.concatenate([np.zeros((n + 1, n_fft - 1)), np.concatenate([est, res[None]])], axis=-1)
    frames_n = (t - hop) // hop + 1  # frames ending at j*hop + hop - 1 < t
    ends = np.arange(frames_n) * hop + hop - 1
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[:, ends, :]  # (N+1, F, n_fft)
    feats = share.features(frames[:n, None], frames[n][None])[0]  # (F, D)
    tt = np.arange(hop, t)
    k = (tt - hop) // hop  # samples before the first frame keep the equal split: left out
    f = (tt - k * hop - hop + 1) / hop
    r, d = res[tt], (true - est)[:, tt]
    cols = [r * r, f * r * r, f * f * r * r, *(r * d), *(f * r * d)]
    mom = np.stack([np.bincount(k, weights=c, minlength=frames_n) for c in cols], axis=-1)
    return feats.astype(np.float32), mom


class Net(torch.nn.Module):
    def __init__(self, d: int, n: int, hidden: int, mean: np.ndarray, std: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.layers = torch.nn.ModuleList([torch.nn.Linear(d, hidden), torch.nn.Linear(hidden, hidden),
                                           torch.nn.Linear(hidden, n)])
        torch.nn.init.zeros_(self.layers[-1].weight)  # starts at the equal split
        torch.nn.init.zeros_(self.layers[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = (x - self.mean) / self.std
        for layer in self.layers[:-1]:
            h = torch.tanh(layer(h))
        return torch.softmax(self.layers[-1](h), dim=-1)

    def params(self) -> dict[str, np.ndarray]:
        """The weights as `rtsep.fullband.mlp_shares` reads them."""
        out = {"mean": self.mean.numpy(), "std": self.std.numpy()}
        for i, layer in enumerate(self.layers):
            out[f"w{i}"] = layer.weight.detach().numpy().T.copy()
            out[f"b{i}"] = layer.bias.detach().numpy().copy()
        return out


def hop_loss(w: torch.Tensor, mom: torch.Tensor, clip_of: torch.Tensor, clips: int) -> torch.Tensor:
    """The stems' high-band error relative to the residual's energy, per clip, meaned; w (F, N) per frame."""
    n = w.shape[1]
    prev = torch.cat([torch.full((1, n), 1.0 / n), w[:-1]])
    first = torch.ones(len(w), dtype=torch.bool)
    first[1:] = clip_of[1:] != clip_of[:-1]
    prev = torch.where(first[:, None], torch.full_like(w, 1.0 / n), prev)  # a clip starts from the equal split
    a, b = prev, w - prev  # weight over the hop: a + f b
    m0, m1, m2 = mom[:, 0:1], mom[:, 1:2], mom[:, 2:3]
    d0, d1 = mom[:, 3:3 + n], mom[:, 3 + n:]
    err = a * a * m0 + 2 * a * b * m1 + b * b * m2 - 2 * (a * d0 + b * d1)  # + sum d^2, a constant
    per_clip = torch.zeros(clips).index_add(0, clip_of, err.sum(dim=1))
    energy = torch.zeros(clips).index_add(0, clip_of, mom[:, 0]) + 1e-12
    return (per_clip / energy).mean()


def _load(data: Path, split: str, sources: list[str], rate: int) -> list[np.ndarray]:
    root = resolve_split(Path(data), split)
    have = list_sources(root)
    if have != sorted(sources):
        raise DataError(f"{root} has sources {have}, the model {sources}")
    sets = [SourceSet.load(data, s, rate, split=split) for s in sources]
    return [np.stack(c) for c in zip(*(s.clips for s in sets))]


def train_highband(model_dir: Path, data: Path, sample_rate: int, tr: HighBandTraining = HighBandTraining(),
                   show: bool = True) -> dict:
    """Train and write MODEL_DIR/highband.npz and the card's "highband" section; returns that section."""
    import soundfile as sf

    from ..separator import Separator

    model_dir = Path(model_dir)
    first = next(iter(sorted((resolve_split(Path(data), "train")).glob("*/*.wav"))), None)
    if first is None:
        raise DataError(f"no clips in {data}/train")
    if sf.info(str(first)).samplerate != sample_rate:
        raise DataError(f"{data} is at {sf.info(str(first)).samplerate} Hz, not the --sample-rate {sample_rate} Hz "
                        "it should teach (render it with `rtsep data music4 --sample-rate`)")
    sep = Separator.load(model_dir, backend="auto")
    if sample_rate <= sep.sample_rate:
        raise DataError(f"--sample-rate {sample_rate} Hz leaves no band above the model's {sep.sample_rate} Hz")
    sources = list(sep.sources)
    rng = np.random.default_rng(tr.seed)
    t0 = time.time()
    sets = {}
    for split in ("train", "valid"):
        clips = _load(data, split, sources, sample_rate)
        if split == "train" and tr.clips:
            clips = clips[: tr.clips]
        rows = []
        for c in _track(clips, f"high band: model stems of {split}", show):
            gains = rng.uniform(tr.gain_min, tr.gain_max, len(sources))
            rows.append(clip_moments(sep, c, gains, sample_rate))
        sets[split] = (torch.tensor(np.concatenate([r[0] for r in rows])),
                       torch.tensor(np.concatenate([r[1] for r in rows])),
                       torch.tensor(np.concatenate([np.full(len(r[0]), i) for i, r in enumerate(rows)])), len(rows))
    feats = sets["train"][0].numpy()
    torch.manual_seed(tr.seed)
    net = Net(feats.shape[1], len(sources), tr.hidden, feats.mean(axis=0), feats.std(axis=0) + 1e-3)
    opt = torch.optim.Adam(net.parameters(), lr=tr.lr)

    def loss_of(split: str) -> torch.Tensor:
        x, mom, clip_of, clips = sets[split]
        return hop_loss(net(x), mom.float(), clip_of, clips)

    with torch.no_grad():
        equal = float(loss_of("valid"))
    for _ in _track(range(tr.steps), "high band: training", show):
        opt.zero_grad()
        loss = loss_of("train")
        loss.backward()
        opt.step()
    with torch.no_grad():
        valid = float(loss_of("valid"))
    with replacing(model_dir / HIGHBAND_FILE, suffix=".npz") as tmp:
        np.savez(tmp, **net.params())
    # The loss omits sum d^2, so error energy = loss + sum d^2 / sum r^2; report the gain over the equal split.
    rec = {"config": {"sources": sources, "model_rate": sep.sample_rate, "hidden": tr.hidden,
                      "frame": frame_size(sample_rate), "features": int(feats.shape[1])},
           "training": {**tr.__dict__, "data": str(data), "sample_rate": sample_rate,
                        "train_frames": int(len(feats)), "seconds": round(time.time() - t0, 1), **provenance()},
           "valid": {"loss_equal_split": round(equal, 4), "loss": round(valid, 4),
                     "note": "residual-band error relative to the residual's energy, less a constant"}}
    update_card(model_dir, "highband", value=rec)
    return rec


__all__ = ["HighBandTraining", "train_highband"]
