"""The block engine's ONNX Runtime backend: exported encoder and Langevin step graphs, no torch imported.

On CUDA the Langevin chain runs with IO binding: x and the mixture stay on the GPU between steps
(two device buffers swap as input and output); only each step's noise and scalars go up, and the
result comes down once per block.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .bands import band_prior_of
from .bundle import ONNX_ENCODER, ONNX_STEP, ONNX_TF_GRAD, Bundle
from .errors import BundleError
from .langevin import Step
from .runtime import CUDA, metadata, session
from .stft_encoder import encoder_runner

STEP_FEEDS = ("noise", "sigma", "eta", "lik", "proj")


class OnnxBackend:
    """Sessions for a bundle's onnx/{encoder,step}.onnx, made by `rtsep export`.

    A priors-only bundle (exported without an encoder) has no encoder.onnx: every source then starts
    as the whole mixture (BASIS's cold start), as on the torch backend."""

    def __init__(self, bundle: Bundle | Path | str, provider: str = "auto", threads: int | None = None,
                 io_binding: bool | None = None) -> None:
        bundle = Bundle.load(bundle)
        self.bundle = bundle
        if not bundle.has_onnx:
            raise BundleError(f"{bundle.path} has no ONNX graphs: run `rtsep export {bundle.path}` first")
        self.sources, self.sample_rate = bundle.sources, bundle.sample_rate
        self.encoder = session(bundle.graph(ONNX_ENCODER), provider, threads) if bundle.has_encoder else None
        self.step = session(bundle.graph(ONNX_STEP), provider, threads)
        for sess, name in ((self.encoder, ONNX_ENCODER), (self.step, ONNX_STEP)):
            meta = metadata(sess) if sess is not None else None
            if meta is None:
                continue
            if list(meta.get("sources", [])) != list(self.sources):
                raise BundleError(f"{bundle.onnx_dir / name} was exported for sources {meta.get('sources')}, "
                                  f"the card says {list(self.sources)}")
            if int(meta.get("sample_rate", self.sample_rate)) != self.sample_rate:
                raise BundleError(f"{bundle.onnx_dir / name} was exported at {meta['sample_rate']} Hz, "
                                  f"the card says {self.sample_rate} Hz")
        self.stride = int(metadata(self.encoder).get("stride", 16)) if self.encoder is not None else 1
        self._encode = encoder_runner(self.encoder) if self.encoder is not None else None
        self.band_prior = band_prior_of(bundle.card) if bundle.has_encoder else None
        self._onnx_dir, self._provider_choice, self._threads = bundle.onnx_dir, provider, threads
        self._scores: list | None = None  # per-source score graphs, loaded when relabelling first asks
        self._tf = session(bundle.graph(ONNX_TF_GRAD), provider, threads) if ONNX_TF_GRAD in bundle.graphs else None
        self.tf_grad = self._run_tf_grad if self._tf is not None else None
        self.provider = self.step.get_providers()[0]
        self.io_binding = self.provider == CUDA if io_binding is None else io_binding
        self._device = ("cuda", 0) if self.provider == CUDA else ("cpu", 0)

    def encode(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mix (B, T) -> mean, log-scale (B, N, T); equal shares without an encoder."""
        if self.encoder is None:
            mean = np.repeat(np.asarray(mix, dtype=np.float32)[:, None], len(self.sources), axis=1)
            return mean, np.zeros_like(mean)
        return self._encode(mix)

    def log_probs(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """x (B, N, T), sigma (B,) -> (B, N) log-densities, from the score_<source>.onnx graphs."""
        if self._scores is None:
            missing = [s for s in self.sources if f"score_{s}.onnx" not in self.bundle.graphs]
            if missing:
                raise BundleError(f"{self._onnx_dir} has no score_{missing[0]}.onnx, which relabelling needs: "
                                  "export with --scores")
            self._scores = [session(self.bundle.graph(f"score_{s}.onnx"), self._provider_choice, self._threads)
                            for s in self.sources]
        t = x.shape[-1]
        return np.stack([sess.run(["log_prob"], {"x": np.ascontiguousarray(x[:, k : k + 1], dtype=np.float32),
                                                 "sigma": sigma.astype(np.float32)})[0] * t
                         for k, sess in enumerate(self._scores)], axis=1)

    def _run_tf_grad(self, theta: np.ndarray, mix_power: np.ndarray, sigma: np.ndarray, weight: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The TF chain's gradient from tf_grad.onnx (see `rtsep.langevin.tfchain.TFGradFn`)."""
        feeds = {"theta": theta, "mix_power": mix_power, "sigma": sigma, "weight": weight}
        g, lp = self._tf.run(None, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in feeds.items()})
        return g, lp

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
