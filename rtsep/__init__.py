"""rtsep: real-time source separation with deep generative priors."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Separator", "BlockGeometry", "__version__"]


def __getattr__(name: str):
    """Import lazily: `import rtsep` does no work and loads neither torch nor onnxruntime."""
    if name == "Separator":
        from .separator import Separator

        return Separator
    if name == "BlockGeometry":
        from .engine import BlockGeometry

        return BlockGeometry
    raise AttributeError(name)
