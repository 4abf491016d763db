"""`rtsep train encoder`: fit q_phi(s_k | m) for all sources of a model directory.

The default objective is the seed's (DESIGN.md §1):
    sum_k KL[q_phi_k(s_k | m) || p_k(s_k)] + ||mean_k s_hat_k - m||^2 / (2 gamma^2)
with s_hat ~ q by reparameterisation and the KL estimated by Monte Carlo. The priors are frozen
(no parameter gradients) but log p_k(s_hat_k) stays differentiable in s_hat, so the encoder
learns from them; the thesis code detached it and so trained on the mixture term alone.
Training mixtures are sums of independent random excerpts of the source-only sets: no paired
stems are used by the seed objective. `supervised` (labelled as such everywhere) regresses the
excerpts that were mixed, as a comparison. `distill` regresses the priors' own separations of
stem-free mixtures (`rtsep data distill`): the same loss as `supervised`, but its targets are the
mask chain's estimates, so no stems reach it; its training mixtures remix those estimates.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soxr
import torch

from ..bands import BandPrior, band_edges
from ..bundle import priors_fingerprint
from ..card import provenance, read_card, update_card
from ..datasets.folder import SourceSet
from ..distill import read_distill_manifest
from ..errors import BundleError, DataError
from ..nn.encoder import Encoder, EncoderConfig
from .checkpoint import extend_runs, load_checkpoint, load_weights, restore_rng, rng_state, save_checkpoint, save_weights
from .prior import load_prior
from .progress import bar

LOG_2PI = math.log(2 * math.pi)
OBJECTIVES = ("seed", "supervised", "distill")


@dataclass
class EncoderTraining:
    objective: str = "seed"
    steps: int = 2000
    batch: int = 8
    segment: int = 16384
    lr: float = 1e-3
    seed: int = 0
    gain_min: float = 0.5
    gain_max: float = 1.0
    kl_sigma: float = 0.01
    gamma: float = 0.01
    kl_sigma_start: float | None = 0.3
    anneal_fraction: float = 0.7
    active_start: float = 1.0
    """Chance that a source plays in a training mixture at step 0, annealed to 1 (always at least one).

    Mixtures of random subsets are still mixtures of source-only excerpts (no stems), but a
    mixture with one source teaches assignment from the priors' discrimination alone: its
    signal is likely only under its own prior."""
    pitch_shift: float = 0.0
    """Each excerpt pitch-shifted by a random amount in +-this many semitones (resampled with soxr; the
    tempo moves with it) before mixing. A distill set holds few labelled mixtures (the chain is slow):
    on toy4, 48 of them fit to +13..+17 dB and held out gave -9.8..+4.8; a +-12 semitone shift there
    underfit instead and was worse held out after the chain (README, Session 12)."""
    band_weight: float = 0.0
    """Weight per sample of the band-shape prior (seed objective; 0: off): a diagonal Gaussian on each
    estimate's log share of energy per band (`band_edges`), fitted to the source's own
    solo excerpts, like the level prior beside each flow. The flows rate an estimate stripped of
    its broadband content above the truth, and the seed objective dumps it all into one source
    (README, Session 18)."""
    bands_per_octave: int = 1
    """Resolution of the band-shape prior: 3 per octave lost the bass on music4 (README, Session 18)."""
    noise_floor: float = 1e-3
    """Smallest std of q (seed objective): an estimate is never exactly silent, so a level-normalised
    prior sees a silent estimate as loud white noise (see `FlowPrior.shape_log_prob_sum`)."""
    loss: str = "mse"
    """Supervised / distill regression: "mse" on the waveforms (the sessions 1-19 encoders), or "sdr", the
    negative SNR per source with a soft threshold at 30 dB below the mixture (MixIT's), which weighs
    quiet sources like loud ones, as SI-SDR does, and stays finite when a source is silent."""
    coherent: float = 0.0
    """Supervised: the share of training mixtures made of the SAME clip of every source at the same offset
    (the song's own stems, aligned in time and harmony), the rest of independent excerpts. Needs a set
    whose sources hold the same number of clips (a generated set)."""
    valid_every: int = 0
    """Every this many steps, SI-SDRi per source on fixed coherent mixtures of the data's valid split
    (stored in the history: the card's validation curve); 0: off."""
    checkpoint_every: int = 50

    def active_at(self, step: int) -> float:
        frac = min(1.0, step / max(1, self.anneal_fraction * self.steps))
        return self.active_start + (1.0 - self.active_start) * frac

    def sigma_at(self, step: int) -> tuple[float, float]:
        """(prior sigma of the KL term, gamma of the mixture term) at a training step.

        Annealed geometrically from kl_sigma_start down to kl_sigma over the first part of
        training: a prior smoothed at a large sigma gives gradients from far away (a mixture is
        far from any clean source), a sharp one only nearby; gamma follows sigma as in BASIS.
        """
        if not self.kl_sigma_start:
            return self.kl_sigma, self.gamma
        frac = min(1.0, step / max(1, self.anneal_fraction * self.steps))
        sigma = self.kl_sigma_start * (self.kl_sigma / self.kl_sigma_start) ** frac
        return sigma, max(self.gamma, sigma)


def encoder_paths(model_dir: Path) -> tuple[Path, Path]:
    return model_dir / "encoder.pt", model_dir / "ckpt" / "encoder.pt"


def load_encoder(model_dir: Path) -> Encoder:
    card = read_card(model_dir)
    if "encoder" not in card:
        raise BundleError(f"{model_dir} has no trained encoder (train one with `rtsep train encoder`)")
    enc = Encoder(EncoderConfig.from_dict(card["encoder"]["config"]))
    load_weights(encoder_paths(model_dir)[0], enc)
    return enc.eval()


def coherent_excerpts(rng: np.random.Generator, sets: list[SourceSet], batch: int, length: int,
                      gain: tuple[float, float]) -> np.ndarray:
    """(batch, N, length): one clip index and one offset for all sources (a song's own stems), a random
    gain per source."""
    out = np.zeros((batch, len(sets), length), dtype=np.float32)
    for b in range(batch):
        i = int(rng.integers(len(sets[0].clips)))
        n = min(len(s.clips[i]) for s in sets)
        start = int(rng.integers(n - length + 1)) if n > length else 0
        for k, s in enumerate(sets):
            x = s.clips[i][start : start + length]
            out[b, k, : x.size] = x * rng.uniform(*gain)
    return out


def check_coherent(sets: list[SourceSet]) -> None:
    counts = {s.source: len(s.clips) for s in sets}
    if len(set(counts.values())) != 1:
        raise DataError(f"--coherent needs the same number of clips per source (a generated set); got {counts}")


def mixture_batch(rng: np.random.Generator, sets: list[SourceSet], tr: EncoderTraining, active: float = 1.0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mix (B,1,T), sources (B,N,T)) from independent excerpts (or, with `tr.coherent`, partly from the
    same clip of every source), mixed by mean; each source plays with probability `active` (at least one
    per mixture)."""
    if tr.pitch_shift:
        src = np.stack([np.stack([shifted_excerpt(s, rng, tr) for _ in range(tr.batch)]) for s in sets], axis=1)
    else:
        src = np.stack([s.excerpts(rng, tr.batch, tr.segment, gain=(tr.gain_min, tr.gain_max)) for s in sets], axis=1)
    if tr.coherent:
        same = rng.random(tr.batch) < tr.coherent
        if same.any():
            src[same] = coherent_excerpts(rng, sets, int(same.sum()), tr.segment, (tr.gain_min, tr.gain_max))
    if active < 1.0:
        on = rng.random((tr.batch, len(sets))) < active
        on[np.arange(tr.batch), rng.integers(len(sets), size=tr.batch)] = True
        src *= on[:, :, None]
    src_t = torch.from_numpy(src)
    return src_t.mean(dim=1, keepdim=True), src_t


def shifted_excerpt(source: SourceSet, rng: np.random.Generator, tr: EncoderTraining) -> np.ndarray:
    """One excerpt (segment,) pitch-shifted by 2^(u/12), u uniform in +-pitch_shift: ratio x segment
    samples resampled to segment (soxr HQ, band-limited, so shifting up does not alias)."""
    ratio = 2.0 ** (rng.uniform(-tr.pitch_shift, tr.pitch_shift) / 12)
    n = int(np.ceil(tr.segment * ratio)) + 1
    x = source.excerpts(rng, 1, n, gain=(tr.gain_min, tr.gain_max))[0]
    y = soxr.resample(x, ratio, 1.0, quality="HQ")[: tr.segment]
    return np.pad(y, (0, tr.segment - len(y))).astype(np.float32)


def seed_kl(priors: list, mean: torch.Tensor, log_scale: torch.Tensor, sigma: float, floor: float = 0.0,
            eps: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Monte Carlo KL[q_k || p_k] per source in nats per sample, (N,), averaged over the batch; also
    log p_k per source (N,) and the sample s_hat (B, N, T).

    q_k = N(mean, scale^2) with scale = sqrt(exp(2 log_scale) + floor^2); log p_k is the prior's
    `shape_log_prob_sum` (level-normalised when the prior has a reference level). `eps`: the
    standard-normal draw (default: a fresh one)."""
    eps = torch.randn_like(mean) if eps is None else eps
    log_scale = 0.5 * torch.log(torch.exp(2 * log_scale) + floor**2) if floor else log_scale
    s_hat = mean + torch.exp(log_scale) * eps
    t = mean.shape[-1]
    log_q = (-0.5 * (eps**2 + LOG_2PI) - log_scale).sum(dim=-1) / t  # (B, N)
    log_p = torch.stack([p.shape_log_prob_sum(s_hat[:, k : k + 1], sigma) / t for k, p in enumerate(priors)], dim=1)
    return (log_q - log_p).mean(dim=0), log_p.mean(dim=0), s_hat


def seed_loss(enc: Encoder, priors: list, mix: torch.Tensor, sigma: float, gamma: float, floor: float = 0.0,
              bands: BandPrior | None = None, band_weight: float = 0.0) -> tuple[torch.Tensor, dict]:
    """Seed objective in nats per sample: KL terms per source (`seed_kl`) plus the mixture term, plus
    `band_weight` x the band-shape prior's negative log-density when `bands` is given."""
    mean, log_scale = enc(mix)
    kl, _, s_hat = seed_kl(priors, mean, log_scale, sigma, floor)
    mix_term = ((s_hat.mean(dim=1, keepdim=True) - mix) ** 2).sum(dim=-1).mean() / (2 * gamma**2 * mix.shape[-1])
    loss = kl.sum() + mix_term
    parts = {"kl": kl.sum().item(), "mix": mix_term.item(), "sigma": sigma}
    if bands is not None and band_weight:
        band = bands.nll(s_hat).mean(dim=0).sum()
        loss = loss + band_weight * band
        parts["band"] = band.item()
    return loss, parts


def snr_loss(mean: torch.Tensor, sources: torch.Tensor, mix: torch.Tensor, tau: float = 1e-3) -> torch.Tensor:
    """Mean over sources and batch of -10 log10(|s|^2 / (|s - mean|^2 + tau |m|^2)) in dB: MixIT's
    soft-thresholded SNR (30 dB cap), finite for silent sources. (B, N, T), (B, N, T), (B, 1, T)."""
    ref = (sources**2).sum(-1)
    err = ((sources - mean) ** 2).sum(-1) + tau * (mix**2).sum(-1) + 1e-8
    return (10 * torch.log10(err) - 10 * torch.log10(ref + 1e-8)).mean()


def supervised_loss(enc: Encoder, mix: torch.Tensor, sources: torch.Tensor, loss: str = "mse"
                    ) -> tuple[torch.Tensor, dict]:
    """Comparison only: MSE (or `snr_loss`) of the means plus a Gaussian NLL that teaches the scales."""
    mean, log_scale = enc(mix)
    mse = ((mean - sources) ** 2).mean()
    nll = (0.5 * ((sources - mean.detach()) / torch.exp(log_scale)) ** 2 + log_scale).mean()
    if loss == "sdr":
        neg_snr = snr_loss(mean, sources, mix)
        return neg_snr + 0.01 * nll, {"neg_snr": neg_snr.item(), "mse": mse.item()}
    return 100 * mse + 0.01 * nll, {"mse": mse.item()}


def valid_mixtures(data: Path, sources: list[str], sr: int, count: int = 16, seconds: float = 4.0
                   ) -> tuple[torch.Tensor, np.ndarray] | None:
    """Fixed coherent (mix (C,1,T), sources (C,N,T)) from the valid split, or None when there is none."""
    try:
        sets = [SourceSet.load(data, s, sr, "valid") for s in sources]
        check_coherent(sets)
    except DataError:
        return None
    src = coherent_excerpts(np.random.default_rng(99), sets, count, int(seconds * sr), (0.5, 1.0))
    src = src[:, :, : src.shape[-1] // 256 * 256]
    return torch.from_numpy(src.mean(axis=1, keepdims=True)), src


def validate(enc: Encoder, valid: tuple[torch.Tensor, np.ndarray]) -> dict[str, float]:
    """Mean SI-SDRi per source on the fixed valid mixtures (skipping silent references)."""
    from ..metrics import si_sdr_improvement

    mix, src = valid
    was = enc.training
    enc.eval()
    with torch.no_grad():
        est = enc(mix)[0].numpy()
    enc.train(was)
    gains = [[] for _ in enc.cfg.sources]
    for c in range(src.shape[0]):
        imp = si_sdr_improvement(src[c], est[c], mix[c, 0].numpy())
        for k in range(src.shape[1]):
            if np.abs(src[c, k]).max() > 1e-3:
                gains[k].append(float(imp[k]))
    return {f"valid_{s}": round(float(np.mean(g)), 2) for s, g in zip(enc.cfg.sources, gains) if g}


def check_objective_data(data: Path, objective: str, sources: list[str], sample_rate: int) -> dict | None:
    """The `rtsep data distill` manifest when `objective` is distill; refuses data that would mislabel
    the objective (chain estimates called stems, or stems called chain estimates)."""
    m = read_distill_manifest(data)
    if objective == "distill":
        if m is None:
            raise DataError(f"{data} is not a `rtsep data distill` set: --objective distill regresses the priors' "
                            "chain estimates, made by that command")
        if m["sources"] != sources or m["sample_rate"] != sample_rate:
            raise DataError(f"{data} holds {m['sources']} at {m['sample_rate']} Hz, not this model's {sources} at "
                            f"{sample_rate} Hz")
    elif m is not None:
        raise DataError(f"{data} holds chain estimates, not source recordings: train on it with --objective distill")
    return m


def train_encoder(model_dir: Path, data: Path, cfg: EncoderConfig | None, tr: EncoderTraining,
                  minutes: float | None = None, show: bool = True, init_from: Path | None = None) -> dict:
    """Train (or resume) the encoder of MODEL_DIR; returns the card entry written.

    `init_from`: a model directory whose encoder starts a new run (its config; fresh optimiser and
    schedule), e.g. the seed objective continued from a distilled encoder: does the seed objective
    keep the basin the chain found, or leave it?"""
    if tr.objective not in OBJECTIVES:
        raise DataError(f"unknown objective {tr.objective!r} (choose from {', '.join(OBJECTIVES)})")
    if tr.band_weight and tr.objective != "seed":
        raise DataError("--band-weight is a term of the seed objective; it does nothing with --objective "
                        f"{tr.objective}")
    model_dir = Path(model_dir)
    card = read_card(model_dir)
    sources = list(card.get("priors", {}))
    if not sources:
        raise BundleError(f"{model_dir} holds no priors: train them first with `rtsep train prior`")
    sr = card["sample_rate"]
    start = load_encoder(Path(init_from)) if init_from is not None else None
    cfg = start.cfg if start is not None else cfg or EncoderConfig(sources=sources, sample_rate=sr)
    if list(cfg.sources) != sources or cfg.sample_rate != sr:
        raise BundleError(f"encoder config does not match the priors of {model_dir} ({sources} at {sr} Hz)")
    if tr.segment % cfg.stride:
        raise DataError(f"segment must be a multiple of {cfg.stride}")
    if tr.loss not in ("mse", "sdr"):
        raise DataError(f"unknown loss {tr.loss!r} (mse or sdr)")
    if (tr.coherent or tr.loss != "mse") and tr.objective != "supervised":
        raise DataError("--coherent and --loss sdr regress stems: they need --objective supervised")
    targets = check_objective_data(data, tr.objective, sources, sr)
    sets = [SourceSet.load(data, s, sr, "train") for s in sources]
    if tr.coherent:
        check_coherent(sets)
    valid = valid_mixtures(Path(data), sources, sr) if tr.valid_every else None
    priors = [load_prior(model_dir, s).requires_grad_(False) for s in sources]
    weights, ckpt_path = encoder_paths(model_dir)
    torch.manual_seed(tr.seed)
    enc = Encoder(cfg)
    if cfg.front == "stft":
        enc.stft.fft = True  # same transform as the exported convolutions, far cheaper to train
    opt = torch.optim.Adam(enc.parameters(), lr=tr.lr)
    rng = np.random.default_rng(tr.seed)
    step, elapsed, history = 0, 0.0, []
    ckpt = load_checkpoint(ckpt_path)
    was_init = str(init_from) if start is not None else None
    if start is not None and ckpt is None:
        enc.load_state_dict(start.state_dict())
    if ckpt is not None:
        if ckpt["config"] != cfg.to_dict() or ckpt["training"]["objective"] != tr.objective:
            raise BundleError(f"checkpoint {ckpt_path} was made with another config; remove it to restart")
        enc.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        rng = restore_rng(ckpt["rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        step, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
        was_init = ckpt.get("init_from")
    # Resuming on other data or under retrained priors (the priors are the seed objective's target) is
    # allowed; the card lists each with the step it joined at.
    was = card.get("encoder", {}).get("training", {}).get("data", "?")  # checkpoints from before runs existed
    before = (ckpt.get("runs") or [{"data": was, "priors": "?", "from_step": 0}]) if ckpt else None
    runs = extend_runs(before, {"data": str(data), "priors": priors_fingerprint(model_dir, sources)}, step)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, tr.steps) / tr.steps)),
                                              last_epoch=step - 1 if step else -1)
    deadline = time.monotonic() + minutes * 60 if minutes else None

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, config=cfg.to_dict(), training=asdict(tr), model=enc.state_dict(),
                        opt=opt.state_dict(), rng=rng_state(rng), torch_rng=torch.get_rng_state(), step=step,
                        elapsed=elapsed, history=history, runs=runs, init_from=was_init)

    # fitted from a fixed draw, so a resumed run rebuilds the same statistics
    bands = (BandPrior.fit(sets, np.random.default_rng(tr.seed + 1), tr.segment, sr, floor=tr.noise_floor,
                           edges=band_edges(tr.bands_per_octave)) if tr.band_weight else None)
    enc.train()
    t0, ema = time.monotonic(), None
    with bar(disable=not show) as progress:
        task = progress.add_task(f"encoder ({tr.objective})", total=tr.steps, completed=step, info="")
        while step < tr.steps and (deadline is None or time.monotonic() < deadline):
            mix, src = mixture_batch(rng, sets, tr, tr.active_at(step))
            if tr.objective == "seed":
                loss, parts = seed_loss(enc, priors, mix, *tr.sigma_at(step), floor=tr.noise_floor, bands=bands,
                                        band_weight=tr.band_weight)
            else:
                loss, parts = supervised_loss(enc, mix, src, tr.loss)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(enc.parameters(), 5.0)
            opt.step()
            sched.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            progress.update(task, advance=1, info=f"loss {ema:.3f} " + " ".join(f"{k} {v:.3f}" for k, v in parts.items()))
            if step % tr.checkpoint_every == 0 or step == tr.steps:
                elapsed += time.monotonic() - t0
                t0 = time.monotonic()
                history.append({"step": step, "loss": round(ema, 4), **{k: round(v, 4) for k, v in parts.items()}})
                if valid is not None and (step % tr.valid_every == 0 or step == tr.steps):
                    history[-1].update(validate(enc, valid))
                checkpoint()
    elapsed += time.monotonic() - t0
    checkpoint()
    save_weights(weights, enc)
    entry = {"config": cfg.to_dict(),
             "training": {**asdict(tr), "steps_done": step, "seconds": round(elapsed, 1), "data": str(data),
                          "init_from": was_init, "history": history[-20:], "runs": runs, **provenance()}}
    curve = [{k: v for k, v in h.items() if k == "step" or k.startswith("valid_")} for h in history
             if any(k.startswith("valid_") for k in h)]
    if curve:
        entry["training"]["valid_curve"] = curve
    if bands is not None:  # the chain can climb the same band-shape prior (`LangevinConfig.band_weight`)
        entry["band_prior"] = bands.to_dict()
    if targets:  # what labelled the distillation set: which priors, which chain, no stems
        entry["training"]["targets"] = {k: targets[k] for k in ("model", "priors", "data", "stems_used", "mixtures", "chain")}
    update_card(model_dir, "encoder", value=entry)
    return entry
