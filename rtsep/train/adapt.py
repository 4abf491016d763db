"""`rtsep adapt`: fit a model to a user's own instruments from solo recordings, with no stems of any mixture.

1. Each source's TF prior is fine-tuned on the user's solo audio of that source (a missing source keeps
   its prior): a prior only ever needs one source's audio, which is why the method can do this.
2. The encoder is fine-tuned on stem-free mixtures: random excerpts of the user's solo folders mixed
   by mean (and, with `--mixtures`, the user's real mixtures, which have no stems at all). Objective
   "solo-mix" (the default): the negative SI-SDR against the solo excerpts that were mixed (they are the
   user's recordings, not stems of a song), plus an anchor to the base encoder's estimates. Objective
   "seed": the seed objective, the adapted priors' negative log-density of each estimate (mixture
   consistency is exact through the softmax masks), plus the same anchor; on TimGM6mb it wrecked the
   drums, the priors' optimum still not being the truth. The
   result is blended with the base's weights (`blend`), the stronger guard against forgetting.
3. The chain's learned levels, steps and weights (`rtsep train chain`) are re-learned on the same solo
   mixtures, for the adapted priors and encoder.
4. The result is a complete model directory: card with lineage (base model, folders' sizes and hashes,
   minutes, objective) and ONNX graphs.

Every check on the input runs before any training starts; the run is resumable (the priors' and the
encoder's checkpoints live in OUT/ckpt) and stays within its time budget.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..bundle import Bundle
from ..card import provenance, read_card, update_card, write_card
from ..datasets.folder import AUDIO_SUFFIXES, SourceSet, load_mono
from ..errors import BundleError, DataError
from ..nn.tfprior import stft_power
from .checkpoint import load_checkpoint, restore_rng, rng_state, save_checkpoint, save_weights
from .chain import neg_si_sdr
from .encoder import encoder_paths
from .progress import bar
from .tfprior import TFPriorTraining, load_tf_prior, train_tf_prior

OBJECTIVES = ("seed", "solo-mix")
SILENCE = 1e-3


@dataclass
class AdaptConfig:
    minutes: float = 25.0
    prior_share: float = 0.3
    """Share of the time budget for the priors (split over the sources given), the rest for the encoder."""
    objective: str = "solo-mix"
    """"solo-mix" (the default: measured better) or "seed"; on TimGM6mb the seed objective wrecked drums (SI-SDRi
    -3.6 dB with the chain) while solo-mix gained on every source (docs/research-log.md, session 21)."""
    anchor: float = 1.0
    """Weight of the anchor: mean squared difference from the base encoder's estimates, relative to the
    mixture's power (so a weight of 1 costs as much as an error the size of the mixture)."""
    blend: float = 0.75
    """The adapted encoder's weights are blend * fine-tuned + (1 - blend) * base (weight-space ensembling,
    WiSE-FT): on TimGM6mb, 0.75 kept nearly all the gain and cut the loss on FluidR3 renders from up to
    0.9 dB to at most 0.3 (docs/research-log.md, session 21)."""
    prior_steps: int = 1500
    encoder_steps: int = 3000
    chain_steps: int = 200
    batch: int = 8
    seconds: float = 2.0
    lr: float = 1e-4
    prior_lr: float = 3e-4
    seed: int = 0
    threads: int | None = None


def audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)


