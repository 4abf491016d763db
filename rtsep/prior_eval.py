"""Cross-likelihood matrix and smoothness of a model's priors (DESIGN.md §2's first diagnostic).

loglik[sigma][prior][data] is the mean log-density per sample (nats) of held-out clips of
`data`, noised at `sigma`, under `prior`. A working set of priors has the diagonal highest in
every column at every sigma the sampler uses; the margin says by how much.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .atomic import replacing
from .card import read_card, update_card
from .datasets.folder import SourceSet
from .errors import BundleError
from .train.prior import load_prior


def held_out_batch(data: SourceSet, clips: int, segment: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return data.excerpts(rng, clips, segment, gain=(1.0, 1.0))


@torch.no_grad()
def _loglik(prior, x: torch.Tensor, sigma: float, chunk: int = 16) -> float:
    return float(torch.cat([prior.log_prob(x[i : i + chunk], sigma) for i in range(0, len(x), chunk)]).mean())


def _score_rms(prior, x: torch.Tensor, sigma: float) -> float:
    """Root mean square of grad_x log p_sigma(x) per sample."""
    return float(prior.score(x, sigma).pow(2).mean().sqrt())


def evaluate_priors(model_dir: Path, data: Path, split: str = "test", clips: int = 32, segment: int = 16384,
                    seed: int = 1234, sigmas: list[float] | None = None, progress=None) -> dict:
    """Compute the matrix, the per-sigma margins and score norms; stored in card['prior_eval']."""
    card = read_card(model_dir)
    sources = list(card.get("priors", {}))
    if not sources:
        raise BundleError(f"{model_dir} holds no trained priors (train one with `rtsep train prior`)")
    priors = {s: load_prior(model_dir, s) for s in sources}
    sr = card["sample_rate"]
    if sigmas is None:  # the levels the sampler visits (card "langevin", K = 4; K = 2 and 1 use a subset)
        from .langevin import LangevinConfig

        lcfg = LangevinConfig.from_card(card, model_dir, steps=4)
        sigmas = [float(s) for s in lcfg.sigmas()]
    sets = {s: SourceSet.load(data, s, sr, split) for s in sources}
    seg = segment - segment % 16
    clean = {s: torch.from_numpy(held_out_batch(sets[s], clips, seg, seed))[:, None] for s in sources}
    gen = torch.Generator().manual_seed(seed)
    loglik, margins, grad_clean, grad_noisy = [], [], [], []
    total, done = len(sigmas) * len(sources) * (len(sources) + 1), 0
    for sigma in sigmas:
        noisy = {s: clean[s] + sigma * torch.randn(clean[s].shape, generator=gen) for s in sources}
        mat = []
        for p in sources:
            row = []
            for d in sources:
                row.append(_loglik(priors[p], noisy[d], sigma))
                done += 1
                if progress:
                    progress(done, total)
            mat.append(row)
        m = np.array(mat)
        margin = min(m[k, k] - np.max(np.delete(m[:, k], k)) for k in range(len(sources)))
        loglik.append(mat)
        margins.append(float(margin))
        grad_clean.append({s: _score_rms(priors[s], clean[s][:8], sigma) for s in sources})
        grad_noisy.append({s: _score_rms(priors[s], noisy[s][:8], sigma) for s in sources})
        done += len(sources)
        if progress:
            progress(done, total)
    result = {
        "sources": sources, "sigmas": list(map(float, sigmas)), "loglik": loglik,
        "min_margin_per_sigma": margins, "min_margin": float(min(margins)),
        "discriminative": bool(min(margins) > 0),
        "score_rms_clean": grad_clean, "score_rms_noisy": grad_noisy,
        "data": str(data), "split": split, "clips": clips, "segment": seg, "seed": seed,
        "units": "loglik: mean nats per sample; score_rms: RMS of grad_x log p_sigma(x) per sample",
    }
    update_card(model_dir, "prior_eval", value=result)
    return result


def plot_matrix(result: dict, path: Path) -> None:
    """One heatmap per sigma, columns = data source, rows = prior; written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sources, sigmas = result["sources"], result["sigmas"]
    fig, axes = plt.subplots(1, len(sigmas), figsize=(3.6 * len(sigmas), 3.4), squeeze=False)
    for ax, sigma, mat in zip(axes[0], sigmas, result["loglik"]):
        m = np.array(mat)
        ax.imshow(m - m.max(axis=0, keepdims=True), cmap="viridis", vmin=-2.0, vmax=0.0)
        for i in range(len(sources)):
            for j in range(len(sources)):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="w" if m[i, j] < m[:, j].max() else "k")
        ax.set_xticks(range(len(sources)), sources, rotation=45, fontsize=8)
        ax.set_yticks(range(len(sources)), sources, fontsize=8)
        ax.set_xlabel("data")
        ax.set_title(f"sigma={sigma:g}", fontsize=9)
    axes[0][0].set_ylabel("prior")
    fig.suptitle("log p per sample (nats); colour = gap to column max")
    fig.tight_layout()
    with replacing(path, suffix=".tmp.png") as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)


