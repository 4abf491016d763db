"""Warm-started annealed Langevin refinement under the priors and the mixing constraint.

Per level sigma (geometric from sigma_start to sigma_end, one step each):
    s_k <- s_k + eta * (score_k(s_k; sigma) + (m - mean_j s_j) / (N sigma^2)) + sqrt(2 eta) * T * eps
with eta = lr * sigma^2 (BASIS, gamma = sigma). The likelihood term has a minus inside the norm's
gradient: it pulls the estimate TOWARD the mixture (the seed formula's "+" and the thesis's zeroed
weight pulled nowhere). Optionally every step is projected onto mean_k s_k == m exactly, and the
chain ends with one Tweedie denoising step at sigma_end.

The schedule (levels, step sizes, noise) is drawn here in numpy; a backend runs the steps, each
one call of `step` (torch eager, or one fused ONNX graph for all sources that can stay on the GPU
between steps). Every step has the same form, so one graph serves the whole chain:
    x1 = x + eta * score(x; sigma) + lik * (m - mean_k x) + noise
    x' = x1 + proj * (m - mean_k x1)
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NamedTuple

import numpy as np

from .errors import BundleError, ConfigError

if TYPE_CHECKING:  # rtsep.bands imports torch, which the ONNX path need not load here
    from .bands import BandPrior

SPACES = ("signal", "mask")
ScoreFn = Callable[[int, np.ndarray, np.ndarray], np.ndarray]
"""score(k, x (B, T), sigma (B,)) -> grad_x log p_k,sigma(x), shape (B, T)."""
LogProbsFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""log_probs(x (B, N, T), sigma (B,)) -> log p_k,sigma(x_k) per item and source (nats), (B, N)."""


class Step(NamedTuple):
    """One Langevin step's inputs besides x and the mixture; per-chain (B,) float32 arrays."""

    sigma: np.ndarray
    eta: np.ndarray
    lik: np.ndarray
    proj: np.ndarray
    noise: np.ndarray  # (B, N, T)


StepFn = Callable[[np.ndarray, np.ndarray, Step], np.ndarray]
"""step(x (B, N, T), mix (B, 1, T), Step) -> x after the step."""


