"""`rtsep train prior --domain tf`: fit one source's time-frequency flow prior on its solo clips alone.

Resumable like the waveform priors (one checkpoint per source, replaced atomically); the card gets
`tf_priors.<source>` (config, training, validation nats per frame) and the weights go to
`tf_priors/<source>.pt`. Level augmentation: every excerpt gets a random gain, so the prior rates a
quiet bass as a bass; noise: a level sigma per excerpt, log-uniform over the prior's range.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..card import provenance, read_card, update_card
from ..datasets.folder import SourceSet
from ..errors import BundleError
from ..nn.tfprior import TFPrior, TFPriorConfig, stft_power
from .checkpoint import (extend_runs, load_checkpoint, load_weights, restore_rng, rng_state, save_checkpoint,
                         save_weights)
from .prior import sample_sigmas
from .progress import bar


@dataclass
class TFPriorTraining:
    steps: int = 3000
    batch: int = 32
    frames: int = 64
    lr: float = 1e-3
    seed: int = 0
    gain_min: float = 0.25
    gain_max: float = 2.0
    checkpoint_every: int = 100


def tf_prior_paths(model_dir: Path, source: str) -> tuple[Path, Path]:
    """(weights, resumable checkpoint) of one source's TF prior."""
    return Path(model_dir) / "tf_priors" / f"{source}.pt", Path(model_dir) / "ckpt" / f"tf_prior_{source}.pt"


def load_tf_prior(model_dir: Path, source: str) -> TFPrior:
    """A trained TF prior from MODEL_DIR, in eval mode."""
    entry = read_card(Path(model_dir)).get("tf_priors", {}).get(source)
    if entry is None:
        raise BundleError(f"{model_dir} has no TF prior for source {source!r} (rtsep train prior --domain tf)")
    prior = TFPrior(TFPriorConfig.from_dict(entry["config"]))
    load_weights(tf_prior_paths(Path(model_dir), source)[0], prior)
    return prior.eval()


def batch_features(prior: TFPrior, data: SourceSet, rng: np.random.Generator, tr: TFPriorTraining
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(noisy standardised features (B, L, D), sigma (B,)) of random gained excerpts."""
    cfg = prior.cfg
    x = data.excerpts(rng, tr.batch, tr.frames * cfg.hop, gain=(tr.gain_min, tr.gain_max))
    with torch.no_grad():
        u = prior.features(stft_power(torch.from_numpy(x), cfg.n_fft, cfg.hop))
    sig = torch.from_numpy(sample_sigmas(rng, tr.batch, cfg))
    noise = torch.from_numpy(rng.standard_normal(u.shape).astype(np.float32))
    return u + sig[:, None, None] * noise, sig


def standardisation(prior: TFPrior, data: SourceSet, rng: np.random.Generator, tr: TFPriorTraining) -> None:
    """Set the prior's per-band mean and spread from 64 gained excerpts of the training data."""
    cfg = prior.cfg
    x = data.excerpts(rng, 64, tr.frames * cfg.hop, gain=(tr.gain_min, tr.gain_max))
    with torch.no_grad():
        bands = torch.einsum("df,blf->bld", prior.pool, stft_power(torch.from_numpy(x), cfg.n_fft, cfg.hop))
        prior.set_standardisation(torch.log(bands + cfg.floor).reshape(-1, cfg.bands))


def train_tf_prior(source: str, data: Path, model_dir: Path, cfg: TFPriorConfig | None, tr: TFPriorTraining,
                   minutes: float | None = None, show: bool = True, init_from: Path | None = None) -> dict:
    """Train (or resume) the TF prior of `source`; returns the card entry written. `init_from`: a model
    directory whose TF prior for `source` starts this run (its config and standardisation kept; `cfg`
    may then be None): fine-tuning on a user's own recordings (`rtsep adapt`)."""
    model_dir = Path(model_dir)
    start = load_tf_prior(Path(init_from), source) if init_from is not None else None
    if start is not None:
        cfg = start.cfg
    card = read_card(model_dir)
    if card.get("sample_rate", cfg.sample_rate) != cfg.sample_rate:
        raise BundleError(f"{model_dir} holds models at {card['sample_rate']} Hz, not {cfg.sample_rate} Hz")
    weights, ckpt_path = tf_prior_paths(model_dir, source)
    train_set = SourceSet.load(data, source, cfg.sample_rate, "train")
    valid_set = SourceSet.load(data, source, cfg.sample_rate, "valid")
    ckpt = load_checkpoint(ckpt_path)
    torch.manual_seed(tr.seed)
    prior = TFPrior(cfg)
    rng = np.random.default_rng(tr.seed)
    step, elapsed, history, runs = 0, 0.0, [], []
    opt = torch.optim.Adam(prior.parameters(), lr=tr.lr)
    if ckpt is not None:
        if TFPriorConfig.from_dict(ckpt["config"]) != cfg:
            raise BundleError(f"checkpoint {ckpt_path} was made with another config; remove it to restart")
        prior.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        rng = restore_rng(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, elapsed, history, runs = ckpt["step"], ckpt["elapsed"], ckpt["history"], ckpt["data_runs"]
    elif start is not None:
        prior.load_state_dict(start.state_dict())
    else:
        standardisation(prior, train_set, rng, tr)
    runs = extend_runs(runs, {"data": str(data), "train_clips": len(train_set.clips)}, step)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, tr.steps) / tr.steps)), last_epoch=step - 1 if step else -1)
    deadline = time.monotonic() + minutes * 60 if minutes else None

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, config=cfg.to_dict(), model=prior.state_dict(), opt=opt.state_dict(),
                        rng=rng_state(rng), torch_rng=torch.get_rng_state(), step=step, elapsed=elapsed,
                        history=history, data_runs=runs)

    prior.train()
    t0, ema = time.monotonic(), None
    with bar(disable=not show) as progress:
        task = progress.add_task(f"tf prior {source}", total=tr.steps, completed=step, info="")
        while step < tr.steps and (deadline is None or time.monotonic() < deadline):
            u, sig = batch_features(prior, train_set, rng, tr)
            loss = -prior.log_prob(u, sig).mean() / cfg.bands
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            progress.update(task, advance=1, info=f"nll {ema:.3f} nats/band")
            if step % tr.checkpoint_every == 0 or step == tr.steps:
                elapsed += time.monotonic() - t0
                t0 = time.monotonic()
                history.append({"step": step, "nll_per_band": round(ema, 4)})
                checkpoint()
    elapsed += time.monotonic() - t0
    checkpoint()
    prior.eval()
    with torch.no_grad():
        vu, vs = batch_features(prior, valid_set, np.random.default_rng(tr.seed + 1), tr)
        valid = float(prior.log_prob(vu, vs).mean())
    save_weights(weights, prior)
    entry = {"config": cfg.to_dict(),
             "training": {**tr.__dict__, "steps_done": step, "seconds": round(elapsed, 1), "data": str(data),
                          "train_clips": len(train_set.clips), "valid_log_prob_per_frame": round(valid, 3),
                          "init_from": str(init_from) if init_from else None, "history": history[-20:],
                          "data_runs": runs, **provenance()}}
    update_card(model_dir, "tf_priors", source, value=entry)
    update_card(model_dir, "sample_rate", value=cfg.sample_rate)
    return entry
