"""Ship a training run's priors as a priors-only model set: weights stored in float16, card with the
cold chain as its Langevin default.

    python tools/ship_priors.py runs/t4v3 models/toy4-basis

The LU-mixing toy4 priors that separate with no encoder and no stems (README, Session 11) are 11 MB
in float32, too big for git; float16 storage halves that and moves each prior's log-density by under
1e-3 nats/sample (measured on the shipped toy4 priors; margins between sources are 0.26 and more),
and `load_state_dict` casts the weights back to float32 on load, so no loader changes. The set
separates with `Separator.load` / `rtsep file --model DIR` on the torch backend: every source starts
from the whole mixture and the card's chain (`rtsep.distill.CHAIN`: 200 noise-free mask steps,
relabelling, 2 rounds of swap moves) does the separating, at ~160 s per second of audio on one core.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from rtsep.card import read_card, update_card  # noqa: E402
from rtsep.distill import CHAIN  # noqa: E402
from rtsep.errors import BundleError  # noqa: E402


def ship(src: Path, dst: Path) -> list[str]:
    """Copy SRC's priors to DST as float16 weights with their card entries; returns the sources."""
    card = read_card(src)
    sources = list(card.get("priors", {}))
    if not sources:
        raise BundleError(f"{src} holds no priors")
    (dst / "priors").mkdir(parents=True, exist_ok=True)
    for s in sources:
        state = torch.load(src / "priors" / f"{s}.pt", map_location="cpu", weights_only=True)
        half = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
        tmp = dst / "priors" / f".{s}.pt.tmp"
        torch.save(half, tmp)
        os.replace(tmp, dst / "priors" / f"{s}.pt")
        update_card(dst, "priors", s, value=card["priors"][s])
    update_card(dst, "sample_rate", value=card["sample_rate"])
    update_card(dst, "langevin", value=asdict(CHAIN))
    update_card(dst, "weights_dtype", value=f"float16 (cast to float32 on load), shipped from {src} by tools/ship_priors.py")
    return sources


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src", type=Path, help="Run directory with priors/<source>.pt and card.json.")
    ap.add_argument("dst", type=Path, help="Model set to write (priors only).")
    a = ap.parse_args()
    try:
        print(f"shipped {', '.join(ship(a.src, a.dst))} to {a.dst}")
    except (BundleError, OSError) as exc:
        sys.exit(f"error: {exc}")


if __name__ == "__main__":
    main()
