"""Ship a training run's priors as a priors-only model set: weights stored in float16, card with the
cold chain as its Langevin default.

    python tools/ship_priors.py runs/t4v3 models/toy4-basis --check-data data/toy4-eval

The LU-mixing toy4 priors that separate with no encoder and no stems (README, Session 11) are 11 MB
in float32, too big for git. float16 storage halves that and moves each prior's log-density by under
1e-2 nats/sample (7.3e-3 on toy4-basis; `--check-data` measures it and stores it in the card),
against margins between sources of 0.26 nats/sample and more (README, Session 6). `load_state_dict`
casts the weights back to float32, so the loader is unchanged. The set separates with
`Separator.load` / `rtsep file --model DIR` on the torch backend: every source starts from the whole
mixture and the card's chain (`rtsep.distill.CHAIN`: 200 noise-free mask steps, relabelling, 2 rounds
of swap moves; plus one sweep of band moves, session 16) does the separating, at minutes per second
of audio on one core.

    python tools/ship_priors.py models/toy4-basis models/toy4-seed --encoder runs/t4bds

`--encoder RUN` adds RUN's amortized encoder (float32, as trained) and makes the card's chain the
warm one (`WARM`: 4 steps from the encoder's estimate, from sigma 0.1, then the same moves): the
encoder + Langevin set of issue 3 (README, Session 17). Shipping from a float16 set again keeps its tensors exactly.

    python tools/ship_priors.py runs/m4v2 models/music4-seed --encoder runs/m4v2b10 \
        --chain steps=16 space=mask sigma_start=0.1 sigma_end=0.02 temperature=0 band_weight=0.1

`--chain KEY=VALUE...` sets the card's chain instead (from `LangevinConfig`'s defaults): music4's
seed-objective set has no swap moves to make (README, Session 19).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rtsep.card import read_card, update_card  # noqa: E402
from rtsep.distill import CHAIN  # noqa: E402
from rtsep.errors import BundleError, ConfigError  # noqa: E402
from rtsep.langevin import LangevinConfig  # noqa: E402
from rtsep.train.checkpoint import save_weights  # noqa: E402
from rtsep.train.prior import load_prior, prior_paths  # noqa: E402


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
    if chain is not None and chain.band_weight and (encoder is None or "band_prior" not in read_card(encoder).get("encoder", {})):
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
    update_card(dst, "weights_dtype", value=f"float16 (cast to float32 on load), shipped from {src} by tools/ship_priors.py")
    return sources


def check(src: Path, dst: Path, data: Path, clips: int = 8, sigmas: tuple[float, ...] = (0.01, 0.05)) -> float:
    """Largest |log p_fp32 - log p_fp16| (nats/sample) over `clips` test clips per source and `sigmas`,
    stored in DST's card: what the float16 storage costs, measured."""
    from rtsep.datasets.folder import SourceSet

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="Run directory with priors/<source>.pt and card.json.")
    ap.add_argument("dst", type=Path, help="Model set to write (priors only, unless --encoder).")
    ap.add_argument("--encoder", type=Path, help="Run directory whose encoder.pt joins the set (its chain then starts warm).")
    ap.add_argument("--chain", nargs="+", metavar="KEY=VALUE", help="The card's chain (LangevinConfig fields), instead of the default.")
    ap.add_argument("--check-data", type=Path, help="Held-out set: measure what float16 changes in log p on its test clips.")
    a = ap.parse_args()
    try:
        chain = parse_chain(a.chain) if a.chain else None
        print(f"shipped {', '.join(ship(a.src, a.dst, a.encoder, chain))} to {a.dst}")
        if a.check_data:
            print(f"float16 changes log p by at most {check(a.src, a.dst, a.check_data):.2e} nats/sample")
    except (BundleError, ConfigError, OSError, ValueError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
