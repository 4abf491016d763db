"""Backends the block engine runs on: torch eager (training checkpoints) here, ONNX Runtime in onnx_backend."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .bands import band_prior_of
from .card import read_card
from .errors import BundleError
from .langevin import Step
from .nn.score import step_function


class TorchBackend:
    """Encoder + priors of a model directory, run eagerly with torch."""

    def __init__(self, model_dir: Path, threads: int | None = None, encoder: bool = True) -> None:
        """`encoder=False`: the priors alone (their chain and log-densities), for a model whose encoder
        is not trained yet (`rtsep data distill` labels its training set) or a priors-only set that
        separates with the cold chain alone."""
        from .train.encoder import load_encoder
        from .train.prior import load_prior

        if threads:
            torch.set_num_threads(threads)
        card = read_card(model_dir)
        self.encoder = load_encoder(model_dir) if encoder else None
        self.sources = tuple(self.encoder.cfg.sources if self.encoder else card.get("priors", {}))
        if not self.sources:
            raise BundleError(f"{model_dir} holds no priors: train them first with `rtsep train prior`")
        self.priors = [load_prior(model_dir, s) for s in self.sources]
        self.sample_rate = int(card["sample_rate"])
        self.band_prior = band_prior_of(card) if encoder else None
        self.stride = self.encoder.cfg.stride if self.encoder else 1
        self._step = step_function(self.priors)

    @torch.no_grad()
    def encode(self, mix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mix (B, T) -> mean, log-scale (B, N, T). Without an encoder every source holds the whole
        mixture (equal shares, since the mix is the sources' mean): the cold start of BASIS."""
        if self.encoder is None:
            mean = np.repeat(np.asarray(mix, dtype=np.float32)[:, None], len(self.sources), axis=1)
            return mean, np.zeros_like(mean)
        mean, log_scale = self.encoder(torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[:, None])
        return mean.numpy(), log_scale.numpy()

    @torch.no_grad()
    def log_probs(self, x: np.ndarray, sigma: np.ndarray) -> np.ndarray:
        """x (B, N, T), sigma (B,) -> (B, N): each prior's level-normalised log-density of its source."""
        xt, st = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)), torch.from_numpy(sigma)
        return torch.stack([p.shape_log_prob_sum(xt[:, k : k + 1], st) for k, p in enumerate(self.priors)], 1).numpy()

    def langevin(self, x: np.ndarray, mix: np.ndarray, steps: list[Step]) -> np.ndarray:
        """Run the chain (see `rtsep.langevin`) with the same step function the ONNX graph traces."""
        xt, mt = torch.from_numpy(x), torch.from_numpy(mix)
        for st in steps:
            xt = self._step(xt, mt, *(torch.from_numpy(a) for a in (st.noise, st.sigma, st.eta, st.lik, st.proj)))
        return xt.detach().numpy()
