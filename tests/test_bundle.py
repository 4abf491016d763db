"""Bundle: a model directory is resolved by name or path, read once, and refused in one line when its
parts disagree (rate, sources, priors) or a recorded sha256 does not match (corrupt or edited files)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import write_random_model
from typer.testing import CliRunner

from rtsep.bundle import ENV, Bundle, installed_models, models_dir, resolve_model, seal
from rtsep.card import read_card, sha256, update_card
from rtsep.errors import BundleError
from rtsep.separator import Separator

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def sealed(tmp_path):
    """A complete random model (priors + encoder, no graphs) whose weights' hashes are in its card."""
    model = write_random_model(tmp_path / "m")
    seal(model)
    return model


@pytest.fixture(scope="module")
def toy4_copy(tmp_path_factory):
    """The shipped toy4 bundle with its ONNX graphs, copied so a test may break it."""
    src = resolve_model("toy4")
    assert Bundle.load(src).has_onnx, "the shipped toy4 bundle has ONNX graphs (rtsep export models/toy4)"
    return src


def edit_card(model: Path, edit) -> None:
    card = json.loads((model / "card.json").read_text())
    edit(card)
    (model / "card.json").write_text(json.dumps(card))


def test_shipped_bundles_load_and_verify():
    names = [p.name for p in installed_models()]
    assert names == ["music4", "toy4"]  # what users use: the music default and the toy demo
    for name in names:
        b = Bundle.load(name)
        assert b.has_encoder and b.has_onnx and b.sample_rate == 16000 and len(b.sources) == 4
        tf = [f"tf_priors/{s}.pt" for s in b.sources] if b.has_tf_priors else []
        hb = ["highband.npz"] if b.highband is not None else []
        assert set(b.card["weights"]) == {"encoder.pt", *(f"priors/{s}.pt" for s in b.sources), *tf, *hb}
        assert list(b.card["sources"]) == list(b.sources) == b.encoder_config["sources"]
    assert Bundle.load("music4").has_tf_priors and Bundle.load("music4").langevin.prior == "tf"  # the shipped chain
    assert Bundle.load("music4").highband is not None  # and its learned high-band share


def test_name_resolves_to_installed_before_a_folder_in_the_current_directory(tmp_path, monkeypatch):
    root = tmp_path / "installed"
    write_random_model(root / "m")
    monkeypatch.setenv(ENV, str(root))
    here = tmp_path / "cwd"
    write_random_model(here / "m", sources=("x", "y"))
    write_random_model(here / "only-here", sources=("x", "y"))
    monkeypatch.chdir(here)
    assert models_dir() == root
    assert resolve_model("m") == root / "m"
    assert Bundle.load("m").sources == ("a", "b")  # the installed one, not ./m
    assert Bundle.load("./m").sources == ("x", "y")  # a path is a directory
    assert Bundle.load(str(here / "m")).sources == ("x", "y")
    assert resolve_model("only-here") == Path("only-here")  # not installed: the folder here
    with pytest.raises(BundleError, match=r"no model 'nope' \(installed models: m\)"):
        resolve_model("nope")
    with pytest.raises(BundleError, match="not a model directory"):
        resolve_model("./nope")


def test_no_installed_models_is_one_clear_line(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV, str(tmp_path / "empty"))
    monkeypatch.chdir(tmp_path)
    assert installed_models() == []
    with pytest.raises(BundleError, match="no models are installed") as err:
        resolve_model("music4")
    assert "\n" not in str(err.value) and ENV in str(err.value)
    from rtsep.cli import app

    r = CliRunner().invoke(app, ["file", str(ROOT / "examples" / "music4-mix.wav"), "-o", str(tmp_path / "out")])
    assert r.exit_code == BundleError.exit_code and "no models are installed" in r.output
    assert r.output.strip().count("\n") == 0 and not (tmp_path / "out").exists()


def test_edited_weights_are_refused_and_training_rerecords_them(sealed):
    Bundle.load(sealed)
    path = sealed / "priors" / "a.pt"
    good = path.read_bytes()
    path.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(BundleError, match=r"priors/a\.pt: sha256 mismatch \(corrupt or edited; re-export"):
        Bundle.load(sealed)
    with pytest.raises(BundleError, match="sha256 mismatch"):
        Separator.load(sealed, backend="torch")
    Bundle.load(sealed, verify=False)  # export reads it this way, then re-records
    path.write_bytes(good)
    update_card(sealed, "priors", "a", value=read_card(sealed)["priors"]["a"])  # what training does after saving
    Bundle.load(sealed)
    (sealed / "encoder.pt").unlink()
    with pytest.raises(BundleError, match=r"encoder\.pt: missing"):
        Bundle.load(sealed)


