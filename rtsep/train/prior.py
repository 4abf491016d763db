"""`rtsep train prior`: fit one noise-conditioned flow on one source's clips alone.

With `contrast > 0` the likelihood fit gains a margin term: a prior must rate its own (noised,
level-normalised) excerpt above the same excerpt with another source's excerpt leaked into it, by
`contrast_margin` nats per sample scaled by how much of the negative is the other source. It uses the
other sources' solo clips of the same data folder, never paired stems. Why: sessions 5-7 showed the
separation limited by how little the priors prefer their own source (margins of 0.04-0.13
nats/sample), not by their fit (README, "Session 8").
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..card import provenance, read_card, update_card
from ..datasets.folder import SourceSet, list_sources, resolve_split
from ..errors import BundleError
from ..nn.flow import FlowPrior, PriorConfig
from .checkpoint import (extend_runs, load_checkpoint, load_weights, restore_rng, rng_state, save_checkpoint,
                         save_weights)
from .progress import bar


@dataclass
class PriorTraining:
    """Run-time knobs of prior training (stored in the card next to the architecture)."""

    steps: int = 3000
    batch: int = 16
    segment: int = 8192
    lr: float = 1e-3
    seed: int = 0
    gain_min: float = 0.5
    gain_max: float = 1.0
    checkpoint_every: int = 100
    contrast: float = 0.0
    """Weight of the margin term against leaked-other-source negatives (0: likelihood alone)."""
    contrast_margin: float = 0.5
    """Margin in nats/sample for a negative that is all other source; a leak of relative amplitude b
    needs b / (1 + b) of it."""
    leak_min: float = 0.25
    leak_max: float = 4.0
    """Range of the leaked source's amplitude relative to the own excerpt (log-uniform): from a faint
    leak, the encoder's usual error, to mostly the other source."""


def prior_paths(model_dir: Path, source: str) -> tuple[Path, Path]:
    """(weights, resumable checkpoint) of one source's prior."""
    return model_dir / "priors" / f"{source}.pt", model_dir / "ckpt" / f"prior_{source}.pt"


def sample_sigmas(rng: np.random.Generator, n: int, cfg: PriorConfig) -> np.ndarray:
    """Log-uniform noise levels over the prior's range, so every sampler level is trained."""
    lo, hi = math.log(cfg.sigma_min), math.log(cfg.sigma_max)
    return np.exp(rng.uniform(lo, hi, size=n)).astype(np.float32)


def noisy_batch(rng: np.random.Generator, data: SourceSet, cfg: PriorConfig, tr: PriorTraining
                ) -> tuple[torch.Tensor, torch.Tensor]:
    return _noisy(rng, data.excerpts(rng, tr.batch, tr.segment, gain=(tr.gain_min, tr.gain_max)), cfg)


