"""Backends the block engine runs on: torch eager (the comparison backend) here, ONNX Runtime in onnx_backend.

This module imports torch; the runtime path (`rtsep file` / `rtsep live` on ONNX Runtime) never imports it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from .bands import band_prior_of
from .bundle import Bundle
from .langevin import Step
from .nn.score import step_function
from .nn.tfprior import mask_grad_function


class TorchBackend:
    """Encoder + priors of a bundle, run eagerly with torch."""

    def __init__(self, bundle: Bundle | Path | str, threads: int | None = None, encoder: bool = True) -> None:
        """`encoder=False`: the priors alone (their chain and log-densities), for a model whose encoder
        is not trained yet (`rtsep data distill` labels its training set) or a priors-only set that
        separates with the cold chain alone. `threads`: torch's intra-op threads while this backend
        computes (set around each call and restored, so loading a backend changes no global state)."""
        bundle = Bundle.load(bundle)
        self.bundle = bundle
        self.threads = threads
        encoder = encoder and bundle.has_encoder
        self.sources = bundle.sources
        self.sample_rate = bundle.sample_rate
        with self._threads():
            self.encoder = bundle.torch_encoder() if encoder else None
            self.priors = bundle.torch_priors()
        self.band_prior = band_prior_of(bundle.card) if encoder else None
        self.stride = self.encoder.cfg.stride if self.encoder else 1
        self._step = step_function(self.priors)
        with self._threads():
            self.tf_priors = bundle.torch_tf_priors()
        self._tf_grad = mask_grad_function(self.tf_priors) if self.tf_priors else None
        self.tf_grad = self._run_tf_grad if self.tf_priors else None

    @contextlib.contextmanager
    def _threads(self) -> Iterator[None]:
        if not self.threads:
            yield
            return
        before = torch.get_num_threads()
        if before != self.threads:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            if before != self.threads:
                torch.set_num_threads(before)

    @torch.no_grad()
    def encode(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mix (B, T) -> mean, log-scale (B, N, T). Without an encoder every source holds the whole
        mixture (equal shares, since the mix is the sources' mean): the cold start of BASIS."""
        if self.encoder is None:
            mean = np.repeat(np.asarray(mix, dtype=np.float32)[:, None], len(self.sources), axis=1)
            return mean, np.zeros_like(mean)
        with self._threads():
            mean, log_scale = self.encoder(torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[:, None])
        return mean.numpy(), log_scale.numpy()

    @torch.no_grad()
    def log_probs(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """x (B, N, T), sigma (B,) -> (B, N): each prior's level-normalised log-density of its source."""
        xt, st = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(sigma)
        with self._threads():
            lp = torch.stack([p.shape_log_prob_sum(xt[:, k : k + 1], st) for k, p in enumerate(self.priors)], 1)
        return lp.numpy()

    def _run_tf_grad(self, theta: np.ndarray, mix_power: np.ndarray, sigma: np.ndarray, weight: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """The TF chain's gradient (see `rtsep.langevin.tfchain.TFGradFn`), the function tf_grad.onnx traces."""
        with self._threads():
            g, lp = self._tf_grad(*(torch.from_numpy(np.ascontiguousarray(a))
                                    for a in (theta, mix_power, sigma, weight)))
        return g.numpy(), lp.numpy()

    def langevin(self, x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        """Run the chain (see `rtsep.langevin`) with the same step function the ONNX graph traces."""
        xt, mt = torch.from_numpy(x), torch.from_numpy(mix)
        with self._threads():
            for st in steps:
                xt = self._step(xt, mt, *(torch.from_numpy(a) for a in (st.noise, st.sigma, st.eta, st.lik, st.proj)))
        return xt.detach().numpy()