def check_inputs(model: str | Path, sources_dir: Path, out: Path, mixtures: Path | None, objective: str
                 ) -> tuple[Bundle, dict[str, list[Path]], dict[str, SourceSet], list[Path]]:
    """(base bundle, the user's audio files and their audio per source, mixture files) or a one-line error,
    before any work."""
    if objective not in OBJECTIVES:
        raise DataError(f"unknown objective {objective!r} ({' or '.join(OBJECTIVES)})")
    bundle = Bundle.load(model)
    if not bundle.has_encoder or not bundle.has_tf_priors:
        raise BundleError(f"{bundle.path} has no encoder and TF priors to adapt (rtsep adapt needs both; "
                          "train them with `rtsep train prior --domain tf` and `rtsep train encoder`)")
    sources_dir = Path(sources_dir)
    if not sources_dir.is_dir():
        raise DataError(f"solo folder not found: {sources_dir}")
    folders = sorted(p for p in sources_dir.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise DataError(f"{sources_dir} has no source folders: put each source's solo audio in "
                        f"{sources_dir}/<source>/ ({', '.join(bundle.sources)})")
    unknown = [p.name for p in folders if p.name not in bundle.sources]
    if unknown:
        raise DataError(f"{sources_dir}/{unknown[0]}: unknown source {unknown[0]!r} (the model's sources: "
                        f"{', '.join(bundle.sources)})")
    files: dict[str, list[Path]] = {}
    sets: dict[str, SourceSet] = {}
    for folder in folders:
        found = audio_files(folder)
        if not found:
            raise DataError(f"no audio files in {folder} ({', '.join(AUDIO_SUFFIXES)})")
        clips = [load_mono(p, bundle.sample_rate) for p in found]
        peak = max(float(np.abs(c).max()) for c in clips)
        if peak < SILENCE:
            raise DataError(f"{folder} holds only silence (peak {peak:.1e}): nothing to adapt to")
        files[folder.name], sets[folder.name] = found, SourceSet(folder.name, clips)
    mix_files: list[Path] = []
    if mixtures is not None:
        if not Path(mixtures).is_dir() or not audio_files(Path(mixtures)):
            raise DataError(f"no audio files in the mixtures folder {mixtures}")
        mix_files = audio_files(Path(mixtures))
    out = Path(out)
    if out.resolve() == bundle.path.resolve():
        raise DataError(f"-o {out} is the base model itself; adapt writes a new model directory")
    if out.exists() and any(out.iterdir()):
        lineage = read_card(out).get("adapted", {}) if (out / "card.json").is_file() else {}
        if lineage.get("base") != str(bundle.path):
            raise DataError(f"{out} exists and is not an adaptation of {bundle.path} to resume; choose a new -o")
    return bundle, files, sets, mix_files


def folder_fingerprint(files: list[Path]) -> dict:
    """Count, bytes and one sha256 over the files' names and contents: the card's record of the user's data."""
    h = hashlib.sha256()
    size = 0
    for p in files:
        data = p.read_bytes()
        size += len(data)
        h.update(p.name.encode() + b"\0" + hashlib.sha256(data).digest())
    return {"files": len(files), "bytes": size, "sha256": h.hexdigest()}


def seed_nll(priors: list, est: torch.Tensor, n_fft: int, hop: int) -> torch.Tensor:
    """Mean over items, sources and frames of -log p_k(estimate k) per band, at the priors' lowest level."""
    b, n, t = est.shape
    power = stft_power(est.reshape(b * n, t), n_fft, hop).reshape(b, n, t // hop, -1)
    sig = torch.full((b,), priors[0].cfg.sigma_min * 2)
    nll = [-(p.log_prob_power(power[:, k], sig)).mean() / p.cfg.bands for k, p in enumerate(priors)]
    return torch.stack(nll).mean()


def adapt(model: str | Path, sources_dir: Path, out: Path, cfg: AdaptConfig, mixtures: Path | None = None,
          show: bool = True, export: bool = True) -> dict:
    """Adapt MODEL to the solo recordings in SOURCES_DIR/<source>/ and write OUT; returns the card's "adapted".
    `export` False leaves out the ONNX graphs (then OUT runs on the torch backend only)."""
    bundle, files, sets, mix_files = check_inputs(model, sources_dir, out, mixtures, cfg.objective)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(out)
    started = time.monotonic()
    if not (out / "card.json").is_file():
        tmp = out.with_name(f".{out.name}.part")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(bundle.path, tmp, ignore=shutil.ignore_patterns("ckpt", "onnx", ".*"))
        card = read_card(tmp)
        for key in ("onnx", "weights", "separation_eval", "bench_cpu", "tf_prior_eval", "chain"):  # the base's numbers
            card.pop(key, None)
        write_card(tmp, card)
        update_card(tmp, "adapted", value={"base": str(bundle.path), "status": "started"})
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
    budget = cfg.minutes * 60
    # 1. the priors, on the user's solo audio
    per_prior = budget * cfg.prior_share / len(files)
    for source in files:
        entry = read_card(out)["tf_priors"][source]
        c = entry["training"] if "training" in entry else {}
        if c.get("init_from") == str(bundle.path) and c.get("steps_done", 0) >= cfg.prior_steps:
            continue  # adapted in an earlier, interrupted run
        train_tf_prior(source, Path(sources_dir), out, None, TFPriorTraining(
            steps=cfg.prior_steps, lr=cfg.prior_lr, seed=cfg.seed, checkpoint_every=100), minutes=per_prior / 60,
            show=show, init_from=bundle.path)
    # 2. the encoder, on stem-free mixtures of the user's solo excerpts (and mixtures)
    reserve = min(240.0, 0.2 * budget) if export else 0.0  # the export's share of the budget
    k = bundle.langevin.steps if bundle.langevin.prior == "tf" else 0
    chain_time = min(240.0, 0.15 * budget) if k else 0.0
    left = budget - reserve - chain_time - (time.monotonic() - started)
    record = adapt_encoder(bundle, out, sets, mix_files, cfg, left, show)
    # 3. the chain's levels, step sizes and weights, re-learned for the adapted priors and encoder on the solo mixtures
    chain = None
    if k:
        from .chain import ChainTraining, train_chain

        rec = train_chain(out, None, ChainTraining(chain_steps=k, steps=cfg.chain_steps, seed=cfg.seed), show=show,
                          minutes=chain_time / 60, solo=[sets.get(s) for s in bundle.sources])
        chain = {"steps_done": rec["training"]["steps_done"], "valid_si_sdri": rec["valid_si_sdri"]}
    # 4. lineage, then the ONNX graphs
    lineage = {"base": str(bundle.path), "status": "done", "objective": cfg.objective,
               "sources_dir": str(sources_dir), "adapted_sources": sorted(files),
               "kept_sources": [s for s in bundle.sources if s not in files],
               "data": {s: folder_fingerprint(f) for s, f in files.items()},
               "mixtures": folder_fingerprint(mix_files) if mix_files else None,
               "minutes": round((time.monotonic() - started) / 60, 1), "config": cfg.__dict__,
               "encoder": record, "chain": chain, **provenance()}
    update_card(out, "adapted", value=lineage)
    if export:
        from ..export import export_bundle

        export_bundle(out)
    else:
        from ..bundle import seal

        seal(out)
    lineage["minutes_with_export"] = round((time.monotonic() - started) / 60, 1)
    update_card(out, "adapted", value=lineage)
    return lineage


def adapt_encoder(bundle: Bundle, out: Path, sets: dict[str, SourceSet], mix_files: list[Path], cfg: AdaptConfig,
                  seconds_left: float, show: bool) -> dict:
    """Fine-tune OUT's encoder (started from the base's) within `seconds_left`; resumable."""
    sr, sources = bundle.sample_rate, list(bundle.sources)
    base = bundle.torch_encoder()
    base.requires_grad_(False)
    enc = bundle.torch_encoder().train()
    enc.stft.fft = base.stft.fft = True
    priors = [load_tf_prior(out, s) for s in sources]
    for p in priors:
        p.requires_grad_(False)
    n_fft, hop = priors[0].cfg.n_fft, priors[0].cfg.hop
    mixes = SourceSet("mixture", [load_mono(p, sr) for p in mix_files]) if mix_files else None
    length = int(cfg.seconds * sr) // hop * hop
    opt = torch.optim.Adam(enc.parameters(), lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    ckpt_path = out / "ckpt" / "adapt_encoder.pt"
    ckpt = load_checkpoint(ckpt_path)
    step, elapsed, history = 0, 0.0, []
    if ckpt is not None:
        enc.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["opt"])
        rng = restore_rng(ckpt["rng"])
        step, elapsed, history = ckpt["step"], ckpt["elapsed"], ckpt["history"]
    deadline = time.monotonic() + max(0.0, seconds_left)

    def checkpoint() -> None:
        save_checkpoint(ckpt_path, model=enc.state_dict(), opt=opt.state_dict(), rng=rng_state(rng), step=step,
                        elapsed=elapsed, history=history)

    t0, ema = time.monotonic(), None
    with bar(disable=not show) as progress:
        task = progress.add_task(f"adapt encoder ({cfg.objective})", total=cfg.encoder_steps, completed=step, info="")
        while step < cfg.encoder_steps and time.monotonic() < deadline:
            src = np.zeros((cfg.batch, len(sources), length), np.float32)
            for k, s in enumerate(sources):
                if s in sets:
                    src[:, k] = sets[s].excerpts(rng, cfg.batch, length, gain=(0.5, 1.0))
            mix = torch.from_numpy(src.mean(axis=1))
            if mixes is not None:  # half the batch: the user's real mixtures (seed objective only: no stems)
                real = torch.from_numpy(mixes.excerpts(rng, cfg.batch // 2, length, gain=(0.5, 1.0)) / len(sources))
                mix = torch.cat([mix, real])
            est = enc(mix[:, None])[0]
            with torch.no_grad():
                ref = base(mix[:, None])[0]
            power = mix.pow(2).mean(dim=-1).clamp_min(1e-8)[:, None, None]
            anchor = ((est - ref).pow(2).mean(dim=-1, keepdim=True) / power).mean()
            if cfg.objective == "seed":
                fit = seed_nll(priors, est, n_fft, hop)
            else:
                fit = neg_si_sdr(est[: cfg.batch][:, [k for k, s in enumerate(sources) if s in sets]],
                                 torch.from_numpy(src[:, [k for k, s in enumerate(sources) if s in sets]]))
            loss = fit + cfg.anchor * anchor
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(enc.parameters(), 1.0)
            opt.step()
            step += 1
            ema = loss.item() if ema is None else 0.98 * ema + 0.02 * loss.item()
            progress.update(task, advance=1, info=f"objective {ema:.3f} (anchor {anchor.item():.4f})")
            if step % 100 == 0:
                elapsed += time.monotonic() - t0
                t0 = time.monotonic()
                history.append({"step": step, "objective": round(ema, 4)})
                checkpoint()
    elapsed += time.monotonic() - t0
    checkpoint()
    enc.eval()
    enc.stft.fft = False
    with torch.no_grad():  # the checkpoint keeps the fine-tuned weights; the model gets the blend
        start = base.state_dict()
        enc.load_state_dict({k: cfg.blend * v + (1 - cfg.blend) * start[k] if v.is_floating_point() else v
                             for k, v in enc.state_dict().items()})
    save_weights(encoder_paths(out)[0], enc)
    card = read_card(out)
    entry = dict(card["encoder"])
    entry["adapted"] = {"steps_done": step, "seconds": round(elapsed, 1), "objective": cfg.objective,
                        "blend": cfg.blend,
                        "history": history[-20:]}
    update_card(out, "encoder", value=entry)
    return entry["adapted"]

