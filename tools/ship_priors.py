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
import sys
from pathlib import Path

from rtsep.errors import BundleError, ConfigError
from rtsep.ship import check, parse_chain, ship


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="Run directory with priors/<source>.pt and card.json.")
    ap.add_argument("dst", type=Path, help="Model set to write (priors only, unless --encoder).")
    ap.add_argument("--encoder", type=Path,
                    help="Run directory whose encoder.pt joins the set (its chain then starts warm).")
    ap.add_argument("--chain", nargs="+", metavar="KEY=VALUE",
                    help="The card's chain (LangevinConfig fields), instead of the default.")
    ap.add_argument("--check-data", type=Path,
                    help="Held-out set: measure what float16 changes in log p on its test clips.")
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
