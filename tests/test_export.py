"""ONNX export: encoder, fused Langevin step and score graphs equal torch at two lengths; metadata; unusable
dirs refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rtsep import runtime
from rtsep.bundle import Bundle
from rtsep.card import read_card, sha256, update_card
from rtsep.errors import BundleError, RtsepError
from rtsep.export import export_bundle
from rtsep.nn.encoder import Encoder, EncoderConfig
from rtsep.nn.flow import FlowPrior, PriorConfig
from rtsep.nn.score import DECOMPOSITIONS, score_graph
from rtsep.train.checkpoint import save_weights

SOURCES = ["bass", "drums"]
WINDOW = 1024
ROOT = Path(__file__).resolve().parents[1]


def tiny_prior(source: str, seed: int) -> FlowPrior:
    torch.manual_seed(seed)
    # Both channel mixings go through the exporter: flip (the first priors) and LU (Glow 1x1).
    prior = FlowPrior(PriorConfig(source=source, hidden=8, n_flows=2, layers=2, mixing="lu" if seed % 2 else "flip"))
    for coupling in prior.couplings:  # the last layer starts at zero (identity): make it do something
        torch.nn.init.normal_(coupling.net.end.weight, std=0.1)
        torch.nn.init.normal_(coupling.net.end.bias, std=0.1)
    prior.train()
    with torch.no_grad():
        prior(0.2 * torch.randn(4, 1, 2048), torch.full((4,), 0.05))  # ActNorm data init
    return prior.eval()


def tiny_encoder(seed: int) -> Encoder:
    torch.manual_seed(seed)
    return Encoder(EncoderConfig(sources=SOURCES, filters=16, bottleneck=8, hidden=16, blocks=3)).eval()


def write_model(model_dir: Path) -> tuple[Encoder, dict[str, FlowPrior]]:
    priors = {s: tiny_prior(s, i) for i, s in enumerate(SOURCES)}
    for s, p in priors.items():
        save_weights(model_dir / "priors" / f"{s}.pt", p)
        update_card(model_dir, "priors", s, value={"config": p.cfg.to_dict()})
    encoder = tiny_encoder(7)
    save_weights(model_dir / "encoder.pt", encoder)
    update_card(model_dir, "encoder", value={"config": encoder.cfg.to_dict()})
    return encoder, priors


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    model_dir = tmp_path_factory.mktemp("model")
    encoder, priors = write_model(model_dir)
    manifest = export_bundle(model_dir, window=WINDOW, audio=[0.3 * np.sin(np.arange(3000) / 7.0)], scores=True)
    return model_dir, manifest, encoder, priors


def test_manifest_and_card(bundle):
    model_dir, manifest, _, _ = bundle
    onnx_dir = model_dir / "onnx"
    names = {"encoder.onnx", "step.onnx", "score_bass.onnx", "score_drums.onnx"}
    assert set(manifest["graphs"]) == names
    on_disk = json.loads((onnx_dir / "manifest.json").read_text())
    assert on_disk["window"] == WINDOW and set(on_disk["graphs"]) == names
    for name, g in on_disk["graphs"].items():
        assert len(g["sha256"]) == 64
        assert set(g["max_abs_error"]) == {f"random_{WINDOW}", f"random_{WINDOW // 2}", "audio0"}
        bound = 1e-4 if name in ("encoder.onnx", "step.onnx") else 1e-4 * max(1, g["max_abs_output"])
        assert g["worst_error"] < bound, name
    card = read_card(model_dir)["onnx"]
    assert card["dir"] == "onnx" and card["window"] == WINDOW
    assert card["graphs"] == {n: g["sha256"] for n, g in on_disk["graphs"].items()}
    assert "priors" in read_card(model_dir)  # other sections kept
    # export records what it exported from: every weight's sha256 and the ordered sources, and the
    # bundle it leaves passes the load-time check
    full = read_card(model_dir)
    assert full["weights"] == {n: sha256(model_dir / n) for n in ("encoder.pt", "priors/bass.pt", "priors/drums.pt")}
    assert full["sources"] == SOURCES
    loaded = Bundle.load(model_dir)
    assert loaded.has_onnx and loaded.sources == tuple(SOURCES) and set(loaded.graphs) == names


def test_metadata_embedded(bundle):
    model_dir, _, _, _ = bundle
    for name in ["encoder.onnx", "score_bass.onnx"]:
        sess = runtime.session(model_dir / "onnx" / name, provider="cpu", threads=1)
        meta = runtime.metadata(sess)
        assert meta["sample_rate"] == 16000
        assert meta["sources"] == SOURCES
        assert meta["window"] == WINDOW
        assert meta["sigmas"]["bass"] == PriorConfig(source="bass").sigmas
        assert meta["rtsep_version"] == __import__("rtsep").__version__
    assert meta["graph"] == "score" and meta["source"] == "bass"


def assert_score_close(got: np.ndarray, want: np.ndarray) -> None:
    """Equal within 1e-4 * max(1, max |want|), except where float32 rounding flips a ReLU at a
    kink (see `rtsep.export.check_score`): such a flip is local, so allow it in < 2% of samples."""
    bad = np.abs(got - want) > 1e-4 * max(1.0, np.abs(want).max())
    assert bad.mean() < 0.02, f"{bad.sum()} of {bad.size} samples differ"


@pytest.mark.parametrize("length,batch", [(WINDOW, 3), (WINDOW // 2 + 16 * 5, 1)])
def test_score_parity(bundle, length, batch):
    model_dir, _, _, priors = bundle
    rng = np.random.default_rng(length)
    for source, prior in priors.items():
        sess = runtime.session(model_dir / "onnx" / f"score_{source}.onnx", provider="cpu", threads=1)
        assert [a.name for a in sess.get_inputs()] == ["x", "sigma"]
        assert [a.name for a in sess.get_outputs()] == ["score", "log_prob"]
        x = (0.2 * rng.standard_normal((batch, 1, length))).astype(np.float32)
        sigma = np.exp(rng.uniform(np.log(0.005), np.log(0.5), batch)).astype(np.float32)
        score, log_prob = sess.run(None, {"x": x, "sigma": sigma})
        xt, st = torch.from_numpy(x), torch.from_numpy(sigma)
        want = prior.score(xt, st).numpy()
        assert score.shape == (batch, 1, length) and log_prob.shape == (batch,)
        assert np.abs(want).max() > 1.0  # a score that is not trivially zero
        assert_score_close(score, want)
        with torch.no_grad():
            np.testing.assert_allclose(log_prob, prior.log_prob(xt, st).numpy(), rtol=0, atol=1e-4)


@pytest.mark.parametrize("length,batch", [(WINDOW, 2), (WINDOW * 2 + 16 * 3, 1)])
def test_encoder_parity(bundle, length, batch):
    model_dir, _, encoder, _ = bundle
    sess = runtime.session(model_dir / "onnx" / "encoder.onnx", provider="cpu", threads=1)
    mix = (0.3 * np.random.default_rng(1).standard_normal((batch, 1, length))).astype(np.float32)
    mean, log_scale = sess.run(["mean", "log_scale"], {"mix": mix})
    with torch.no_grad():
        want_mean, want_ls = encoder(torch.from_numpy(mix))
    assert mean.shape == (batch, len(SOURCES), length)
    np.testing.assert_allclose(mean, want_mean.numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(log_scale, want_ls.numpy(), rtol=0, atol=1e-4)


def test_conv_backward_decomposition_groups_stride():
    """The input gradient of strided, dilated, grouped convolutions (and transposed ones)."""
    from torch.fx.experimental.proxy_tensor import make_fx

    torch.manual_seed(0)
    for cin, cout, k, stride, pad, dil, groups, length in [(4, 6, 3, 2, 1, 2, 2, 37), (4, 4, 5, 3, 0, 1, 4, 50),
                                                           (2, 6, 4, 2, 3, 1, 1, 41)]:
        conv = torch.nn.Conv1d(cin, cout, k, stride, pad, dil, groups).requires_grad_(False)
        tconv = torch.nn.ConvTranspose1d(cout, cin, k, stride, pad, dilation=dil, groups=groups).requires_grad_(False)

        def f(x):
            return (torch.tanh(tconv(torch.sin(conv(x)))) ** 2).sum()

        gm = make_fx(torch.func.grad(f), decomposition_table=DECOMPOSITIONS, tracing_mode="symbolic",
                     _allow_non_fake_inputs=True)(torch.randn(5, cin, length))  # batch unlike any channel count
        assert "convolution_backward" not in gm.code
        for n in (length, length + 1, length + 5):
            x = torch.randn(3, cin, n)
            torch.testing.assert_close(gm(x), torch.func.grad(f)(x), rtol=1e-5, atol=1e-6)


def test_score_graph_is_the_score():
    prior = tiny_prior("a", 3)
    gm = score_graph(prior, length=512)
    x, sigma = 0.2 * torch.randn(2, 1, 768), torch.tensor([0.3, 0.01])
    score, log_prob = gm(x, sigma)
    torch.testing.assert_close(score, prior.score(x, sigma))
    torch.testing.assert_close(log_prob, prior.log_prob(x, sigma).detach())
    assert not prior.training


def test_check_catches_a_wrong_graph(bundle):
    """The parity check is not vacuous: the bass graph checked against the drums prior fails."""
    from rtsep.export import check_score

    model_dir, _, _, priors = bundle
    sess = runtime.session(model_dir / "onnx" / "score_bass.onnx", provider="cpu", warmup=False)
    clean = {"r": (0.1 * np.random.default_rng(0).standard_normal((1, 1, WINDOW))).astype(np.float32)}
    rng = np.random.default_rng(0)
    assert check_score(sess, priors["bass"], clean, rng)["r"]["ok"]
    res = check_score(sess, priors["drums"], clean, rng)["r"]
    assert not res["ok"] and res["error"] > 1e-2


def step_feed(n: int, length: int, batch: int, seed: int = 0) -> dict[str, np.ndarray]:
    from rtsep.langevin import LangevinConfig, schedule

    rng = np.random.default_rng(seed)
    x = (0.2 * rng.standard_normal((batch, n, length))).astype(np.float32)
    st = schedule(LangevinConfig(steps=4), x.shape, rng)[1]
    return {"x": x, "mix": x.mean(axis=1, keepdims=True), "noise": st.noise, "sigma": st.sigma, "eta": st.eta,
            "lik": st.lik, "proj": st.proj}


@pytest.mark.parametrize("length,batch", [(WINDOW, 2), (WINDOW // 4, 1), (3 * WINDOW, 3)])
def test_step_parity_and_consistency(bundle, length, batch):
    from rtsep.nn.score import STEP_INPUTS, step_function

    model_dir, _, _, priors = bundle
    sess = runtime.session(model_dir / "onnx" / "step.onnx", provider="cpu", threads=1)
    feed = step_feed(len(SOURCES), length, batch)
    (got,) = sess.run(None, feed)
    want = step_function(list(priors.values()))(*(torch.from_numpy(feed[k]) for k in STEP_INPUTS)).numpy()
    assert np.abs(got - want).max() < 1e-4
    assert np.abs(got.mean(axis=1, keepdims=True) - feed["mix"]).max() < 1e-5  # proj = 1: exact mixture
    assert np.abs(got - feed["x"]).max() > 1e-3  # the step moved


def test_io_binding_chain_equals_plain_runs(bundle):
    """The IO-bound chain (x stays in ORT buffers between steps; on CUDA, on the GPU) == step by step."""
    from rtsep.langevin import LangevinConfig, schedule
    from rtsep.onnx_backend import OnnxBackend

    model_dir, _, _, _ = bundle
    plain = OnnxBackend(model_dir, provider="cpu", threads=1, io_binding=False)
    bound = OnnxBackend(model_dir, provider="cpu", threads=1, io_binding=True)
    feed = step_feed(len(SOURCES), WINDOW, 2)
    steps = schedule(LangevinConfig(steps=4), feed["x"].shape, np.random.default_rng(1))
    a = plain.langevin(feed["x"], feed["mix"], steps)
    b = bound.langevin(feed["x"], feed["mix"], steps)
    assert len(steps) == 5 and np.array_equal(a, b)


def test_step_check_catches_swapped_priors(bundle):
    from rtsep.export import check_step
    from rtsep.langevin import LangevinConfig

    model_dir, _, _, priors = bundle
    sess = runtime.session(model_dir / "onnx" / "step.onnx", provider="cpu", warmup=False)
    clean = {"r": (0.1 * np.random.default_rng(0).standard_normal((1, 1, WINDOW))).astype(np.float32)}
    cfg = LangevinConfig(lr=5.0)  # larger steps than the default, so the priors' difference shows
    assert check_step(sess, [priors["bass"], priors["drums"]], clean, np.random.default_rng(0), cfg)["r"]["ok"]
    res = check_step(sess, [priors["drums"], priors["bass"]], clean, np.random.default_rng(0), cfg)["r"]
    assert not res["ok"]


def test_mismatched_weights_raise(bundle, tmp_path):
    model_dir, _, _, _ = bundle
    bad = tmp_path / "bad"
    shutil.copytree(model_dir, bad)
    cfg = PriorConfig(source="bass", hidden=16, n_flows=2, layers=2)  # weights were saved with hidden 8
    update_card(bad, "priors", "bass", value={"config": cfg.to_dict()})
    with pytest.raises(BundleError, match="do not match"):
        export_bundle(bad, window=WINDOW)
    (bad / "priors" / "drums.pt").unlink()
    update_card(bad, "priors", "bass", value={"config": PriorConfig(source="bass", hidden=8, n_flows=2,
                                                                    layers=2).to_dict()})
    with pytest.raises(BundleError, match="missing weights"):
        export_bundle(bad, window=WINDOW)
    with pytest.raises(BundleError, match="not a model directory"):
        export_bundle(tmp_path / "nothing", window=WINDOW)


def test_tool_reports_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "tools" / "export_onnx.py"), str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == BundleError.exit_code
    assert proc.stderr.strip().count("\n") == 0 and "no card.json" in proc.stderr


def test_providers_cpu_only_machine():
    assert runtime.providers("cpu") == ["CPUExecutionProvider"]
    assert runtime.providers("auto")[-1] == "CPUExecutionProvider"
    with pytest.raises(RtsepError):
        runtime.providers("tpu")
    ok, _ = runtime.cuda_status()
    if not ok:
        assert runtime.providers("auto") == ["CPUExecutionProvider"]
        with pytest.raises(RtsepError, match="CUDA"):
            runtime.providers("cuda")


def test_backends_agree_on_the_log_densities_relabelling_uses(bundle, tmp_path):
    from rtsep.backends import TorchBackend
    from rtsep.onnx_backend import OnnxBackend

    model_dir = tmp_path / "model"
    shutil.copytree(bundle[0], model_dir)
    update_card(model_dir, "sample_rate", value=16000)  # the torch backend reads it; export does not need it
    x = (0.2 * np.random.default_rng(4).standard_normal((3, len(SOURCES), WINDOW))).astype(np.float32)
    sigma = np.array([0.01, 0.05, 0.2], np.float32)
    want = TorchBackend(model_dir, threads=1).log_probs(x, sigma)
    got = OnnxBackend(model_dir, provider="cpu", threads=1).log_probs(x, sigma)
    assert want.shape == (3, len(SOURCES)) and np.abs(want).max() > 10.0
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=0.05 * WINDOW * 1e-4)
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    for f in (bare / "onnx").glob("score_*.onnx"):  # as exported without --scores: files and card entries gone
        f.unlink()
    graphs = read_card(bare)["onnx"]["graphs"]
    update_card(bare, "onnx", "graphs", value={n: h for n, h in graphs.items() if not n.startswith("score_")})
    with pytest.raises(BundleError, match="--scores"):
        OnnxBackend(bare, provider="cpu", threads=1).log_probs(x, sigma)
