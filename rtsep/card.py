"""card.json: the config, provenance and measured quality stored beside a model's weights.

One file per model directory; every writer updates its own section and keeps the rest, so
training a prior, training the encoder and evaluating can happen in any order.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; one writer at a time is then the user's job
    fcntl = None

from .atomic import write_text
from .errors import BundleError

CARD = "card.json"
SCHEMA = 1


def read_card(model_dir: Path) -> dict[str, Any]:
    """The card of MODEL_DIR, or an empty card when the directory is new."""
    path = Path(model_dir) / CARD
    if not path.exists():
        return {"schema": SCHEMA}
    try:
        card = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"unreadable model card {path}: {exc}") from None
    if not isinstance(card, dict) or card.get("schema") != SCHEMA:
        raise BundleError(f"{path} is not an rtsep model card (schema {SCHEMA})")
    return card


def write_card(model_dir: Path, card: dict[str, Any]) -> None:
    """Atomically replace MODEL_DIR/card.json."""
    write_text(Path(model_dir) / CARD, json.dumps(card, indent=2, sort_keys=True) + "\n")


@contextmanager
def card_lock(model_dir: Path) -> Iterator[None]:
    """Serialise read-modify-write of one card: the priors of a set are trained in parallel
    processes, and an unlocked update would drop another process's section."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    with open(model_dir / f".{CARD}.lock", "a") as f:
        if fcntl is not None:
            fcntl.flock(f, fcntl.LOCK_EX)
        yield


def update_card(model_dir: Path, *path: str, value: Any) -> dict[str, Any]:
    """Set card[path[0]][path[1]]... = value and write the card back.

    Writing a network's section ("encoder", or "priors" <source>) after saving its weights, as
    training does, also "tf_priors" <source>, re-records those weights' sha256 in a card that holds them ("weights", see
    `rtsep.bundle.seal`), and an encoder's sources in "sources": the card then describes the new
    weights, and `rtsep.bundle.Bundle` still refuses weights edited behind its back."""
    with card_lock(model_dir):
        card = read_card(model_dir)
        node = card
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
        _rerecord(Path(model_dir), card, path)
        write_card(model_dir, card)
    return card


def _rerecord(model_dir: Path, card: dict[str, Any], path: tuple[str, ...]) -> None:
    if path[0] == "encoder" and "sources" in card:
        card["sources"] = list((card.get("encoder") or {}).get("config", {}).get("sources") or card["sources"])
    if "weights" not in card or path[0] not in ("encoder", "priors", "tf_priors"):
        return
    names = (["encoder.pt"] if path[0] == "encoder"
             else [f"{path[0]}/{s}.pt" for s in (path[1:2] or card[path[0]])])
    for name in names:
        if (model_dir / name).is_file():
            card["weights"][name] = sha256(model_dir / name)
        else:
            card["weights"].pop(name, None)


def sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB pieces."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def provenance() -> dict[str, Any]:
    """What produced a model: git commit, host CPU, library versions."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    info: dict[str, Any] = {"git_commit": commit, "machine": f"{platform.machine()} {os.cpu_count()} cores",
                            "python": platform.python_version()}
    try:
        import torch

        info["torch"] = torch.__version__
        info["device"] = "cuda" if torch.cuda.is_available() else "cpu"
    except ImportError:
        pass
    return info
