"""TF flow priors (rtsep.nn.tfprior), their chain (rtsep.langevin.tfchain), its trainer and its ONNX graph."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from rtsep.langevin import LangevinConfig
from rtsep.langevin.masks import NumpySTFT
from rtsep.langevin.tfchain import tf_chain
from rtsep.nn.tfprior import TFPrior, TFPriorConfig, band_index, mask_grad_function, mask_log_prob, stft_power
from rtsep.train.tfprior import TFPriorTraining, train_tf_prior

from conftest import TINY_TF as TINY


def perturbed(cfg: TFPriorConfig, seed: int = 0) -> TFPrior:
    """An untrained prior with non-zero couplings (a fresh one is an identity flow)."""
    torch.manual_seed(seed)
    prior = TFPrior(cfg)
    with torch.no_grad():
        for p in prior.parameters():
            p.add_(0.1 * torch.randn_like(p))
        prior.mean.normal_()
        prior.std.uniform_(0.5, 2.0)
    return prior.eval()


def test_band_index_partitions_every_bin():
    index = band_index(1024, 24, 80)
    assert index.shape == (513,) and index[0] == 0 and index[-1] == 79
    assert (np.diff(index) >= 0).all() and set(index) == set(range(80))
    with pytest.raises(ValueError):
        band_index(1024, 24, 600)


def test_log_det_matches_brute_force_jacobian():
    """log p is exact: the autoregressive flow's summed log-dets equal log|det dz/du| over a whole
    sequence (block-triangular through the context), computed by brute force."""
    cfg = TFPriorConfig(**TINY)
    prior = perturbed(cfg).double()
    frames, d = 3, cfg.bands
    u = torch.randn(1, frames, d, dtype=torch.float64)
    sigma = torch.full((1,), 0.2, dtype=torch.float64)

    def z_of(flat: torch.Tensor) -> torch.Tensor:
        return prior.transform(flat.reshape(1, frames, d), sigma)[0].reshape(-1)

    jac = torch.autograd.functional.jacobian(z_of, u.reshape(-1))
    sign, logabs = torch.linalg.slogdet(jac)
    z, logdet = prior.transform(u, sigma)
    assert sign.item() > 0
    assert logdet.sum().item() == pytest.approx(logabs.item(), abs=1e-8)
    # and log_prob is log N(z) + that, as a density over the log band energies
    lp = prior.log_prob(u, sigma).sum()
    want = (-0.5 * (z**2).sum() - 0.5 * frames * d * np.log(2 * np.pi) + logabs - frames * torch.log(prior.std).sum())
    assert lp.item() == pytest.approx(want.item(), abs=1e-8)


def test_mask_gradient_matches_autograd_and_finite_differences():
    cfg = TFPriorConfig(**TINY)
    priors = [perturbed(cfg, seed=k).double() for k in range(3)]
    rng = np.random.default_rng(0)
    theta = torch.from_numpy(rng.standard_normal((2, 3, 5, 513)))
    mix_power = torch.from_numpy(rng.uniform(0, 4, (2, 5, 513)))
    sigma, weight = torch.tensor([0.3, 0.05], dtype=torch.float64), torch.tensor([1.0, 0.5, 2.0], dtype=torch.float64)
    g, lp = mask_grad_function(priors)(theta, mix_power, sigma, weight)
    t = theta.clone().requires_grad_()
    mask_log_prob(priors, t, mix_power, sigma, weight).sum().backward()
    assert torch.allclose(g, t.grad, atol=1e-10)
    for idx in [(0, 0, 0, 3), (1, 2, 4, 100), (0, 1, 2, 500)]:
        e = torch.zeros_like(theta)
        e[idx] = 1e-6
        f = lambda th: mask_log_prob(priors, th, mix_power, sigma, weight).sum().item()  # noqa: E731
        assert (f(theta + e) - f(theta - e)) / 2e-6 == pytest.approx(g[idx].item(), rel=1e-4, abs=1e-6)


def test_chain_with_zero_steps_is_the_warm_start_and_always_mixes():
    """lr 0: the chain returns the warm start's STFT-share estimate; any lr: mean over sources == mix."""
    rng = np.random.default_rng(1)
    stft = NumpySTFT(1024, 256)
    x0 = (0.1 * rng.standard_normal((2, 3, 256 * 12))).astype(np.float32)
    mix = x0.mean(axis=1)
    cfg = TFPriorConfig(**TINY)
    priors = [perturbed(cfg, seed=k) for k in range(3)]
    fn = mask_grad_function(priors)

    def grad(*a):
        g, lp = fn(*(torch.from_numpy(v) for v in a))
        return g.numpy(), lp.numpy()

    base = LangevinConfig(steps=2, space="mask", prior="tf", temperature=0.0, tf_sigmas=(0.5, 0.1), tf_lrs=(0.0, 0.0))
    still = tf_chain(x0, mix, grad, base, rng, stft)
    share = np.abs(stft.forward(x0.astype(np.float64)))
    spec = stft.forward(mix.astype(np.float64))
    theta = np.log(share / share.sum(axis=1, keepdims=True) + 1e-3)
    p = np.exp(theta) / np.exp(theta).sum(axis=1, keepdims=True)
    assert np.allclose(still, stft.inverse(3 * p * spec[:, None]), atol=1e-5)
    moved = tf_chain(x0, mix, grad, replace(base, tf_lrs=(0.5, 0.5)), rng, stft)
    assert np.abs(moved - still).max() > 1e-3
    assert np.allclose(moved.mean(axis=1), mix, atol=1e-5)


