"""The progress bar, kept importable here for training code; it lives in `rtsep.progress`."""

from __future__ import annotations

from ..progress import bar

__all__ = ["bar"]
