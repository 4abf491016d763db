"""`rtsep adapt`: a tiny model adapted to shifted toy4 timbres from solo recordings gains on held-out clips;
bad input is refused in one line before any training."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from rtsep.card import read_card, update_card
from rtsep.cli import app
from rtsep.datasets.common import write_wav_atomic
from rtsep.datasets.toy4 import SOURCES, random_clip
from rtsep.separator import MODELS_DIR

runner = CliRunner()


def shifted(x: np.ndarray) -> np.ndarray:
    """The "user's instrument": the toy4 waveform through a lowpass (its harmonics fall off faster, so a
    square reads more like a triangle to a model trained on the originals)."""
    k = np.array([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0
    y = np.convolve(np.convolve(x, k, mode="same"), k, mode="same")
    return (y / (np.abs(y).max() + 1e-9) * np.abs(x).max()).astype(np.float32)


def write_shifted(folder, clips: int, seed: int, split: str | None, seconds: float = 0.5):
    rng = np.random.default_rng(seed)
    for i in range(clips):
        for s in SOURCES:
            root = folder / split / s if split else folder / s
            write_wav_atomic(root / f"{i:03d}.wav", shifted(random_clip(rng, s, int(seconds * 16000), 16000)), 16000)
    return folder


@pytest.fixture(scope="module")
def base(tiny_tf_priors, tmp_path_factory):
    """The shipped toy4 encoder and flows with tiny TF priors beside them."""
    model = tmp_path_factory.mktemp("base") / "toy4tf"
    shutil.copytree(MODELS_DIR / "toy4", model, ignore=shutil.ignore_patterns("onnx", "ckpt"))
    shutil.copytree(tiny_tf_priors / "tf_priors", model / "tf_priors")
    card = read_card(model)
    card.pop("onnx", None)
    from rtsep.card import write_card

    write_card(model, card)
    update_card(model, "tf_priors", value=read_card(tiny_tf_priors)["tf_priors"])
    from rtsep.bundle import seal

    seal(model)
    return model


def test_adapt_gains_on_held_out_clips_of_the_shifted_timbres(base, tmp_path):
    from rtsep.separation_eval import evaluate_separation
    from rtsep.train.adapt import AdaptConfig, adapt

    user = write_shifted(tmp_path / "user", 48, seed=1, split=None)
    held = write_shifted(tmp_path / "held", 12, seed=2, split="test", seconds=1.0)
    out = tmp_path / "adapted"
    rec = adapt(base, user, out, AdaptConfig(minutes=3, objective="solo-mix", prior_steps=60, encoder_steps=250,
                                             batch=8, seconds=0.5, lr=1e-3), show=False, export=False)
    assert rec["adapted_sources"] == sorted(SOURCES) and rec["encoder"]["steps_done"] == 250
    assert rec["data"]["sine"]["files"] == 48 and len(rec["data"]["sine"]["sha256"]) == 64
    before = evaluate_separation(base, held, steps=0, clips=12)["table"]["encoder"]
    after = evaluate_separation(out, held, steps=0, clips=12)["table"]["encoder"]
    gains = [after[s]["si_sdri_mean"] - before[s]["si_sdri_mean"] for s in SOURCES]
    assert np.mean(gains) > 1.0, (before, after)
    card = read_card(out)
    assert card["adapted"]["base"] == str(base) and card["tf_priors"]["sine"]["training"]["init_from"] == str(base)


@pytest.mark.parametrize("layout, message", [
    ({}, "has no source folders"),
    ({"tuba": 1}, "unknown source 'tuba'"),
    ({"sine": 0}, "no audio files"),
    ({"sine": "silent"}, "only silence"),
])
def test_bad_solo_folders_are_refused_before_training(base, tmp_path, layout, message):
    user = tmp_path / "user"
    user.mkdir()
    for name, what in layout.items():
        (user / name).mkdir()
        if what == "silent":
            write_wav_atomic(user / name / "a.wav", np.zeros(8000, np.float32), 16000)
        elif what:
            write_wav_atomic(user / name / "a.wav", 0.3 * np.ones(8000, np.float32), 16000)
    out = tmp_path / "out"
    res = runner.invoke(app, ["adapt", str(base), "--sources", str(user), "-o", str(out)])
    assert res.exit_code != 0 and message in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not out.exists()


def test_a_model_without_tf_priors_is_refused(tmp_path):
    user = write_shifted(tmp_path / "user", 2, seed=1, split=None)
    res = runner.invoke(app, ["adapt", str(MODELS_DIR / "toy4"), "--sources", str(user), "-o", str(tmp_path / "o")])
    assert res.exit_code != 0 and "no encoder and TF priors" in res.output and not (tmp_path / "o").exists()


def test_train_chain_writes_the_learned_chain_the_separator_runs(base, toy_data, tmp_path):
    from rtsep.separator import Separator

    model = tmp_path / "m"
    shutil.copytree(base, model)
    res = runner.invoke(app, ["train", "chain", str(model), "--data", str(toy_data), "--chain-steps", "2", "--steps",
                              "3", "--batch", "2", "--seconds", "0.5"])
    assert res.exit_code == 0, res.output
    card = read_card(model)
    lcfg = card["langevin"]
    assert lcfg["prior"] == "tf" and lcfg["space"] == "mask" and lcfg["steps"] == 2 and len(lcfg["tf_lrs"]) == 2
    assert card["chain"]["training"]["steps_done"] == 3 and set(card["chain"]["valid_si_sdri"]) == {"encoder", "chain"}
    sep = Separator.load(model, backend="torch")
    mix = (0.3 * np.random.default_rng(0).standard_normal((1, 8000))).astype(np.float32)
    assert sep.run.steps == 2
    assert np.allclose(sep.separate(mix, 16000).sum(axis=0), mix, atol=1e-5)


@pytest.mark.parametrize("k", [2, 0])
def test_train_chain_fine_tunes_the_encoder_through_the_steps(base, toy_data, tmp_path, k):
    """--encoder-lr trains the encoder too (K = 0 is the equal-steps control): new weights, the card says
    what was tuned and reports the tuned encoder alone; K = 0 without it has nothing to learn."""
    from rtsep.separator import Separator

    model = tmp_path / "m"
    shutil.copytree(base, model)
    before = (model / "encoder.pt").read_bytes()
    args = ["train", "chain", str(model), "--data", str(toy_data), "--chain-steps", str(k), "--steps", "3", "--batch",
            "2", "--seconds", "0.5"]
    res = runner.invoke(app, args + ["--encoder-lr", "1e-3"])
    assert res.exit_code == 0, res.output
    assert (model / "encoder.pt").read_bytes() != before
    card = read_card(model)
    assert card["encoder"]["chain_fine_tune"]["chain_steps"] == k and card["encoder"]["chain_fine_tune"]["steps"] == 3
    assert set(card["chain"]["valid_si_sdri"]) == {"encoder", "chain", "encoder_tuned"}
    assert "encoder's fine-tune" in card["chain"]["stems_used_for"] and card["langevin"]["steps"] == k
    if k == 0:  # no chain: what the chain row scores is the tuned encoder itself
        assert card["chain"]["valid_si_sdri"]["chain"] == card["chain"]["valid_si_sdri"]["encoder_tuned"]
    from rtsep.bundle import seal

    seal(model)
    mix = (0.3 * np.random.default_rng(0).standard_normal((1, 8000))).astype(np.float32)
    assert np.allclose(Separator.load(model, backend="torch").separate(mix, 16000).sum(axis=0), mix, atol=1e-5)
    if k == 0:
        res = runner.invoke(app, args)
        assert res.exit_code != 0 and "nothing to learn" in res.output and "Traceback" not in res.output
