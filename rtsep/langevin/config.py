"""Langevin settings (`LangevinConfig`, read from a card), one step's inputs (`Step`) and the function types
the chains are written against: the leaf of `rtsep.langevin`, importing nothing else from it."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

from ..errors import BundleError, ConfigError

SPACES = ("signal", "mask")
PRIORS = ("flow", "tf")
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
    out the mixture (`rtsep.langevin.masks`), where `mask_lr` is the step and consistency is exact."""
    mask_lr: float = 0.1
    n_fft: int = 1024
    hop: int = 256
    warm_start: float = 1.0
    """How much of the encoder's estimate the chain starts from: 1 all of it, 0 none (every source an
    equal share of the mixture: BASIS's cold start), between a blend (in mask space, of the logits).
    A seed-objective encoder can sit in a wrong basin that a warm-started chain never leaves (README)."""
    relabel_every: int = 0
    """Mask space: every this many steps (and at the end) give each prior the estimate it rates
    highest (`rtsep.langevin.labels.best_labelling`); 0 never. Needs the backend's `log_probs`."""
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
    """Mask space: rounds of swap-and-relax moves after the chain (`rtsep.langevin.moves.swap_moves`):
    every pair swap of whole estimates, each relaxed by `swap_steps` noise-free steps from
    `swap_sigma` to `sigma_end`, the best rated at `rate_sigma` kept. It leaves basins a gradient
    chain cannot, where two moves must be made at once (toy4: sine and triangle, README Session 11).
    Needs `log_probs`; costs (1 + N(N-1)/2) x `swap_steps` steps a round."""
    swap_steps: int = 40
    swap_sigma: float = 0.05
    bands: int = 0
    """Mask space: sweeps of per-partial reassignment after the swap moves
    (`rtsep.langevin.moves.band_moves`): each of the block's `band_regions` strongest spectral
    regions offered to every source, kept where the priors rate the block highest at `rate_sigma`,
    then relaxed like a swap proposal and kept only if it rates above the chain's result. It undoes
    blends (two sources each holding part of the other's partials) that whole swaps cannot.
    Needs `log_probs`; costs bands x band_regions rating calls (one row a block) and `swap_steps` chain steps."""
    band_regions: int = 24
    band_weight: float = 0.0
    """Mask space: weight per sample of the band-shape prior the seed encoder was trained with
    (`rtsep.bands`, stored in the card), added to the flows' scores; 0 off. The flows alone pull
    the high band out of drums, bass and piano (README, Session 18)."""

    prior: str = "flow"
    """Which priors the chain climbs: "flow", the waveform flows; "tf", the time-frequency priors
    (`rtsep.nn.tfprior`, mask space only, `rtsep.langevin.tfchain`)."""
    tf_sigmas: tuple[float, ...] = ()
    tf_lrs: tuple[float | tuple[float, ...], ...] = ()
    tf_weights: tuple[float, ...] = ()
    """The TF chain's learned levels, step sizes (one each per step; a step size is one number, or one per
    source) and per-source prior weights (`rtsep train chain`); used when `steps` equals their length."""

    def __post_init__(self) -> None:
        for name in ("tf_sigmas", "tf_weights"):
            object.__setattr__(self, name, tuple(float(v) for v in getattr(self, name)))
        lrs = tuple(tuple(float(u) for u in v) if isinstance(v, (list, tuple)) else float(v) for v in self.tf_lrs)
        object.__setattr__(self, "tf_lrs", lrs)
        if len({len(v) if isinstance(v, tuple) else 0 for v in lrs}) > 1:
            raise ConfigError("tf_lrs: every step a number, or every step one number per source")
        if self.prior not in PRIORS:
            raise ConfigError(f"unknown prior {self.prior!r} ({' or '.join(PRIORS)})")
        if self.prior == "tf" and self.space != "mask":
            raise ConfigError("the TF priors' chain runs in mask space only (space: mask)")
        if len(self.tf_sigmas) != len(self.tf_lrs) or min(self.tf_sigmas, default=1.0) <= 0:
            raise ConfigError("tf_sigmas and tf_lrs: one positive level and one step size per step")
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


ScoresFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""scores(x (B, N, T), sigma (B,)) -> grad_x sum log p_k,sigma(x_k) for every source, (B, N, T)."""