@torch.no_grad()
def evaluate_tf_priors(model_dir: Path, data: Path, split: str = "test", clips: int = 32, frames: int = 64,
                       seed: int = 1234, sigmas: list[float] | None = None) -> dict:
    """The cross-likelihood matrix of MODEL_DIR's TF priors: loglik[sigma][prior][data] in mean nats per
    frame of held-out excerpts (`frames` STFT frames each), their features noised at sigma; the same per
    sample (divided by the hop) beside it, to compare with the waveform flows; and the share of excerpts
    whose own prior rates them highest. Stored in card['tf_prior_eval'] under DATA's name."""
    from .nn.tfprior import stft_power
    from .train.tfprior import load_tf_prior

    card = read_card(model_dir)
    sources = list(card.get("tf_priors", {}))
    if not sources:
        raise BundleError(f"{model_dir} holds no TF priors (rtsep train prior --domain tf)")
    priors = {s: load_tf_prior(model_dir, s) for s in sources}
    cfg = next(iter(priors.values())).cfg
    if sigmas is None:
        tf_sigmas = (card.get("langevin") or {}).get("tf_sigmas")
        sigmas = [float(s) for s in tf_sigmas] if tf_sigmas else [0.5, 0.25, 0.1, 0.05]
    gen = torch.Generator().manual_seed(seed)
    power = {s: stft_power(torch.from_numpy(held_out_batch(SourceSet.load(data, s, cfg.sample_rate, split), clips,
                                                           frames * cfg.hop, seed)), cfg.n_fft, cfg.hop)
             for s in sources}
    loglik, margins, wins = [], [], []
    for sigma in sigmas:
        sig = torch.full((clips,), float(sigma))
        per_clip = np.zeros((len(sources), len(sources), clips))
        for j, d in enumerate(sources):
            noise = torch.randn((clips, frames, cfg.bands), generator=gen)  # one draw for every prior
            for i, p in enumerate(sources):
                per_clip[i, j] = (priors[p].log_prob(priors[p].features(power[d]) + sigma * noise, sig)
                                  .mean(dim=-1).numpy())
        m = per_clip.mean(axis=-1)
        loglik.append(m.round(3).tolist())
        margins.append(float(min(m[k, k] - np.max(np.delete(m[:, k], k)) for k in range(len(sources)))))
        wins.append({s: float((per_clip[:, k].argmax(axis=0) == k).mean()) for k, s in enumerate(sources)})
    result = {"sources": sources, "sigmas": list(map(float, sigmas)), "loglik": loglik,
              "min_margin_per_sigma": margins, "min_margin": float(min(margins)),
              "min_margin_per_sample": float(min(margins)) / cfg.hop, "own_prior_wins": wins,
              "discriminative": bool(min(margins) > 0), "data": str(data), "split": split, "clips": clips,
              "frames": frames, "seed": seed,
              "units": "loglik: mean nats per STFT frame (divide by the hop for nats per sample)"}
    update_card(model_dir, "tf_prior_eval", Path(data).name, value=result)
    return result
