"""Priors trained on one source alone prefer that source: the cross-likelihood diagonal wins."""

import json
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from rtsep.card import read_card
from rtsep.cli import app
from rtsep.prior_eval import evaluate_priors
from rtsep.train.prior import load_prior, prior_paths


def test_tiny_priors_prefer_their_own_source(tiny_priors, toy_data):
    """Priors trained ~5 s each: saw and square data are best explained by their own prior; the
    near-identical sine/triangle pair (a triangle is a sine plus weak odd harmonics) is at least
    told apart from the others. The shipped priors separate all four (next test)."""
    res = evaluate_priors(tiny_priors, toy_data, clips=16, segment=3840, sigmas=[0.02, 0.01])
    m = np.array(res["loglik"])  # [sigma][prior][data]
    assert m.shape == (2, 4, 4)
    src = res["sources"]
    for s in range(2):
        for name in ("saw", "square"):
            k = src.index(name)
            assert m[s, k, k] == m[s, :, k].max(), (src, m[s])
        pair = [src.index("sine"), src.index("triangle")]
        for k in pair:
            assert m[s, pair, k].max() > m[s, [src.index("saw"), src.index("square")], k].max(), (src, m[s])
    assert read_card(tiny_priors)["prior_eval"]["sources"] == src


def test_shipped_toy4_priors_discriminate_all_four(tmp_path):
    from rtsep.datasets.toy4 import make_toy4
    from rtsep.separator import MODELS_DIR

    make_toy4(tmp_path, clips=400, seconds=1.0, sample_rate=16000, seed=5)
    model = tmp_path / "model"
    shutil.copytree(MODELS_DIR / "toy4", model, ignore=shutil.ignore_patterns("ckpt", "onnx"))
    res = evaluate_priors(model, tmp_path, clips=40, segment=16384, sigmas=[0.01])  # measured margin +0.10
    m = np.array(res["loglik"][0])
    assert all(m[k, k] == m[:, k].max() for k in range(4)), (res["sources"], m)


def test_training_resumes_from_checkpoint(tiny_priors):
    weights, ckpt = prior_paths(tiny_priors, "sine")
    assert weights.exists() and ckpt.exists()
    card = read_card(tiny_priors)
    assert card["priors"]["sine"]["training"]["steps_done"] == 300
    load_prior(tiny_priors, "sine")


def test_eval_priors_cli_json_and_plot(tiny_priors, toy_data, tmp_path):
    js, png = tmp_path / "m.json", tmp_path / "m.png"
    r = CliRunner().invoke(app, ["eval", "priors", str(tiny_priors), "--data", str(toy_data), "--clips", "4",
                                 "--json", str(js), "--plot", str(png)])
    assert r.exit_code == 0, r.output
    res = json.loads(js.read_text())
    assert set(res) >= {"sources", "sigmas", "loglik"}
    assert len(res["loglik"]) == len(res["sigmas"]) and len(res["loglik"][0]) == 4
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("case", ["no_model", "not_a_card", "wrong_weights", "unknown_source", "empty_data"])
def test_prior_cli_errors_are_one_line(tiny_priors, toy_data, tmp_path, case):
    import shutil

    args = ["eval", "priors", str(tiny_priors), "--data", str(toy_data)]
    if case == "no_model":
        args[2] = str(tmp_path / "missing")
    elif case == "not_a_card":
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "card.json").write_text("[1, 2")
        args[2] = str(bad)
    elif case == "wrong_weights":
        bad = tmp_path / "m"
        shutil.copytree(tiny_priors, bad)
        shutil.copy(bad / "priors" / "sine.pt", bad / "priors" / "saw.pt.tmp")
        card = json.loads((bad / "card.json").read_text())
        card["priors"]["saw"]["config"]["hidden"] = 40
        (bad / "card.json").write_text(json.dumps(card))
        args[2] = str(bad)
    elif case == "unknown_source":
        args = ["train", "prior", "--source", "kazoo", "--data", str(toy_data), "--out", str(tmp_path / "o"),
                "--steps", "1"]
    elif case == "empty_data":
        (tmp_path / "d" / "sine").mkdir(parents=True)
        args = ["train", "prior", "--source", "sine", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "o"),
                "--steps", "1"]
    r = CliRunner().invoke(app, args)
    assert r.exit_code != 0
    assert r.exception is None or isinstance(r.exception, SystemExit)
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), r.output
    if case == "unknown_source":
        assert not (tmp_path / "o" / "card.json").exists()


def _update_many(args) -> None:
    from rtsep.card import update_card

    model_dir, name = args
    for i in range(40):
        update_card(model_dir, "priors", name, value={"i": i})


def test_parallel_prior_trainings_keep_each_others_card_sections(tmp_path):
    """The documented recipe trains a set's priors in parallel processes into one model dir: every
    process's section must survive the others' read-modify-write of card.json."""
    import multiprocessing as mp

    names = [f"s{k}" for k in range(4)]
    with mp.get_context("fork").Pool(4) as pool:
        pool.map(_update_many, [(tmp_path, n) for n in names])
    card = read_card(tmp_path)
    assert {n: card["priors"][n]["i"] for n in names} == {n: 39 for n in names}
    assert not list(tmp_path.glob("*.tmp"))


