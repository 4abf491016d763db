"""Replacing a file atomically: write a temp file beside it, then `os.replace`; on any failure, remove the temp.

Every non-audio writer of rtsep (cards, checkpoints, weights, graphs, manifests, JSON reports, plots, generated
data) goes through `replacing`, so an interrupted or failed write leaves the old file whole and no temp behind.
Streamed audio stems use `rtsep.audio.AtomicWriter`, which works the same way. Standard library only.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temp path in PATH's folder (hidden, unique, ending in `suffix` for writers that read the
    format from the name); when the block ends, it replaces PATH; when the block raises, it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # O_EXCL on a random name, mode 0o666: the umask decides the permissions, as for any normally created
    # file (mkstemp's 0o600 made cards, graphs and data unreadable to the other users of a shared model)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}{suffix}"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temp name beside {path}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: Path | str, text: str) -> None:
    """PATH's new contents `text`, atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)