def test_card_rate_must_be_the_networks_rate(sealed):
    update_card(sealed, "sample_rate", value=44100)
    with pytest.raises(BundleError, match="sample_rate 44100 Hz, but prior 'a' was trained at 16000 Hz"):
        Bundle.load(sealed)
    with pytest.raises(BundleError, match="44100"):
        Separator.load(sealed, backend="torch")
    update_card(sealed, "sample_rate", value="16k")
    with pytest.raises(BundleError, match="not a positive whole number"):
        Bundle.load(sealed)


def test_reordered_or_misfiled_sources_are_refused(sealed):
    edit_card(sealed, lambda c: c["encoder"]["config"].update(sources=["b", "a"]))
    with pytest.raises(BundleError, match="reordered"):
        Bundle.load(sealed)
    edit_card(sealed, lambda c: c["encoder"]["config"].update(sources=["a", "b"]))
    Bundle.load(sealed)
    edit_card(sealed, lambda c: c["priors"]["a"]["config"].update(source="b"))
    with pytest.raises(BundleError, match="the prior filed as 'a' was trained on 'b'"):
        Bundle.load(sealed)


def test_onnx_graphs_are_checked(toy4_copy, tmp_path):
    model = tmp_path / "toy4"
    shutil.copytree(toy4_copy, model)
    graph = model / "onnx" / "encoder.onnx"
    with open(graph, "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"onnx/encoder\.onnx: sha256 mismatch"):
        Separator.load(model, backend="onnx")
    from rtsep.cli import app

    mix = ROOT / "examples" / "music4-mix.wav"
    r = CliRunner().invoke(app, ["file", str(mix), "--model", str(model), "-o", str(tmp_path / "out")])
    assert r.exit_code == BundleError.exit_code and "sha256 mismatch" in r.output, r.output
    assert r.output.strip().count("\n") == 0 and not (tmp_path / "out").exists()
    graph.unlink()  # one graph gone: a half-copied bundle
    with pytest.raises(BundleError, match=r"onnx/encoder\.onnx: missing"):
        Bundle.load(model)
    shutil.rmtree(model / "onnx")  # the whole folder gone: a copy for the torch backend
    assert not Bundle.load(model).has_onnx
    assert type(Separator.load(model).backend).__name__ == "TorchBackend"


def test_onnx_graphs_of_other_sources_are_refused(toy4_copy, tmp_path):
    """A card whose sources were reordered together with their record: the graphs' own metadata
    still names the order they were exported in, so the stems are not mislabelled."""
    model = tmp_path / "toy4"
    shutil.copytree(toy4_copy, model)
    order = ["sine", "saw", "square", "triangle"]
    edit_card(model, lambda c: (c["encoder"]["config"].update(sources=order), c.update(sources=order)))
    with pytest.raises(BundleError, match="exported for sources"):
        Separator.load(model, backend="onnx")


def test_auto_backend_is_onnx_where_graphs_exist(sealed):
    assert type(Separator.load("toy4").backend).__name__ == "OnnxBackend"
    sep = Separator.load(sealed, steps=0)  # no graphs: torch
    assert type(sep.backend).__name__ == "TorchBackend"
    x = (0.1 * np.random.default_rng(0).standard_normal((1, 2048))).astype(np.float32)
    assert np.abs(sep.separate(x, 16000).sum(0) - x).max() < 1e-5
    with pytest.raises(BundleError, match="no ONNX graphs"):
        Separator.load(sealed, backend="onnx")
    with pytest.raises(BundleError, match="unknown backend"):
        Separator.load(sealed, backend="tensorflow")


def test_seal_records_every_weight(sealed):
    card = read_card(sealed)
    assert card["weights"] == {n: sha256(sealed / n) for n in ("encoder.pt", "priors/a.pt", "priors/b.pt")}
    assert card["sources"] == ["a", "b"]


def test_every_shipped_model_file_goes_into_the_wheel():
    """setup.py's package-data patterns cover every file the shipped model folders hold (a non-editable
    install otherwise lacks weights the card lists, and refuses its own default model)."""
    import fnmatch
    import re

    text = (ROOT / "setup.py").read_text()
    patterns = re.findall(r'"(\*/[^"]+)"', text.split("MODEL_FILES =", 1)[1].split("]", 1)[0])
    files = [p.relative_to(ROOT / "models").as_posix() for p in (ROOT / "models").rglob("*")
             if p.is_file() and not any(part.startswith(".") for part in p.relative_to(ROOT / "models").parts)]  # locks
    missing = [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)]
    assert files and not missing, missing
