"""Ship a set of priors (and optionally an encoder) as a model directory: float16 weights that load as the
float32 priors they came from, their card entries, and the card's chain. `tools/ship_priors.py` is its
command line; `check` measures what the float16 storage costs in log-density.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from .bundle import seal
from .card import read_card, update_card
from .distill import CHAIN
from .errors import BundleError
from .langevin import LangevinConfig
from .train.checkpoint import save_weights
from .train.prior import load_prior, prior_paths


BASIS_CHAIN = replace(CHAIN, bands=1)
"""A priors-only set's chain: the cold chain, 2 swap rounds, one sweep of band moves (README, Session 16)."""
WARM = replace(CHAIN, steps=4, sigma_start=0.1, warm_start=1.0, swap_steps=60, bands=1)
"""An encoder set's chain: 4 noise-free mask steps from the encoder's estimate (sigma 0.1 -> 0.01), then
session 14's 2 swap rounds relaxed 60 steps each and session 16's band sweep; the moves do the work
(README, Session 17: measured with 4 steps, the eval's old default; session 14's 60 were not re-run)."""


def parse_chain(items: list[str]) -> LangevinConfig:
    """KEY=VALUE settings of `LangevinConfig`, each value cast to its field's default's type."""
    defaults = asdict(LangevinConfig())
    kw = {}
    for item in items:
        key, _, value = item.partition("=")
        if key not in defaults or not value:
            raise BundleError(f"--chain {item!r}: expected KEY=VALUE with KEY one of {', '.join(defaults)}")
        kind = type(defaults[key])
        kw[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return LangevinConfig(**kw)


def ship(src: Path, dst: Path, encoder: Path | None = None, chain: LangevinConfig | None = None) -> list[str]:
    """Copy SRC's priors to DST as float16 weights with their card entries, and ENCODER's encoder if
    given; returns the sources. `chain`: the card's chain (default `BASIS_CHAIN`, or `WARM` with an encoder)."""
    card = read_card(src)
    sources = list(card.get("priors", {}))
    if not sources:
        raise BundleError(f"{src} holds no priors")
    banded = encoder is not None and "band_prior" in read_card(encoder).get("encoder", {})
    if chain is not None and chain.band_weight and not banded:
        raise BundleError("a chain with band_weight needs an encoder trained with --band-weight (its card holds the "
                          "band-shape prior)")
    if encoder is None and (dst / "encoder.pt").exists():
        raise BundleError(f"{dst} holds an encoder: pass --encoder to ship one, or ship to another folder "
                          "(a priors-only card chain would start cold beside it)")
    for s in sources:  # load_prior checks the weights against their config; .half() rounds floats only
        save_weights(prior_paths(dst, s)[0], load_prior(src, s).half())
        update_card(dst, "priors", s, value=card["priors"][s])
    update_card(dst, "sample_rate", value=card["sample_rate"])
    default = BASIS_CHAIN
    if encoder is not None:
        enc = read_card(encoder).get("encoder")
        if enc is None or not (encoder / "encoder.pt").is_file():
            raise BundleError(f"{encoder} holds no trained encoder")
        if enc["config"].get("sources") != sources:
            raise BundleError(f"{encoder}'s encoder separates {enc['config'].get('sources')}, not {sources}")
        shutil.copy(encoder / "encoder.pt", dst / "encoder.pt")
        update_card(dst, "encoder", value=enc)
        default = WARM
    update_card(dst, "langevin", value=asdict(chain or default))
    update_card(dst, "weights_dtype", value=f"float16 (cast to float32 on load), shipped from {src} "
                                             "by tools/ship_priors.py")
    seal(dst)  # a Bundle now refuses these weights if they are edited
    return sources


def check(src: Path, dst: Path, data: Path, clips: int = 8, sigmas: tuple[float, ...] = (0.01, 0.05)) -> float:
    """Largest |log p_fp32 - log p_fp16| (nats/sample) over `clips` test clips per source and `sigmas`,
    stored in DST's card: what the float16 storage costs, measured."""
    from .datasets.folder import SourceSet

    card = read_card(dst)
    worst = 0.0
    for s in card["priors"]:
        full, half = load_prior(src, s), load_prior(dst, s)
        test = SourceSet.load(data, s, card["sample_rate"], "test")
        t = min(len(c) for c in test.clips[:clips]) // full.cfg.squeeze * full.cfg.squeeze
        x = torch.from_numpy(np.stack([c[:t] for c in test.clips[:clips]])[:, None].astype(np.float32))
        with torch.no_grad():
            for sigma in sigmas:
                worst = max(worst, float((full.log_prob(x, sigma) - half.log_prob(x, sigma)).abs().max()))
    update_card(dst, "weights_dtype_check", value={"max_abs_log_prob_change": worst, "data": str(data),
                                                   "clips_per_source": clips, "sigmas": list(sigmas)})
    return worst