def test_checkpoint_from_before_a_config_field_still_resumes(toy_data, tmp_path):
    """A checkpoint written before `mixing` existed resumes as the flip prior it is, and refuses lu."""
    import torch

    from rtsep.errors import BundleError
    from rtsep.nn.flow import PriorConfig
    from rtsep.train.prior import PriorTraining, train_prior

    cfg = PriorConfig(source="sine", squeeze=16, n_flows=2, hidden=8, layers=2, mixing="flip")
    tr = PriorTraining(steps=2, batch=2, segment=1024, checkpoint_every=1)
    train_prior("sine", toy_data, tmp_path, cfg, tr, show=False)
    ckpt_path = prior_paths(tmp_path, "sine")[1]
    ckpt = torch.load(ckpt_path, weights_only=False)
    del ckpt["config"]["mixing"]  # as written by rtsep before session 6
    torch.save(ckpt, ckpt_path)
    entry = train_prior("sine", toy_data, tmp_path, cfg, PriorTraining(steps=4, batch=2, segment=1024), show=False)
    assert entry["training"]["steps_done"] == 4
    with pytest.raises(BundleError, match="another config"):
        train_prior("sine", toy_data, tmp_path, PriorConfig(**{**cfg.to_dict(), "mixing": "lu"}),
                    PriorTraining(steps=6, batch=2, segment=1024), show=False)


def test_resume_on_more_data_keeps_the_level_and_records_both_sets(toy_data, tmp_path):
    """Training resumed on another data folder continues (the first folder's level is kept, not
    re-measured into a config mismatch) and the card names every folder the prior saw."""
    from rtsep.datasets.toy4 import make_toy4
    from rtsep.nn.flow import PriorConfig
    from rtsep.train.prior import PriorTraining, train_prior

    more = tmp_path / "more"
    make_toy4(more, clips=40, seconds=0.25, sample_rate=16000, seed=11)
    cfg = PriorConfig(source="sine", squeeze=16, n_flows=2, hidden=8, layers=2)
    first = train_prior("sine", toy_data, tmp_path / "m", cfg, PriorTraining(steps=2, batch=2, segment=1024),
                        show=False)
    entry = train_prior("sine", more, tmp_path / "m", cfg, PriorTraining(steps=4, batch=2, segment=1024),
                        show=False)
    assert entry["training"]["steps_done"] == 4
    assert entry["config"]["level"] == first["config"]["level"]
    assert [(r["data"], r["from_step"]) for r in entry["training"]["data_runs"]] == [(str(toy_data), 0), (str(more), 2)]


def test_leak_negatives_keep_the_own_level():
    """The negatives cannot be told apart by loudness (the level term), only by shape."""
    from rtsep.datasets.folder import SourceSet
    from rtsep.train.prior import PriorTraining, leak_negatives

    rng = np.random.default_rng(0)
    own = rng.standard_normal((6, 512)).astype(np.float32) * np.linspace(0.1, 1, 6)[:, None].astype(np.float32)
    other = SourceSet("x", [np.sin(np.arange(4000) * 0.3).astype(np.float32)])
    neg, frac = leak_negatives(rng, own, [other], PriorTraining(leak_min=0.5, leak_max=2.0))
    np.testing.assert_allclose(np.sqrt((neg**2).mean(-1)), np.sqrt((own**2).mean(-1)), rtol=1e-4)
    assert ((frac >= 1 / 3 - 1e-6) & (frac <= 2 / 3 + 1e-6)).all()
    assert np.abs(neg - own).max() > 0.1


def _leak_gap(model_dir, data, source: str, other: str) -> float:
    """Mean per-sample shape log-likelihood of held-out `source` clips minus the same clips with an
    equal-RMS `other` clip leaked in, at sigma 0.02."""
    import torch

    from rtsep.datasets.folder import SourceSet
    from rtsep.train.prior import leak

    prior = load_prior(model_dir, source)
    rng = np.random.default_rng(7)
    own = SourceSet.load(data, source, 16000, "test").excerpts(rng, 24, 2048, gain=(0.9, 0.9))
    neg = leak(own, SourceSet.load(data, other, 16000, "test").excerpts(rng, 24, 2048, gain=(0.9, 0.9)), 1.0)
    with torch.no_grad():
        lp = [prior.shape_log_prob_sum(torch.from_numpy(x)[:, None] + 0.02 * torch.randn(24, 1, 2048), 0.02) / 2048
              for x in (own, neg)]
    return float((lp[0] - lp[1]).mean())


def test_contrast_fine_tuning_widens_the_gap_to_leaked_negatives(tiny_priors, toy_data, tmp_path):
    """Fine-tuning the triangle prior (closest to sine) with the margin term raises its preference for
    clean triangle over triangle + sine, compared with the same fine-tuning on likelihood alone; the
    card says where the run started."""
    from rtsep.nn.flow import PriorConfig
    from rtsep.train.prior import PriorTraining, train_prior

    gaps = {}
    for contrast in (0.0, 1.0):
        out = tmp_path / f"c{contrast}"
        tr = PriorTraining(steps=40, batch=8, segment=2048, lr=2e-3, seed=0, gain_min=0.8, contrast=contrast,
                           contrast_margin=1.0)
        entry = train_prior("triangle", toy_data, out, PriorConfig(source="triangle"), tr, show=False,
                            init_from=tiny_priors)
        assert entry["training"]["init_from"] == str(tiny_priors)
        assert entry["config"] == read_card(tiny_priors)["priors"]["triangle"]["config"]
        gaps[contrast] = _leak_gap(out, toy_data, "triangle", "sine")
    # Re-running the same command resumes the fine-tuning run (config from the start model, not the defaults).
    tr.steps = 42
    entry = train_prior("triangle", toy_data, out, PriorConfig(source="triangle"), tr, show=False,
                        init_from=tiny_priors)
    assert entry["training"]["steps_done"] == 42 and entry["training"]["init_from"] == str(tiny_priors)
    assert gaps[1.0] > gaps[0.0] + 0.05, gaps