def _noisy(rng: np.random.Generator, clean: np.ndarray, cfg: PriorConfig, sig: np.ndarray | None = None
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """(clean + sigma * noise as (B, 1, T), sigma (B,)); sigma drawn over the prior's range unless given."""
    sig = sample_sigmas(rng, len(clean), cfg) if sig is None else sig
    x = clean + sig[:, None] * rng.standard_normal(clean.shape).astype(np.float32)
    return torch.from_numpy(x[:, None, :]), torch.from_numpy(sig)


def _rms(x: np.ndarray) -> np.ndarray:
    return np.sqrt((x.astype(np.float64) ** 2).mean(axis=-1, keepdims=True) + 1e-10).astype(np.float32)


def leak_negatives(rng: np.random.Generator, own: np.ndarray, others: list[SourceSet], tr: PriorTraining
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(negatives, other fraction b/(1+b)): each own excerpt plus another source's at relative
    amplitude b (log-uniform in [leak_min, leak_max]), brought back to the own excerpt's RMS so the
    level term cannot tell them apart: only the waveform's shape can."""
    n, t = own.shape
    other = np.stack([others[rng.integers(len(others))].excerpts(rng, 1, t, gain=(1.0, 1.0))[0] for _ in range(n)])
    b = np.exp(rng.uniform(math.log(tr.leak_min), math.log(tr.leak_max), size=(n, 1))).astype(np.float32)
    return leak(own, other, b), (b / (1 + b))[:, 0]


def leak(own: np.ndarray, other: np.ndarray, b: np.ndarray | float) -> np.ndarray:
    """own + b * other with both at unit RMS, rescaled to own's RMS (rows are excerpts)."""
    neg = own / _rms(own) + b * other / _rms(other)
    return (neg * (_rms(own) / _rms(neg))).astype(np.float32)


def contrast_loss(prior: FlowPrior, x: torch.Tensor, neg: torch.Tensor, sig: torch.Tensor, frac: np.ndarray,
                  margin: float) -> tuple[torch.Tensor, float]:
    """Hinge on the per-sample shape log-likelihood gap (what the separator optimises) between own
    and negative; also the mean gap, for the progress line."""
    t = x.shape[-1]
    gap = (prior.shape_log_prob_sum(x, sig) - prior.shape_log_prob_sum(neg, sig)) / t
    need = margin * torch.from_numpy(frac)
    return torch.relu(need - gap).mean(), float(gap.detach().mean())


def load_prior(model_dir: Path, source: str) -> FlowPrior:
    """A trained prior from MODEL_DIR, in eval mode."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    entry = card.get("priors", {}).get(source)
    if entry is None:
        have = ", ".join(card.get("priors", {})) or "none"
        raise BundleError(f"{model_dir} has no prior for source {source!r} (it has: {have})")
    prior = FlowPrior(PriorConfig.from_dict(entry["config"]))
    load_weights(prior_paths(model_dir, source)[0], prior)
    return prior.eval()


def train_prior(source: str, data: Path, model_dir: Path, cfg: PriorConfig, tr: PriorTraining,
                minutes: float | None = None, show: bool = True, init_from: Path | None = None) -> dict:
    """Train (or resume) the prior of `source`; returns the card entry written.

    `init_from`: a model directory whose prior for `source` starts a new run (its config, architecture
    and level included; fresh optimiser and schedule): fine-tuning, for instance with `contrast`."""
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    have_sr = card.get("sample_rate", cfg.sample_rate)
    if have_sr != cfg.sample_rate:
        raise BundleError(f"{model_dir} holds models at {have_sr} Hz, not {cfg.sample_rate} Hz")
    weights, ckpt_path = prior_paths(model_dir, source)
    train_set = SourceSet.load(data, source, cfg.sample_rate, "train")
    valid_set = SourceSet.load(data, source, cfg.sample_rate, "valid")
    ckpt = load_checkpoint(ckpt_path)
    start = None
    if init_from is not None:  # its config (level included) also when resuming the fine-tuning run
        start = load_prior(Path(init_from), source)
        cfg = start.cfg
    others = []
    if tr.contrast > 0:
        others = [SourceSet.load(data, s, cfg.sample_rate, "train")
                  for s in list_sources(resolve_split(Path(data), "train")) if s != source]
        if not others:
            raise BundleError(f"--contrast needs other sources' clips in {data}; it has only {source!r}")
    if not cfg.level and ckpt is not None:
        # The level is measured on the data the run started with; resuming on more (or other) data
        # keeps it, since the network has learned at that level.
        have = PriorConfig.from_dict(ckpt["config"])
        cfg = replace(cfg, level=have.level, level_spread=have.level_spread)
    elif not cfg.level:
        level, spread = train_set.level(tr.segment, (tr.gain_min, tr.gain_max))
        cfg = replace(cfg, level=level, level_spread=max(spread, 0.1))
    torch.manual_seed(tr.seed)
    prior = FlowPrior(cfg)
    opt = torch.optim.Adam(prior.parameters(), lr=tr.lr)
    if start is not None and ckpt is None:
        prior.load_state_dict(start.state_dict())
    rng = np.random.default_rng(tr.seed)
    step, elapsed, history = 0, 0.0, []
    data_runs = []
    was_init = str(init_from) if start is not None else None
    if ckpt is not None:
        # Normalised through PriorConfig so checkpoints from before a config field existed still resume.
        if PriorConfig.from_dict(ckpt["config"]).to_dict() != cfg.to_dict():
            raise BundleError(f"checkpoint {ckpt_path} was made with another config; remove it to restart")
        prior.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        rng = restore_rng(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
        was_init = ckpt.get("init_from")
        was = card.get("priors", {}).get(source, {}).get("training", {})  # checkpoints from before data_runs
        data_runs = ckpt.get("data_runs") or [{"data": was.get("data", "?"), "train_clips": was.get("train_clips"),
                                               "from_step": 0}]
    data_runs = extend_runs(data_runs, {"data": str(data), "train_clips": len(train_set.clips)}, step)
    sched = torch.optim.lr_scheduler.LambdaLR(opt,
                                              lambda s: 0.5 * (1 + math.cos(math.pi * min(s, tr.steps) / tr.steps)),
                                              last_epoch=step - 1 if step else -1)
    deadline = time.monotonic() + minutes * 60 if minutes else None

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, config=cfg.to_dict(), model=prior.state_dict(), opt=opt.state_dict(),
                        rng=rng_state(rng), torch_rng=torch.get_rng_state(), step=step, elapsed=elapsed,
                        history=history, data_runs=data_runs, init_from=was_init)

    prior.train()
    t0, ema, ema_nll = time.monotonic(), None, None
    with bar(disable=not show) as progress:
        task = progress.add_task(f"prior {source}", total=tr.steps, completed=step, info="")
        while step < tr.steps and (deadline is None or time.monotonic() < deadline):
            own = train_set.excerpts(rng, tr.batch, tr.segment, gain=(tr.gain_min, tr.gain_max))
            x, sig = _noisy(rng, own, cfg)
            nll = -prior.log_prob(x, sig).mean()
            loss, info = nll, f"nll {nll.item():.3f}"
            if tr.contrast > 0:
                neg, frac = leak_negatives(rng, own, others, tr)
                negative = _noisy(rng, neg, cfg, sig.numpy())[0]
                hinge, gap = contrast_loss(prior, x, negative, sig, frac, tr.contrast_margin)
                loss = nll + tr.contrast * hinge
                info += f" hinge {hinge.item():.3f} gap {gap:.3f}"
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            ema_nll = nll.item() if ema_nll is None else 0.98 * ema_nll + 0.02 * nll.item()
            progress.update(task, advance=1, info=f"loss {ema:.3f} ({info}) nats/sample")
            if step % tr.checkpoint_every == 0 or step == tr.steps:
                elapsed += time.monotonic() - t0
                t0 = time.monotonic()
                history.append({"step": step, "nll": round(ema_nll, 4)}
                               | ({"loss": round(ema, 4)} if tr.contrast > 0 else {}))
                checkpoint()
    elapsed += time.monotonic() - t0
    checkpoint()
    prior.eval()
    with torch.no_grad():
        vx, vs = noisy_batch(np.random.default_rng(tr.seed + 1), valid_set, cfg, tr)
        valid_nll = float(-prior.log_prob(vx, vs).mean())
    save_weights(weights, prior)
    entry = {
        "config": cfg.to_dict(),
        "training": {**tr.__dict__, "steps_done": step, "init_from": was_init, "seconds": round(elapsed, 1),
                     "data": str(data), "train_clips": len(train_set.clips), "valid_nll": round(valid_nll, 4),
                     "history": history[-20:], "data_runs": data_runs, **provenance()},
    }
    update_card(model_dir, "priors", source, value=entry)
    update_card(model_dir, "sample_rate", value=cfg.sample_rate)
    return entry
