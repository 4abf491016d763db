"""Replacing a file atomically: write a temp file beside it, then `os.replace`; on any failure, remove the temp.

Every non-audio writer of rtsep (cards, checkpoints, weights, graphs, manifests, JSON reports, plots, generated
data) goes through `replacing`, so an interrupted or failed write leaves the old file whole and no temp behind.
Streamed audio stems use `rtsep.audio.AtomicWriter`, which works the same way. Standard library only.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: Path | str, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temp path in PATH's folder (hidden, unique, ending in `suffix` for writers that read the
    format from the name); when the block ends, it replaces PATH; when the block raises, it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
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
