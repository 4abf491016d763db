"""`eval separate --shard I/N` + `eval merge`: N processes share one evaluation and their merged table is
the unsharded one, clip for clip."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from rtsep.cli import app
from rtsep.errors import ConfigError
from rtsep.separation_eval import evaluate_separation, merge
from rtsep.separator import MODELS_DIR


@pytest.fixture(scope="module")
def full_and_shards(toy_data):
    kw = dict(steps=0, clips=5, seconds=0.25, whole=True)
    full = evaluate_separation(MODELS_DIR / "toy4", toy_data, **kw)
    shards = [evaluate_separation(MODELS_DIR / "toy4", toy_data, shard=(i, 2), **kw) for i in (1, 0)]
    return full, shards


def test_merged_shards_are_the_full_evaluation(full_and_shards):
    full, shards = full_and_shards
    assert [s["clip_index"] for s in shards] == [[1, 3], [0, 2, 4]]
    merged = merge(shards)
    assert merged["clip_index"] == full["clip_index"] == [0, 1, 2, 3, 4] and merged["clips"] == 5
    assert merged["per_clip"] == full["per_clip"]
    assert merged["table"] == full["table"]


def test_merge_refuses_overlapping_or_different_results(full_and_shards):
    full, shards = full_and_shards
    with pytest.raises(ConfigError, match="share clips"):
        merge([full, shards[0]])
    with pytest.raises(ConfigError, match="differ"):
        merge([shards[0], {**shards[1], "steps": 4}])


def test_a_shard_with_no_clips_is_an_error(toy_data):
    with pytest.raises(ConfigError, match="holds none of the 2 clips"):
        evaluate_separation(MODELS_DIR / "toy4", toy_data, steps=0, clips=2, shard=(2, 3))


def test_merge_cli_and_bad_shard(full_and_shards, toy_data, tmp_path):
    _, shards = full_and_shards
    parts = []
    for i, s in enumerate(shards):
        parts.append(tmp_path / f"s{i}.json")
        parts[-1].write_text(json.dumps(s))
    r = CliRunner().invoke(app, ["eval", "merge", *map(str, parts), "--json", str(tmp_path / "m.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "m.json").read_text())["clip_index"] == [0, 1, 2, 3, 4]
    r = CliRunner().invoke(app, ["eval", "separate", "toy4", "--data", str(toy_data), "--shard", "2/2"])
    assert r.exit_code != 0 and "I must be in 0..N-1" in r.output and "Traceback" not in r.output


def test_eval_defaults_to_the_cards_chain_length(toy_data, tmp_path):
    """Without --steps the evaluation runs what `rtsep file` runs: the card's chain, not a fixed K."""
    import shutil

    from rtsep.card import update_card

    model = tmp_path / "toy4"
    shutil.copytree(MODELS_DIR / "toy4", model, ignore=shutil.ignore_patterns("onnx"))
    update_card(model, "langevin", "steps", value=2)
    res = evaluate_separation(model, toy_data, clips=1, seconds=0.25, whole=True)
    assert res["steps"] == 2 and res["langevin"]["steps"] == 2 and "encoder+langevin2" in res["table"]
    assert evaluate_separation(model, toy_data, steps=0, clips=1, seconds=0.25, whole=True)["steps"] == 0