@dataclass(frozen=True)
class LangevinConfig:
    steps: int = 4
    sigma_start: float = 0.05
    sigma_end: float = 0.01
    lr: float = 0.5
    temperature: float = 1.0
    consistency: bool = True
    denoise: bool = True
    space: str = "signal"
    """"signal": the chain above, on the waveforms; "mask": on the logits of STFT masks that share
    out the mixture (`rtsep.mask_langevin`), where `mask_lr` is the step and consistency is exact."""
    mask_lr: float = 0.1
    n_fft: int = 1024
    hop: int = 256
    warm_start: float = 1.0
    """How much of the encoder's estimate the chain starts from: 1 all of it, 0 none (every source an
    equal share of the mixture: BASIS's cold start), between a blend (in mask space, of the logits).
    A seed-objective encoder can sit in a wrong basin that a warm-started chain never leaves (README)."""
    relabel_every: int = 0
    """Mask space: every this many steps (and at the end) give each prior the estimate it rates
    highest (`rtsep.mask_langevin.best_labelling`); 0 never. Needs the backend's `log_probs`."""
    polish: int = 0
    """Mask space: the last this many of the `steps` run at temperature 0, so the result carries no
    chain noise (which lowers every prior's rating, so `chains` compare fairly). On toy4, 60 such
    steps after a T=1 chain moved medians by at most 0.4 dB; a chain at T=0 throughout did far
    better there (README, Session 10)."""
    chains: int = 1
    """Mask space: run this many independent chains per block and keep, per block, the one whose
    result the priors rate highest (sum_k log p_k at `rate_sigma`). Where a chain ends in a partial
    sine/triangle blend depends on its noise (toy4, README). Costs `chains` times the compute.
    Needs `log_probs`."""
    rate_sigma: float = 0.0
    """The noise level at which `chains` are rated; 0 is `sigma_end`. A masked estimate is never
    residue-free, and at sigma 0.01 the toy4 priors punish that residue more than a confusion (the
    oracle ratio mask can rate below a chain's blend); at 0.1 the oracle mask rates near the truth,
    but sine and triangle are told apart less (`tools/rating_gap.py`, README)."""
    swaps: int = 0
    """Mask space: rounds of swap-and-relax moves after the chain (`rtsep.mask_langevin.swap_moves`):
    every pair swap of whole estimates, each relaxed by `swap_steps` noise-free steps from
    `swap_sigma` to `sigma_end`, the best rated at `rate_sigma` kept. It leaves basins a gradient
    chain cannot, where two moves must be made at once (toy4: sine and triangle, README Session 11).
    Needs `log_probs`; costs (1 + N(N-1)/2) x `swap_steps` steps a round."""
    swap_steps: int = 40
    swap_sigma: float = 0.05
    bands: int = 0
    """Mask space: sweeps of per-partial reassignment after the swap moves
    (`rtsep.mask_langevin.band_moves`): each of the block's `band_regions` strongest spectral
    regions offered to every source, kept where the priors rate the block highest at `rate_sigma`,
    then relaxed like a swap proposal and kept only if it rates above the chain's result. It undoes
    blends (two sources each holding part of the other's partials) that whole swaps cannot.
    Needs `log_probs`; costs bands x band_regions rating calls (one row a block) and `swap_steps` chain steps."""
    band_regions: int = 24
    band_weight: float = 0.0
    """Mask space: weight per sample of the band-shape prior the seed encoder was trained with
    (`rtsep.bands`, stored in the card), added to the flows' scores; 0 off. The flows alone pull
    the high band out of drums, bass and piano (README, Session 18)."""

    def __post_init__(self) -> None:
        if self.space not in SPACES:
            raise ConfigError(f"unknown Langevin space {self.space!r} ({' or '.join(SPACES)})")
        if not 0.0 <= self.warm_start <= 1.0:
            raise ConfigError(f"warm_start {self.warm_start} is not in [0, 1]")
        if self.relabel_every < 0 or (self.relabel_every and self.space != "mask"):
            raise ConfigError(f"relabel_every {self.relabel_every}: a count >= 0, and only in mask space")
        if self.chains < 1 or (self.chains > 1 and self.space != "mask"):
            raise ConfigError(f"chains {self.chains}: a count >= 1, more than 1 only in mask space")
        if self.polish < 0 or (self.polish and self.space != "mask"):
            raise ConfigError(f"polish {self.polish}: a count >= 0, and only in mask space")
        if self.rate_sigma < 0:
            raise ConfigError(f"rate_sigma {self.rate_sigma} is negative")
        if self.swaps < 0 or (self.swaps and self.space != "mask"):
            raise ConfigError(f"swaps {self.swaps}: a count >= 0, and only in mask space")
        if self.swap_steps < 1 or self.swap_sigma <= 0:
            raise ConfigError(f"swap_steps {self.swap_steps} must be >= 1 and swap_sigma {self.swap_sigma} > 0")
        if self.bands < 0 or (self.bands and self.space != "mask") or self.band_regions < 1:
            raise ConfigError(f"bands {self.bands}: a count >= 0, and only in mask space; band_regions "
                              f"{self.band_regions} >= 1")
        if self.band_weight < 0 or (self.band_weight and self.space != "mask"):
            raise ConfigError(f"band_weight {self.band_weight}: >= 0, and only in mask space")

    @classmethod
    def from_card(cls, card: dict, model_dir: Path | str, **overrides) -> "LangevinConfig":
        """The card's "langevin" section with `overrides` applied: the one parse every command uses,
        so a bad card is the same one-line BundleError everywhere (an unknown override is a ValueError)."""
        try:
            cfg = cls(**card.get("langevin", {}))
        except (TypeError, ValueError) as exc:
            raise BundleError(f"{model_dir}: bad Langevin settings in card.json ({exc})") from None
        return replace(cfg, **overrides) if overrides else cfg

    def relax_sigmas(self) -> np.ndarray:
        """The noise levels of the short noise-free chain that relaxes every swap and band proposal."""
        return np.geomspace(self.swap_sigma, self.sigma_end, self.swap_steps)

    def sigmas(self) -> np.ndarray:
        if self.steps <= 0:
            return np.zeros(0)
        if self.steps == 1:
            return np.array([self.sigma_end])
        return np.geomspace(self.sigma_start, self.sigma_end, self.steps)


