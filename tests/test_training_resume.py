"""Resuming an encoder after its priors were retrained (or on other data) continues the run and the
card says so: the seed objective's target changed at that step."""

import shutil

import torch

from rtsep.card import read_card
from rtsep.nn.encoder import EncoderConfig
from rtsep.train.checkpoint import save_weights
from rtsep.train.encoder import EncoderTraining, train_encoder
from rtsep.train.prior import load_prior, prior_paths


def test_encoder_resumed_under_retrained_priors_records_both(tiny_priors, toy_data, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(tiny_priors, model, ignore=shutil.ignore_patterns("ckpt", "onnx", "encoder.pt"))
    sources = list(read_card(model)["priors"])
    cfg = EncoderConfig(sources=sources, filters=16, bottleneck=8, hidden=16, blocks=2)
    tr = dict(batch=2, segment=2048, checkpoint_every=1)
    train_encoder(model, toy_data, cfg, EncoderTraining(steps=2, **tr), show=False)
    again = train_encoder(model, toy_data, cfg, EncoderTraining(steps=3, **tr), show=False)
    assert len(again["training"]["runs"]) == 1  # same data, same priors: one run
    prior = load_prior(model, sources[0])
    with torch.no_grad():
        next(prior.parameters()).add_(0.01)  # stands in for retraining that prior
    save_weights(prior_paths(model, sources[0])[0], prior)
    entry = train_encoder(model, toy_data, cfg, EncoderTraining(steps=5, **tr), show=False)
    runs = entry["training"]["runs"]
    assert entry["training"]["steps_done"] == 5
    assert [r["from_step"] for r in runs] == [0, 3] and runs[0]["priors"] != runs[1]["priors"]
    assert {r["data"] for r in runs} == {str(toy_data)}
