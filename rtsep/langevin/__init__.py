"""Warm-started annealed Langevin refinement under the priors and the mixing constraint.

Per level sigma (geometric from sigma_start to sigma_end, one step each):
    s_k <- s_k + eta * (score_k(s_k; sigma) + (m - mean_j s_j) / (N sigma^2)) + sqrt(2 eta) * T * eps
with eta = lr * sigma^2 (BASIS, gamma = sigma). The likelihood term has a minus inside the norm's
gradient: it pulls the estimate TOWARD the mixture (the seed formula's "+" and the thesis's zeroed
weight pulled nowhere). Optionally every step is projected onto mean_k s_k == m exactly, and the
chain ends with one Tweedie denoising step at sigma_end.

The schedule (levels, step sizes, noise) is drawn here in numpy; a backend runs the steps, each
one call of `step` (torch eager, or one fused ONNX graph for all sources that can stay on the GPU
between steps). Every step has the same form, so one graph serves the whole chain:
    x1 = x + eta * score(x; sigma) + lik * (m - mean_k x) + noise
    x' = x1 + proj * (m - mean_k x1)

Modules: `config` (settings, `Step`, function types), `schedule` (the signal-space schedule and step
runners), `labels` (relabelling), `masks` (the mask-logit chain and its STFT), `moves` (swap and band
moves), `chain` (`refine`, which a block calls). Each imports only those listed before it.
"""

from __future__ import annotations

from .chain import refine, refine_masks
from .config import SPACES, LangevinConfig, LogProbsFn, ScoreFn, ScoresFn, Step, StepFn
from .schedule import numpy_step, project, run_steps, schedule, scores_from_steps

__all__ = ["SPACES", "LangevinConfig", "LogProbsFn", "ScoreFn", "ScoresFn", "Step", "StepFn", "numpy_step", "project",
           "refine", "refine_masks", "run_steps", "schedule", "scores_from_steps"]
