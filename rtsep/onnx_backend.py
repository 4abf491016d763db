"""The block engine's ONNX Runtime backend: exported encoder and Langevin step graphs, no torch needed.

On CUDA the Langevin chain runs with IO binding: x and the mixture stay on the GPU between steps
(two device buffers swap as input and output); only each step's noise and scalars go up, and the
result comes down once per block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bands import band_prior_of
from .card import read_card
from .errors import BundleError
from .langevin import Step
from .runtime import CUDA, metadata, session

STEP_FEEDS = ("noise", "sigma", "eta", "lik", "proj")


class OnnxBackend:
    """Sessions for MODEL_DIR/onnx/{encoder,step}.onnx, made by `rtsep export`."""

    def __init__(self, model_dir: Path, provider: str = "auto", threads: int | None = None,
                 io_binding: bool | None = None) -> None:
        model_dir = Path(model_dir)
        card = read_card(model_dir)
        onnx_dir = model_dir / card.get("onnx", {}).get("dir", "onnx")
        for name in ("encoder.onnx", "step.onnx"):
            if not (onnx_dir / name).exists():
                raise BundleError(f"{model_dir} has no {name}: run `rtsep export {model_dir}` first")
        self.encoder = session(onnx_dir / "encoder.onnx", provider, threads)
        meta = metadata(self.encoder)
        self.sources = tuple(meta["sources"])
        self.sample_rate = int(meta["sample_rate"])
        self.stride = int(meta.get("stride", 16))
        if list(self.sources) != list(card.get("encoder", {}).get("config", {}).get("sources", self.sources)):
            raise BundleError(f"ONNX graphs in {onnx_dir} do not match the model card's sources")
        self.step = session(onnx_dir / "step.onnx", provider, threads)
        self.band_prior = band_prior_of(card)
        if list(metadata(self.step).get("sources", [])) != list(self.sources):
            raise BundleError(f"{onnx_dir / 'step.onnx'} was exported for other sources than encoder.onnx")
        self._onnx_dir, self._provider_choice, self._threads = onnx_dir, provider, threads
        self._scores: list | None = None  # per-source score graphs, loaded when relabelling first asks
        self.provider = self.step.get_providers()[0]
        self.io_binding = self.provider == CUDA if io_binding is None else io_binding
        self._device = ("cuda", 0) if self.provider == CUDA else ("cpu", 0)

    def encode(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, log_scale = self.encoder.run(None, {"mix": np.ascontiguousarray(mix[:, None], dtype=np.float32)})
        return mean, log_scale

    def log_probs(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """x (B, N, T), sigma (B,) -> (B, N) log-densities, from the score_<source>.onnx graphs."""
        if self._scores is None:
            missing = [s for s in self.sources if not (self._onnx_dir / f"score_{s}.onnx").exists()]
            if missing:
                raise BundleError(f"{self._onnx_dir} has no score_{missing[0]}.onnx, which relabelling needs: "
                                  "export with --scores")
            self._scores = [session(self._onnx_dir / f"score_{s}.onnx", self._provider_choice, self._threads)
                            for s in self.sources]
        t = x.shape[-1]
        return np.stack([sess.run(["log_prob"], {"x": np.ascontiguousarray(x[:, k : k + 1], dtype=np.float32),
                                                 "sigma": sigma.astype(np.float32)})[0] * t
                         for k, sess in enumerate(self._scores)], axis=1)

    def langevin(self, x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        """Run the chain, one step.onnx call per step (see `rtsep.langevin`)."""
        if self.io_binding:
            return self._langevin_bound(x, mix, steps)
        for st in steps:
            (x,) = self.step.run(None, {"x": x, "mix": mix, **{k: getattr(st, k) for k in STEP_FEEDS}})
        return x

    def _langevin_bound(self, x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        import onnxruntime as ort

        dev = self._device
        bufs = [ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(x), *dev),
                ort.OrtValue.ortvalue_from_shape_and_type(x.shape, np.float32, *dev)]
        binding = self.step.io_binding()
        binding.bind_ortvalue_input("mix", ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(mix), *dev))
        for i, st in enumerate(steps):
            binding.bind_ortvalue_input("x", bufs[i % 2])
            for k in STEP_FEEDS:
                binding.bind_cpu_input(k, getattr(st, k))
            binding.bind_ortvalue_output("x_next", bufs[(i + 1) % 2])
            self.step.run_with_iobinding(binding)
        return bufs[len(steps) % 2].numpy()
