"""`rtsep data distill` and `train encoder --objective distill`: the priors' chain labels stem-free
mixtures (exactly consistent with them, the same however the work is sharded or resumed), and the
encoder objective that regresses those labels refuses data that would mislabel it."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from rtsep.card import read_card
from rtsep.cli import app
from rtsep.datasets.folder import SourceSet
from rtsep.distill import CHAIN, DistillMixtures, clip_paths, make_distill_set, training_excerpts
from rtsep.errors import ConfigError, DataError
from rtsep.nn.encoder import EncoderConfig
from rtsep.bundle import priors_fingerprint
from rtsep.train.encoder import EncoderTraining, load_encoder, train_encoder

MIX = DistillMixtures(clips=3, seconds=0.128, batch=2)
CHAIN4 = replace(CHAIN, steps=4, swaps=1, swap_steps=2)


@pytest.fixture(scope="module")
def priors_only(tiny_priors, tmp_path_factory):
    model = tmp_path_factory.mktemp("priors-only")
    shutil.copytree(tiny_priors, model, dirs_exist_ok=True, ignore=shutil.ignore_patterns("ckpt", "onnx", "encoder.pt"))
    return model


@pytest.fixture(scope="module")
def distilled(priors_only, toy_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("distilled")
    assert make_distill_set(priors_only, toy_data, out, MIX, CHAIN4, shard=(0, 2)) is None  # batch [2] is shard 1's
    sources = tuple(read_card(priors_only)["priors"])
    assert all(p.exists() for i in (0, 1) for p in clip_paths(out, sources, i))
    assert not any(p.exists() for p in clip_paths(out, sources, 2)) and not (out / "manifest.json").exists()
    manifest = make_distill_set(priors_only, toy_data, out, MIX, CHAIN4, shard=(1, 2))
    assert manifest["stems_used"] is False and manifest["splits"] == {"train": 3}
    return out


def test_labels_sum_to_their_mixtures_and_do_not_depend_on_sharding_or_resuming(priors_only, toy_data, distilled,
                                                                                  tmp_path):
    sources = tuple(read_card(priors_only)["priors"])
    sets = [SourceSet.load(toy_data, s, 16000, "train") for s in sources]
    labels = [np.stack([sf.read(p, dtype="float32")[0] for p in clip_paths(distilled, sources, i)]) for i in range(3)]
    for i, est in enumerate(labels):
        mix = training_excerpts(sets, i, 2048, MIX).mean(axis=0)
        assert est.shape == (4, 2048)
        assert np.abs(est.mean(axis=0) - mix).max() < 1e-5  # exact mixture consistency
        assert np.abs(est - mix).max() > 1e-3  # and not the mixture copied into every source
    one = tmp_path / "one"
    assert make_distill_set(priors_only, toy_data, one, MIX, CHAIN4)["chain"]["swaps"] == 1
    for i in range(3):
        for a, b in zip(clip_paths(one, sources, i), clip_paths(distilled, sources, i)):
            assert np.array_equal(sf.read(a)[0], sf.read(b)[0])
    stamp = clip_paths(one, sources, 0)[0].stat().st_mtime_ns
    clip_paths(one, sources, 2)[1].unlink()  # an interrupted run: only the unfinished batch is redone
    (one / "manifest.json").unlink()
    assert make_distill_set(priors_only, toy_data, one, MIX, CHAIN4) is not None
    assert clip_paths(one, sources, 0)[0].stat().st_mtime_ns == stamp
    assert np.array_equal(sf.read(clip_paths(one, sources, 2)[1])[0], sf.read(clip_paths(distilled, sources, 2)[1])[0])
    with pytest.raises(ConfigError, match="shard"):
        make_distill_set(priors_only, toy_data, one, MIX, CHAIN4, shard=(2, 2))
    r = CliRunner().invoke(app, ["data", "distill", str(priors_only), str(tmp_path / "x"), "--data", str(toy_data),
                                 "--shard", "half"])
    assert r.exit_code != 0 and "expected I/N" in r.output and "Traceback" not in r.output


def test_distill_objective_regresses_the_labels_and_refuses_other_data(priors_only, toy_data, distilled, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(priors_only, model)
    sources = list(read_card(model)["priors"])
    cfg = EncoderConfig(sources=sources, filters=16, bottleneck=8, hidden=16, blocks=2)
    tr = dict(batch=4, segment=2048, checkpoint_every=20, lr=3e-3, gain_min=1.0)
    with pytest.raises(DataError, match="not a `rtsep data distill` set"):
        train_encoder(model, toy_data, cfg, EncoderTraining(objective="distill", steps=1, **tr), show=False)
    with pytest.raises(DataError, match="--objective distill"):
        train_encoder(model, distilled, cfg, EncoderTraining(objective="supervised", steps=1, **tr), show=False)
    with pytest.raises(DataError, match="--objective distill"):
        train_encoder(model, distilled, cfg, EncoderTraining(objective="seed", steps=1, **tr), show=False)
    labels = torch.from_numpy(np.stack([np.stack([sf.read(p, dtype="float32")[0]
                                                  for p in clip_paths(distilled, sources, i)]) for i in range(3)]))
    mix = labels.mean(dim=1, keepdim=True)

    def error() -> float:
        with torch.no_grad():
            return float(((load_encoder(model)(mix)[0] - labels) ** 2).mean())

    entry = train_encoder(model, distilled, cfg, EncoderTraining(objective="distill", steps=1, **tr), show=False)
    before = error()
    entry = train_encoder(model, distilled, cfg, EncoderTraining(objective="distill", steps=120, **tr), show=False)
    assert error() < 0.75 * before, (error(), before)  # 0.63 when written
    t = entry["training"]
    assert t["objective"] == "distill" and t["targets"]["stems_used"] is False
    assert t["targets"]["priors"] == priors_fingerprint(priors_only, sources) and t["data"] == str(distilled)
    # the seed objective continued from the distilled encoder: its weights and config are the start
    seeded = tmp_path / "seeded"
    shutil.copytree(priors_only, seeded)
    other = EncoderConfig(sources=sources, filters=8, bottleneck=8, hidden=8, blocks=1)  # ignored: init's config wins
    entry = train_encoder(seeded, toy_data, other, EncoderTraining(objective="seed", steps=1, **{**tr, "lr": 0.0}),
                          show=False, init_from=model)
    assert entry["training"]["init_from"] == str(model) and entry["config"] == cfg.to_dict()
    a, b = load_encoder(seeded).state_dict(), load_encoder(model).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pitch_shift_moves_a_tone_by_the_drawn_ratio_without_aliasing():
    from rtsep.train.encoder import shifted_excerpt

    t = np.arange(16000) / 16000
    tone = SourceSet("tone", [np.sin(2 * np.pi * 440 * t).astype(np.float32)])
    tr = EncoderTraining(segment=8192, pitch_shift=12, gain_min=1.0, gain_max=1.0)
    for seed in range(4):
        y = shifted_excerpt(tone, np.random.default_rng(seed), tr)
        ratio = 2 ** (np.random.default_rng(seed).uniform(-12, 12) / 12)  # the first draw is the shift
        spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
        assert y.shape == (8192,) and abs(np.argmax(spec) * 16000 / 8192 - 440 * ratio) < 4, (seed, ratio)
        assert np.abs(y[-256:]).max() > 0.9  # the excerpt is long enough: no silent tail
    high = SourceSet("high", [np.sin(2 * np.pi * 7000 * t).astype(np.float32)])
    seed = next(i for i in range(100) if np.random.default_rng(i).uniform(-12, 12) > 4)  # 7 kHz -> above 8.8 kHz
    y = shifted_excerpt(high, np.random.default_rng(seed), tr)
    assert np.sqrt(np.mean(y[512:-512] ** 2)) < 0.02  # removed, not folded back below Nyquist