def project(x: np.ndarray, mix: np.ndarray) -> np.ndarray:
    """Make mean over sources (axis -2) equal the mixture exactly. x (..., N, T), mix (..., 1, T)."""
    return x + (mix - x.mean(axis=-2, keepdims=True))


def schedule(cfg: LangevinConfig, shape: tuple[int, int, int], rng: np.random.Generator) -> list[Step]:
    """The chain's steps for x of `shape` (B, N, T): K annealed steps, then the Tweedie step."""
    b, n, _ = shape
    full = lambda v: np.full(b, v, dtype=np.float32)  # noqa: E731
    proj = full(1.0 if cfg.consistency else 0.0)
    steps = []
    sigmas = cfg.sigmas()
    for sigma in sigmas:
        eta = cfg.lr * sigma**2
        noise = np.float32(np.sqrt(2 * eta) * cfg.temperature) * rng.standard_normal(shape, dtype=np.float32)
        steps.append(Step(full(sigma), full(eta), full(eta / (n * sigma**2)), proj, noise))
    if cfg.denoise and len(sigmas):
        steps.append(Step(full(sigmas[-1]), full(sigmas[-1] ** 2), full(0.0), proj, np.zeros(shape, np.float32)))
    return steps


def refine(x0: np.ndarray, mix: np.ndarray, run: Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray],
           cfg: LangevinConfig, rng: np.random.Generator, renoise: bool = True,
           log_probs: LogProbsFn | None = None, band_prior: BandPrior | None = None) -> np.ndarray:
    """x0 (B, N, T) warm starts (encoder means), mix (B, T) -> refined (B, N, T); K=0 returns x0.

    `run(x, mix (B, 1, T), steps)` executes the chain: a backend's `langevin`, or `run_steps`
    over a numpy step function. `log_probs` (a backend's) is needed when `cfg.relabel_every`, and
    `band_prior` (a backend's `rtsep.bands.BandPrior`) when `cfg.band_weight`."""
    if cfg.steps <= 0:
        return x0
    if cfg.space == "mask":
        if (cfg.relabel_every or cfg.chains > 1 or cfg.swaps or cfg.bands) and log_probs is None:
            raise BundleError("relabelling, swap and band moves and several chains need the priors' log-densities, which this backend "
                              "does not give")
        if cfg.band_weight and band_prior is None:
            raise BundleError("--band-weight needs a band-shape prior, which this model's encoder was not trained with "
                              "(`rtsep train encoder --band-weight`)")
        return refine_masks(x0, mix, run, cfg, rng, log_probs, band_prior)
    x = x0.astype(np.float32, copy=True)
    b, n, t = x.shape
    m = np.array(np.broadcast_to(mix, (b, t)).reshape(b, 1, t), dtype=np.float32)
    if cfg.warm_start < 1.0:
        x = cfg.warm_start * x + (1.0 - cfg.warm_start) * m  # still mixes to m when x0 does
    if renoise:
        x += cfg.sigmas()[0] * rng.standard_normal(x.shape, dtype=np.float32)
    return run(x, m, schedule(cfg, x.shape, rng))


