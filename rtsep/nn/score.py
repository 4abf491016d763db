"""The score x -> grad_x log p_sigma(x) of a flow prior as a plain graph of aten ops, for ONNX.

`torch.onnx.export` cannot trace autograd (DESIGN.md §5), so the score is traced in two steps:
`make_fx` over `torch.func.grad` records the forward and the backward pass as
ordinary aten ops, and `aten.convolution_backward` (which has no ONNX translation) is
decomposed into the transposed convolution that gives its input gradient. The result is an
fx `GraphModule` that `torch.onnx.export(..., dynamo=True)` turns into an ONNX graph.

Graph signature (one graph serves every annealing level, because sigma is an input):

    score_graph(prior)(x, sigma) -> (score, log_prob)
      x        (B, 1, T) float32, T a multiple of `prior.cfg.squeeze`
      sigma    (B,)      float32, the noise level of each item (sigma, not log sigma: the
                         same argument `FlowPrior.score` takes, so torch and ONNX agree bit
                         for bit in how sigma enters the network)
      score    (B, 1, T) grad_x sum log p_sigma(x), what `FlowPrior.score(x, sigma)` returns (level-normalised
                         when the prior has a `level`)
      log_prob (B,)      `shape_log_prob_sum` per sample (nats)

Traced symbolically, the graph keeps B and T free (T = squeeze * frames).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.fx.experimental.proxy_tensor import make_fx

from .flow import FlowPrior

aten = torch.ops.aten

INPUT_NAMES = ("x", "sigma")
OUTPUT_NAMES = ("score", "log_prob")


def _output_padding(in_size, out_size, kernel: int, stride: int, padding: int, dilation: int):
    """The output_padding that makes a transposed convolution return exactly `in_size` samples."""
    if stride == 1:
        return 0  # a strided-by-one convolution is inverted in size without padding
    return in_size - ((out_size - 1) * stride - 2 * padding + dilation * (kernel - 1) + 1)


def conv_backward_input(grad_output: torch.Tensor, input: torch.Tensor, weight: torch.Tensor,
                        bias_sizes: Sequence[int] | None, stride: Sequence[int], padding: Sequence[int],
                        dilation: Sequence[int], transposed: bool, output_padding: Sequence[int],
                        groups: int, output_mask: Sequence[bool]):
    """`aten.convolution_backward` when only the input gradient is wanted.

    The adjoint of a convolution is the transposed convolution with the same weight, stride,
    padding, dilation and groups (the weight layout (C_out, C_in/groups, k...) is exactly what a
    transposed convolution from C_out to C_in channels expects); output_padding restores the
    samples a strided convolution dropped. The adjoint of a transposed convolution is the plain
    convolution with the same weight. Weight and bias gradients are not supported: the score is
    a gradient in x only and the weights are traced as constants.
    """
    if output_mask[1] or output_mask[2]:
        raise NotImplementedError("score graphs differentiate the input only, not the weights")
    if not output_mask[0]:
        return None, None, None
    n = weight.dim() - 2
    if transposed:
        grad_input = aten.convolution(grad_output, weight, None, stride, padding, dilation, False,
                                      [0] * n, groups)
    else:
        out_pad = [_output_padding(input.shape[2 + i], grad_output.shape[2 + i], weight.shape[2 + i],
                                   stride[i], padding[i], dilation[i]) for i in range(n)]
        grad_input = aten.convolution(grad_output, weight, None, stride, padding, dilation, True,
                                      out_pad, groups)
    return grad_input, None, None


DECOMPOSITIONS = {aten.convolution_backward.default: conv_backward_input}


class _LogProbSum(torch.nn.Module):
    """`FlowPrior.shape_log_prob_sum` as a forward, so `functional_call` can swap in detached weights."""

    def __init__(self, prior: FlowPrior) -> None:
        super().__init__()
        self.prior = prior

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        return self.prior.shape_log_prob_sum(x, sigma)


def score_function(prior: FlowPrior) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(x, sigma) -> (score, log_prob) in pure functional form; the weights are detached constants."""
    module = _LogProbSum(prior)
    state = {name: t.detach() for name, t in [*module.named_parameters(), *module.named_buffers()]}

    def total(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lp = torch.func.functional_call(module, state, (x, sigma), strict=True)
        return lp.sum(), lp

    def fn(x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        grad, lp = torch.func.grad(total, has_aux=True)(x, sigma)
        return grad, lp / x.shape[-1]

    return fn


STEP_INPUTS = ("x", "mix", "noise", "sigma", "eta", "lik", "proj")
STEP_OUTPUTS = ("x_next",)


def step_function(priors: Sequence[FlowPrior]) -> Callable[..., torch.Tensor]:
    """One Langevin step for all N sources (the formula in `rtsep.langevin`), pure functional:

        x (B, N, T), mix (B, 1, T), noise (B, N, T), sigma/eta/lik/proj (B,) -> x_next (B, N, T)

    Runs eagerly (the torch backend) and traces into one graph (the ONNX backend's step.onnx), so
    both compute exactly this. Its outputs are audio-sized, which is what the parity check sees."""
    scores = [score_function(p) for p in priors]

    def step(x, mix, noise, sigma, eta, lik, proj):
        col = lambda v: v.reshape(-1, 1, 1)  # noqa: E731
        g = torch.cat([fn(x[:, k : k + 1], sigma)[0] for k, fn in enumerate(scores)], dim=1)
        x1 = x + col(eta) * g + col(lik) * (mix - x.mean(dim=1, keepdim=True)) + noise
        return x1 + col(proj) * (mix - x1.mean(dim=1, keepdim=True))

    return step


def step_graph(priors: Sequence[FlowPrior], length: int, batch: int = 2) -> torch.fx.GraphModule:
    """Trace `step_function(priors)` symbolically (any batch, any length that is a multiple of squeeze)."""
    n, batch = len(priors), max(batch, 2)
    ex = (torch.zeros(batch, n, length), torch.zeros(batch, 1, length), torch.zeros(batch, n, length),
          *(torch.full((batch,), 0.1) for _ in range(4)))
    return _trace(step_function, priors, ex, dynamic=True)


def _trace(build: Callable, priors: Sequence[FlowPrior], example: tuple, dynamic: bool) -> torch.fx.GraphModule:
    """make_fx of `build(priors)` on `example` with the priors in eval mode (their modes restored)."""
    modes = [p.training for p in priors]
    for p in priors:
        p.eval()
    try:
        gm = make_fx(build(priors), decomposition_table=DECOMPOSITIONS,
                     tracing_mode="symbolic" if dynamic else "real", _allow_non_fake_inputs=True)(*example)
    finally:
        for p, m in zip(priors, modes):
            p.train(m)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm


class StepModule(torch.nn.Module):
    """The traced step graph behind a forward with named arguments, for torch.export."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph_module = graph

    def forward(self, x, mix, noise, sigma, eta, lik, proj) -> torch.Tensor:
        return self.graph_module(x, mix, noise, sigma, eta, lik, proj)


def score_graph(prior: FlowPrior, length: int | None = None, batch: int = 2,
                dynamic: bool = True) -> torch.fx.GraphModule:
    """Trace `prior`'s score into an fx GraphModule `(x, sigma) -> (score, log_prob)` (see module doc).

    `length` (default 64 frames) and `batch` only shape the example used for tracing; with
    `dynamic` (symbolic tracing) the graph accepts any batch and any length that is a multiple
    of `prior.cfg.squeeze`. The prior is traced in eval mode; its own mode is left unchanged.
    """
    q = prior.cfg.squeeze
    length = 64 * q if length is None else length
    if length % q:
        raise ValueError(f"length {length} is not a multiple of the prior's squeeze {q}")
    # Distinct sizes keep the symbolic tracer from identifying batch with anything else.
    batch = max(batch, 2)
    example = (torch.zeros(batch, 1, length), torch.full((batch,), 0.1))
    return _trace(lambda ps: score_function(ps[0]), [prior], example, dynamic)


class ScoreModule(torch.nn.Module):
    """The traced score graph behind a `forward(x, sigma)` with named arguments, for torch.export."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__()
        self.graph_module = graph

    def forward(self, x: torch.Tensor, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.graph_module(x, sigma)

