"""The block engine's ONNX Runtime backend: exported encoder and score graphs, no torch needed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .card import read_card
from .errors import BundleError
from .runtime import metadata, session


class OnnxBackend:
    """Sessions for MODEL_DIR/onnx/{encoder,score_<source>}.onnx, made by `rtsep export`."""

    def __init__(self, model_dir: Path, provider: str = "auto", threads: int | None = None) -> None:
        model_dir = Path(model_dir)
        card = read_card(model_dir)
        onnx_dir = model_dir / card.get("onnx", {}).get("dir", "onnx")
        if not (onnx_dir / "encoder.onnx").exists():
            raise BundleError(f"{model_dir} has no ONNX graphs: run `rtsep export {model_dir}` first")
        self.encoder = session(onnx_dir / "encoder.onnx", provider, threads)
        meta = metadata(self.encoder)
        self.sources = tuple(meta["sources"])
        self.sample_rate = int(meta["sample_rate"])
        self.stride = int(meta.get("stride", 16))
        if list(self.sources) != list(card.get("encoder", {}).get("config", {}).get("sources", self.sources)):
            raise BundleError(f"ONNX graphs in {onnx_dir} do not match the model card's sources")
        self.scores = [session(onnx_dir / f"score_{s}.onnx", provider, threads) for s in self.sources]
        self.provider = self.encoder.get_providers()[0]

    def encode(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, log_scale = self.encoder.run(None, {"mix": np.ascontiguousarray(mix[:, None], dtype=np.float32)})
        return mean, log_scale

    def score(self, k: int, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        g, _ = self.scores[k].run(None, {"x": np.ascontiguousarray(x[:, None], dtype=np.float32),
                                         "sigma": np.ascontiguousarray(sigma, dtype=np.float32)})
        return g[:, 0]
