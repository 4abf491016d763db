"""Resumable training state: weights, optimizer, step and RNG in one file, replaced atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import replacing
from ..errors import BundleError


def save_checkpoint(path: Path, **state: Any) -> None:
    with replacing(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is nothing to resume."""
    if not path.exists():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise BundleError(f"corrupt checkpoint {path}: {str(exc).splitlines()[0]}") from None


def save_weights(path: Path, module: torch.nn.Module) -> None:
    """State dict only (no pickled classes), atomically."""
    with replacing(path) as tmp:
        torch.save(module.state_dict(), tmp)


def load_weights(path: Path, module: torch.nn.Module) -> torch.nn.Module:
    if not path.exists():
        raise BundleError(f"missing weights {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        module.load_state_dict(state)
    except Exception as exc:
        raise BundleError(f"weights {path} do not match the model config: {str(exc).splitlines()[0]}") from None
    return module


def rng_state(rng: np.random.Generator) -> dict:
    return rng.bit_generator.state


def restore_rng(state: dict) -> np.random.Generator:
    rng = np.random.default_rng()
    rng.bit_generator.state = state
    return rng


def extend_runs(runs: list[dict] | None, here: dict, step: int) -> list[dict]:
    """The list of what a resumable run trained on (data folder, ...), each with the step it joined at:
    a new entry when a resume changes any of it, so a card tells a run resumed on more data apart
    from one trained on it from the start."""
    runs = list(runs or [])
    if not runs or {k: runs[-1].get(k) for k in here} != here:
        runs.append({**here, "from_step": step})
    return runs
