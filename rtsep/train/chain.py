"""`rtsep train chain`: learn the TF chain's levels, step sizes and prior weights through its K unrolled steps.

A warm-started refiner helps when its few steps are trained as a whole (issue 25): here the K steps
of `rtsep.langevin.tfchain` run in torch, differentiably (the priors' gradient by double backward),
from the frozen encoder's estimate on training mixtures, and the negative SI-SDR of the result trains
2K + N numbers: each step's level sigma_i and size lr_i, and each source's prior weight w_k (with
`per_source`, the default, a size lr_ik per step and source: K + KN + N numbers). The
encoder and the priors stay as they are. What uses stems: only these numbers (the song's own
stems of the training split, mixed by mean). The steps start small, so K steps begin near the
identity and move away from it only as far as the training mixtures reward.

`encoder_lr` > 0 fine-tunes the encoder through the same K steps (the loss is then the chain's output
alone), so it learns to hand the chain what the priors can finish; K = 0 with it is the equal-steps
control, the encoder fine-tuned on the same mixtures and loss without a chain. The stems then also
train the encoder.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..bundle import Bundle
from ..card import provenance, update_card
from ..datasets.folder import SourceSet
from ..errors import BundleError
from ..langevin import LangevinConfig
from ..metrics import si_sdr_improvement
from ..nn.encoder import STFT
from ..nn.tfprior import StackedTFPriors, TFPrior
from .checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint, save_weights
from .encoder import check_coherent, coherent_excerpts
from .progress import bar


@dataclass
class ChainTraining:
    steps: int = 200
    chain_steps: int = 4
    batch: int = 4
    seconds: float = 2.0
    lr: float = 0.03
    seed: int = 0
    gain_min: float = 0.5
    gain_max: float = 1.0
    valid_clips: int = 12
    checkpoint_every: int = 25
    per_source: bool = True
    encoder_lr: float = 0.0
    """Adam step size of the encoder fine-tuned through the chain (0: the encoder stays frozen)."""


class Chain(torch.nn.Module):
    """The TF chain with learnable levels, steps and weights (what `tf_chain` runs in numpy)."""

    def __init__(self, priors: list[TFPrior], k: int, n_fft: int, hop: int, per_source: bool = False) -> None:
        super().__init__()
        self.stacked = StackedTFPriors(priors)  # frozen constants, the graph tf_grad.onnx traces
        cfg = priors[0].cfg
        self.log_sigma = torch.nn.Parameter(torch.from_numpy(np.geomspace(0.2, 0.05, k)).float().log())
        self.raw_lr = torch.nn.Parameter(torch.full((k, len(priors) if per_source else 1), math.log(math.expm1(0.05))))
        self.log_weight = torch.nn.Parameter(torch.zeros(len(priors)))
        self.sigma_range = (cfg.sigma_min, cfg.sigma_max)
        self.stft = STFT(n_fft, hop)
        self.stft.fft = True

    def schedule(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        lo, hi = (math.log(s) for s in self.sigma_range)
        return (self.log_sigma.clamp(lo, hi).exp(), torch.nn.functional.softplus(self.raw_lr),
                self.log_weight.exp())

    def spectra(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T) -> complex (B, L, F) in the encoder's (and `NumpySTFT`'s) frame."""
        spec = self.stft(x[:, None])
        f = self.stft.bins
        return torch.complex(spec[:, :f], spec[:, f:]).transpose(1, 2)

    def forward(self, x0: torch.Tensor, mix: torch.Tensor) -> torch.Tensor:
        """x0 (B, N, T) warm start, mix (B, T) -> refined (B, N, T)."""
        b, n, t = x0.shape
        spec = self.spectra(mix)
        share = self.spectra(x0.reshape(b * n, t)).abs().reshape(b, n, *spec.shape[1:]).double()
        theta = torch.log(share / (share.sum(dim=1, keepdim=True) + 1e-12) + 1e-3).float()
        mix_power = spec.real**2 + spec.imag**2
        sigmas, lrs, weight = self.schedule()
        if not theta.requires_grad:
            theta = theta.requires_grad_()
        if not len(sigmas):  # K = 0: the encoder alone (the fine-tune's control)
            return x0
        for sigma, lr in zip(sigmas, lrs):
            lp = self.stacked(theta, mix_power, sigma.expand(b), weight).sum()
            (g,) = torch.autograd.grad(lp, theta, create_graph=True)
            g = g / (g.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt() + 1e-12)
            theta = theta + lr[None, :, None, None] * g
        masks = torch.softmax(theta, dim=1) * n
        masked = masks * spec[:, None]
        flat = masked.transpose(2, 3).reshape(b * n, spec.shape[2], -1)
        return self.stft.inverse(torch.cat([flat.real, flat.imag], dim=1)).reshape(b, n, t)