@pytest.mark.parametrize("per_source", [False, True])
def test_trainer_chain_matches_the_runtime_chain(per_source):
    """The torch chain `rtsep train chain` learns through is the numpy chain the engine runs (step sizes one
    per step, or one per step and source)."""
    from rtsep.train.chain import Chain

    cfg = TFPriorConfig(**TINY)
    priors = [perturbed(cfg, seed=k) for k in range(2)]
    chain = Chain(priors, 3, 1024, 256, per_source=per_source)
    with torch.no_grad():
        chain.raw_lr.copy_(torch.tensor([[0.3, 0.1], [0.2, 0.4], [0.3, 0.0]] if per_source else [[0.3]] * 3))
        chain.log_weight.copy_(torch.tensor([0.2, -0.3]))
    sigmas, lrs, weight = (v.detach().double().numpy() for v in chain.schedule())
    lrs = [tuple(r) for r in lrs] if per_source else lrs[:, 0]
    rng = np.random.default_rng(2)
    x0 = (0.1 * rng.standard_normal((1, 2, 256 * 10))).astype(np.float32)
    mix = x0.mean(axis=1)
    want = chain(torch.from_numpy(x0), torch.from_numpy(mix)).detach().numpy()
    fn = mask_grad_function(priors)

    def grad(*a):
        g, lp = fn(*(torch.from_numpy(v) for v in a))
        return g.numpy(), lp.numpy()

    lcfg = LangevinConfig(steps=3, space="mask", prior="tf", temperature=0.0, tf_sigmas=tuple(sigmas),
                          tf_lrs=tuple(lrs), tf_weights=tuple(weight))
    got = tf_chain(x0, mix, grad, lcfg, rng, NumpySTFT(1024, 256))
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()


def test_tiny_tf_priors_prefer_their_own_source(tiny_tf_priors, toy_data):
    from rtsep.prior_eval import evaluate_tf_priors

    res = evaluate_tf_priors(tiny_tf_priors, toy_data, clips=16, frames=12, sigmas=[0.3, 0.1])
    assert res["discriminative"], res["loglik"]
    assert min(min(w.values()) for w in res["own_prior_wins"]) >= 0.75


def test_tf_prior_training_resumes_to_the_same_weights(toy_data, tmp_path, monkeypatch):
    """A run stopped by its time budget and resumed ends where an uninterrupted run does."""
    import types

    import rtsep.train.tfprior as module

    cfg = TFPriorConfig(**TINY)
    a, b = tmp_path / "a", tmp_path / "b"
    tr = TFPriorTraining(steps=20, batch=4, frames=8, checkpoint_every=10)
    train_tf_prior("sine", toy_data, a, cfg, tr, show=False)
    clock = iter(range(10**6))  # a fake clock: one second per reading, so `minutes` stops mid-run
    monkeypatch.setattr(module, "time", types.SimpleNamespace(monotonic=lambda: float(next(clock))))
    first = train_tf_prior("sine", toy_data, b, cfg, tr, show=False, minutes=8 / 60)
    assert 0 < first["training"]["steps_done"] < 20
    monkeypatch.undo()
    train_tf_prior("sine", toy_data, b, cfg, tr, show=False)
    wa, wb = (torch.load(d / "tf_priors" / "sine.pt", weights_only=True) for d in (a, b))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_stft_power_is_the_numpy_frame():
    x = np.random.default_rng(3).standard_normal((2, 256 * 6))
    want = np.abs(NumpySTFT(1024, 256).forward(x)) ** 2
    assert np.allclose(stft_power(torch.from_numpy(x), 1024, 256).numpy(), want, rtol=1e-9, atol=1e-9)