def run_steps(step: StepFn) -> Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray]:
    """A chain runner from a single-step function."""

    def run(x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        for st in steps:
            x = step(x, mix, st)
        return x

    return run


def numpy_step(score: ScoreFn) -> StepFn:
    """The step formula in numpy around a per-source score function (tests, custom priors)."""

    def step(x: np.ndarray, mix: np.ndarray, st: Step) -> np.ndarray:
        col = lambda v: v[:, None, None]  # noqa: E731
        g = np.stack([score(k, np.ascontiguousarray(x[:, k]), st.sigma) for k in range(x.shape[1])], axis=1)
        x1 = x + col(st.eta) * g + col(st.lik) * (mix - x.mean(axis=1, keepdims=True)) + st.noise
        return (x1 + col(st.proj) * (mix - x1.mean(axis=1, keepdims=True))).astype(np.float32)

    return step


def scores_from_steps(run: Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray]) -> Callable[..., np.ndarray]:
    """The priors' scores through a chain runner: one step with eta 1 and nothing else returns
    x + score, so every backend's step graph (torch eager or ONNX) also serves the mask chain."""

    fixed: dict[tuple[int, ...], tuple] = {}  # the step's constant inputs, made once per shape

    def scores(x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        b, n, t = x.shape
        if x.shape not in fixed:
            zeros = np.zeros(b, np.float32)
            fixed[x.shape] = (np.ones(b, np.float32), zeros, np.zeros((b, n, t), np.float32), np.zeros((b, 1, t), np.float32))
        ones, zeros, noise, mix = fixed[x.shape]
        return run(x, mix, [Step(sigma.astype(np.float32), ones, zeros, zeros, noise)]) - x

    return scores


def refine_masks(x0: np.ndarray, mix: np.ndarray, run: Callable[[np.ndarray, np.ndarray, list[Step]], np.ndarray],
                 cfg: LangevinConfig, rng: np.random.Generator, log_probs: LogProbsFn | None = None,
                 band_prior: BandPrior | None = None) -> np.ndarray:
    """`refine` in mask space; the span is zero-padded to a multiple of the STFT hop and cropped back."""
    from .mask_langevin import band_moves, mask_chain, numpy_stft, swap_moves

    b, n, t = x0.shape
    pad = -t % cfg.hop
    c = cfg.chains
    mix2 = np.tile(np.pad(np.broadcast_to(mix, (b, t)), [(0, 0), (0, pad)]), (c, 1))  # chain j: rows j*b..
    x = np.tile(np.pad(x0, [(0, 0), (0, 0), (0, pad)]), (c, 1, 1))
    scores, stft = scores_from_steps(run), numpy_stft(cfg.n_fft, cfg.hop)
    if cfg.band_weight:  # the same posterior for every move: scores climbed and log-densities rated
        flow_scores, flow_log_probs = scores, log_probs
        scores = lambda x, sigma: flow_scores(x, sigma) + band_prior.grad_log_prob(x, cfg.band_weight)  # noqa: E731
        if log_probs is not None:
            log_probs = lambda x, sigma: flow_log_probs(x, sigma) + band_prior.log_prob(x, cfg.band_weight)  # noqa: E731
    out = mask_chain(x, mix2, scores, cfg.sigmas(), cfg.mask_lr, cfg.temperature, rng, stft,
                     warm=cfg.warm_start, log_probs=log_probs, relabel_every=cfg.relabel_every, polish=cfg.polish)
    sigma = cfg.rate_sigma or cfg.sigmas()[-1]
    if c > 1:
        rated = log_probs(out, np.full(c * b, sigma, np.float32)).sum(axis=1).reshape(c, b)
        out = out.reshape(c, b, n, -1)[rated.argmax(axis=0), np.arange(b)]
    if cfg.swaps:
        out = swap_moves(out, mix2[:b], scores, log_probs, cfg.relax_sigmas(), cfg.mask_lr, stft, sigma, cfg.swaps)
    if cfg.bands:
        out = band_moves(out, mix2[:b], scores, log_probs, cfg.relax_sigmas(), cfg.mask_lr, stft, sigma, cfg.bands,
                         cfg.band_regions)
    return out[..., :t]