def neg_si_sdr(est: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """Mean negative SI-SDR (dB) over items and audible sources."""
    alpha = (est * ref).sum(-1, keepdim=True) / (ref.pow(2).sum(-1, keepdim=True) + 1e-8)
    target = alpha * ref
    sdr = 10 * torch.log10(target.pow(2).sum(-1) / ((est - target).pow(2).sum(-1) + 1e-8) + 1e-8)
    audible = ref.abs().amax(-1) > 1e-3
    return -(sdr * audible).sum() / audible.sum().clamp_min(1)


def improvements(est: np.ndarray, src: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """(C, N) SI-SDRi, NaN where the reference is silent."""
    out = np.full(src.shape[:2], np.nan)
    for c in range(src.shape[0]):
        imp = si_sdr_improvement(src[c], est[c], mix[c])
        audible = np.abs(src[c]).max(axis=-1) > 1e-3
        out[c, audible] = imp[audible]
    return out


def independent_excerpts(rng: np.random.Generator, sets: list[SourceSet | None], batch: int, length: int,
                         gain: tuple[float, float]) -> np.ndarray:
    """(batch, N, length): an independent random excerpt of each source's solo clips (zeros where None)."""
    out = np.zeros((batch, len(sets), length), dtype=np.float32)
    for k, s in enumerate(sets):
        if s is not None:
            out[:, k] = s.excerpts(rng, batch, length, gain=gain)
    return out


def train_chain(model: Path | str, data: Path | None, tr: ChainTraining, show: bool = True,
                minutes: float | None = None, solo: list[SourceSet | None] | None = None) -> dict:
    """Learn MODEL's TF chain (K = tr.chain_steps) on coherent mixtures of DATA's train split; write the
    card's langevin section (prior "tf", mask space, the learned schedule) and a "chain" record with the
    valid-split SI-SDRi before and after. Returns that record. `solo` (one set per source, None where a
    source has none) instead: mixtures of independent excerpts of those solo clips (`rtsep adapt`: a
    user's recordings, no song's stems), validated on other excerpts of them."""
    bundle = Bundle.load(model, verify=False)
    if not bundle.has_encoder or not bundle.has_tf_priors:
        raise BundleError(f"{bundle.path}: `rtsep train chain` needs an encoder and TF priors")
    if tr.chain_steps < 1 and not tr.encoder_lr:
        raise BundleError("a chain of 0 steps has nothing to learn: give --encoder-lr for the fine-tune's control")
    torch.manual_seed(tr.seed)
    encoder = bundle.torch_encoder()
    encoder.requires_grad_(False)
    frozen = copy.deepcopy(encoder)  # the baseline the valid split compares against
    tune = tr.encoder_lr > 0
    if tune:
        encoder.requires_grad_(True)
        if getattr(encoder, "stft", None) is not None:
            encoder.stft.fft = True  # the exported convolutions' transform, cheaper to train
    priors = bundle.torch_tf_priors()
    n_fft, hop = priors[0].cfg.n_fft, priors[0].cfg.hop
    chain = Chain(priors, tr.chain_steps, n_fft, hop, tr.per_source)
    sr, sources = bundle.sample_rate, list(bundle.sources)
    if solo is None:
        train_sets = [SourceSet.load(data, s, sr, "train") for s in sources]
        valid_sets = [SourceSet.load(data, s, sr, "valid") for s in sources]
        check_coherent(train_sets)
        check_coherent(valid_sets)
        draw = coherent_excerpts
    else:
        train_sets = valid_sets = solo
        draw = independent_excerpts
    length = int(tr.seconds * sr) // hop * hop
    groups = [{"params": [chain.log_sigma, chain.raw_lr, chain.log_weight], "lr": tr.lr}]
    if tune:
        groups.append({"params": list(encoder.parameters()), "lr": tr.encoder_lr})
    opt = torch.optim.Adam(groups)
    rng = np.random.default_rng(tr.seed)
    ckpt_path = bundle.path / "ckpt" / "chain.pt"
    ckpt = load_checkpoint(ckpt_path)
    step, elapsed, history = 0, 0.0, []
    if ckpt is not None:
        if (ckpt["chain_steps"] != tr.chain_steps or ckpt["chain"]["raw_lr"].shape != chain.raw_lr.shape
                or ("encoder" in ckpt) != tune):
            raise BundleError(f"checkpoint {ckpt_path} is for another chain (K={ckpt['chain_steps']}, step sizes "
                              f"{tuple(ckpt['chain']['raw_lr'].shape)}, encoder "
                              f"{'tuned' if 'encoder' in ckpt else 'frozen'}); remove it to restart")
        chain.load_state_dict(ckpt["chain"], strict=False)
        if tune:
            encoder.load_state_dict(ckpt["encoder"])
        opt.load_state_dict(ckpt["opt"])
        rng = restore_rng(ckpt["rng"])
        step, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]

    def checkpoint() -> None:
        state = {k: v for k, v in chain.state_dict().items() if k in ("log_sigma", "raw_lr", "log_weight")}
        extra = {"encoder": encoder.state_dict()} if tune else {}
        save_checkpoint(ckpt_path, chain=state, opt=opt.state_dict(), rng=rng_state(rng), step=step, elapsed=elapsed,
                        history=history, chain_steps=tr.chain_steps, **extra)

    def encode(mix: torch.Tensor, net: torch.nn.Module = encoder) -> torch.Tensor:
        with torch.no_grad():
            return net(mix[:, None])[0]

    deadline = time.monotonic() + minutes * 60 if minutes else None
    t0, ema = time.monotonic(), None
    with bar(disable=not show) as progress:
        task = progress.add_task("chain", total=tr.steps, completed=step, info="")
        while step < tr.steps and (deadline is None or time.monotonic() < deadline):
            src = torch.from_numpy(draw(rng, train_sets, tr.batch, length, (tr.gain_min, tr.gain_max)))
            mix = src.mean(dim=1)
            x0 = encoder(mix[:, None])[0] if tune else encode(mix)
            loss = neg_si_sdr(chain(x0, mix), src) - neg_si_sdr(x0, src).detach()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tune:
                torch.nn.utils.clip_grad_norm_(encoder.parameters(), 5.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
            progress.update(task, advance=1, info=(f"neg SI-SDR change {ema:+.2f} dB" if tune else
                                                   f"gain over the encoder {-ema:+.2f} dB"))
            if step % tr.checkpoint_every == 0 or step == tr.steps:
                elapsed += time.monotonic() - t0
                t0 = time.monotonic()
                history.append({"step": step, "gain_db": round(-ema, 3)})
                checkpoint()
    elapsed += time.monotonic() - t0
    checkpoint()
    sigmas, lrs, weight = (v.detach().double().numpy() for v in chain.schedule())
    lrs = lrs if tr.per_source else lrs[:, 0]
    # valid split: fixed coherent 4 s mixtures, encoder alone against encoder + this chain
    vsrc = draw(np.random.default_rng(99), valid_sets, tr.valid_clips, 4 * sr // hop * hop, (0.5, 1.0))
    vmix = vsrc.mean(axis=1)
    encoder.eval()
    x0 = encode(torch.from_numpy(vmix))
    refined = torch.cat([chain(x0[i : i + 1], torch.from_numpy(vmix[i : i + 1])).detach()
                         for i in range(len(vmix))]).numpy()
    base = encode(torch.from_numpy(vmix), frozen).numpy()
    before, after = improvements(base, vsrc, vmix), improvements(refined, vsrc, vmix)
    tuned = improvements(x0.numpy(), vsrc, vmix)
    ok = [k for k in range(len(sources)) if not np.isnan(before[:, k]).all()]
    before, after, tuned, sources = before[:, ok], after[:, ok], tuned[:, ok], [sources[k] for k in ok]
    chain_numbers = "K + KN + N" if tr.per_source else "2K + N"
    if tune:
        if getattr(encoder, "stft", None) is not None:
            encoder.stft.fft = False
        save_weights(bundle.path / "encoder.pt", encoder)
    training = {**tr.__dict__, "steps_done": step, "elapsed_seconds": round(elapsed, 1),
                "data": str(data) if solo is None else "solo excerpts (rtsep adapt)",
                "history": history[-20:], **provenance()}
    record = {"chain_steps": tr.chain_steps, "training": training,
              "valid_si_sdri": {"encoder": dict(zip(sources, np.round(np.nanmean(before, 0), 2).tolist())),
                                "chain": dict(zip(sources, np.round(np.nanmean(after, 0), 2).tolist()))},
              "learned": {"tf_sigmas": sigmas.round(5).tolist(), "tf_lrs": lrs.round(5).tolist(),
                          "tf_weights": weight.round(5).tolist()},
              "stems_used_for": (f"the {chain_numbers} chain numbers only (encoder and priors frozen)"
                                 if solo is None and not tune else
                                 f"the {chain_numbers} chain numbers and the encoder's fine-tune (priors frozen)"
                                 if solo is None else
                                 f"none: mixtures of the user's solo excerpts train the {chain_numbers} chain numbers"
                                 + (" and fine-tune the encoder" if tune else ""))}
    if tune:
        record["valid_si_sdri"]["encoder_tuned"] = dict(zip(sources, np.round(np.nanmean(tuned, 0), 2).tolist()))
        entry = dict(bundle.card["encoder"])
        entry["chain_fine_tune"] = {"chain_steps": tr.chain_steps, "steps": step, "encoder_lr": tr.encoder_lr,
                                    "batch": tr.batch, "seconds": tr.seconds, "elapsed_seconds": round(elapsed, 1),
                                    "data": training["data"]}
        update_card(bundle.path, "encoder", value=entry)
    lcfg = replace(LangevinConfig.from_card(bundle.card, bundle.path), steps=tr.chain_steps, space="mask", prior="tf",
                   temperature=0.0, warm_start=1.0, n_fft=n_fft, hop=hop, **record["learned"])
    fields = {k: getattr(lcfg, k) for k in LangevinConfig.__dataclass_fields__}
    update_card(bundle.path, "langevin", value={k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()})
    update_card(bundle.path, "chain", value=record)
    return record