@pytest.fixture(scope="module")
def tf_bundle(tmp_path_factory):
    """A complete random model with TF priors and a TF chain, exported to ONNX."""
    from conftest import write_random_model

    from rtsep.card import update_card
    from rtsep.export import export_bundle
    from rtsep.train.checkpoint import save_weights

    model = write_random_model(tmp_path_factory.mktemp("tf-bundle"), sources=("a", "b"))
    for k, s in enumerate(("a", "b")):
        cfg = TFPriorConfig(seed=k, **TINY)
        save_weights(model / "tf_priors" / f"{s}.pt", perturbed(cfg, seed=k))
        update_card(model, "tf_priors", s, value={"config": cfg.to_dict()})
    update_card(model, "langevin", value={"steps": 2, "space": "mask", "prior": "tf", "temperature": 0.0,
                                          "tf_sigmas": [0.4, 0.1], "tf_lrs": [0.3, 0.2], "tf_weights": [1.0, 0.8]})
    manifest = export_bundle(model, window=4096)
    return model, manifest


def test_tf_grad_graph_matches_torch(tf_bundle):
    from rtsep.backends import TorchBackend
    from rtsep.onnx_backend import OnnxBackend

    model, manifest = tf_bundle
    assert manifest["graphs"]["tf_grad.onnx"]["worst_error"] < 1e-4 * max(1, manifest["graphs"]["tf_grad.onnx"]
                                                                           ["max_abs_output"])
    rng = np.random.default_rng(4)
    feed = (rng.standard_normal((3, 2, 17, 513)).astype(np.float32), rng.uniform(0, 3, (3, 17, 513)).astype(np.float32),
            np.array([0.5, 0.2, 0.05], np.float32), np.array([1.0, 0.7], np.float32))
    g_t, lp_t = TorchBackend(model).tf_grad(*feed)
    g_o, lp_o = OnnxBackend(model, provider="cpu").tf_grad(*feed)
    assert np.abs(g_o - g_t).max() < 1e-4 * max(1.0, np.abs(g_t).max())
    assert np.abs(lp_o - lp_t).max() < 1e-4 * max(1.0, np.abs(lp_t).max())


def test_separator_runs_the_tf_chain_on_both_backends(tf_bundle):
    """The card's TF chain runs in `rtsep file`'s Separator, ONNX equal to torch, and changes the encoder's
    estimate while the stems still sum to the input."""
    from rtsep.separator import Separator

    model, _ = tf_bundle
    audio = (0.2 * np.random.default_rng(5).standard_normal((1, 40000))).astype(np.float32)
    on = Separator.load(model, backend="onnx").separate(audio, 16000)
    torch_stems = Separator.load(model, backend="torch").separate(audio, 16000)
    off = Separator.load(model, backend="onnx", steps=0).separate(audio, 16000)
    assert np.abs(on - torch_stems).max() < 1e-3
    assert np.abs(on - off).max() > 1e-3
    assert np.allclose(on.sum(axis=0), audio, atol=1e-5)


def test_a_tf_chain_without_tf_priors_is_refused(tmp_path):
    from conftest import write_random_model

    from rtsep.bundle import Bundle
    from rtsep.card import update_card
    from rtsep.errors import BundleError

    model = write_random_model(tmp_path / "m")
    update_card(model, "langevin", value={"steps": 2, "space": "mask", "prior": "tf"})
    with pytest.raises(BundleError, match="TF priors"):
        Bundle.load(model)


def test_per_source_step_sizes_are_validated_and_broadcast():
    """A step size per source is a row per step; mixing rows and numbers is refused in one line."""
    from rtsep.errors import ConfigError
    from rtsep.langevin.tfchain import tf_schedule

    cfg = LangevinConfig(steps=2, space="mask", prior="tf", tf_sigmas=(0.5, 0.1), tf_lrs=([0.3, 0.1], [0.2, 0.0]))
    assert tf_schedule(cfg, 2)[1].tolist() == [[0.3, 0.1], [0.2, 0.0]]
    shared = replace(cfg, tf_lrs=(0.3, 0.2))
    assert tf_schedule(shared, 3)[1].tolist() == [[0.3] * 3, [0.2] * 3]
    with pytest.raises(ConfigError, match="tf_lrs"):
        replace(cfg, tf_lrs=([0.3, 0.1], 0.2))
    with pytest.raises(ConfigError, match="2 step sizes per step for 3 sources"):
        tf_schedule(cfg, 3)
