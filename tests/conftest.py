"""Shared fixtures: a toy4 set generated in-process and tiny priors trained for a few seconds."""

from __future__ import annotations

import os

import pytest
import torch

from rtsep.datasets.toy4 import SOURCES, make_toy4
from rtsep.nn.flow import PriorConfig
from rtsep.train.prior import PriorTraining, train_prior

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

TINY_PRIOR = dict(squeeze=16, n_flows=4, hidden=24, layers=4)
TINY_TF = dict(bands=32, linear_bins=8, hidden=32, embed=16, layers=4, context=2)


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy4")
    make_toy4(out, clips=160, seconds=0.25, sample_rate=16000, seed=3)
    return out


@pytest.fixture(scope="session")
def tiny_priors(toy_data, tmp_path_factory):
    """A model dir with four tiny toy4 priors, each trained ~5 s on its own source only."""
    model_dir = tmp_path_factory.mktemp("tiny-model")
    for source in SOURCES:
        cfg = PriorConfig(source=source, **TINY_PRIOR)
        tr = PriorTraining(steps=300, batch=8, segment=2048, lr=3e-3, seed=0, gain_min=0.8, gain_max=1.0,
                           checkpoint_every=150)
        train_prior(source, toy_data, model_dir, cfg, tr, show=False)
    return model_dir


def write_random_model(model_dir, sources=("a", "b"), seed: int = 0):
    """An untrained but complete model dir (priors + encoder), for structural tests."""
    from rtsep.card import update_card
    from rtsep.nn.encoder import Encoder, EncoderConfig
    from rtsep.nn.flow import FlowPrior
    from rtsep.train.checkpoint import save_weights

    torch.manual_seed(seed)
    for s in sources:
        cfg = PriorConfig(source=s, **TINY_PRIOR)
        prior = FlowPrior(cfg).train()
        prior(torch.randn(2, 1, 256) * 0.3, 0.1)
        save_weights(model_dir / "priors" / f"{s}.pt", prior)
        update_card(model_dir, "priors", s, value={"config": cfg.to_dict()})
    ecfg = EncoderConfig(sources=list(sources), filters=16, bottleneck=8, hidden=16, blocks=3)
    save_weights(model_dir / "encoder.pt", Encoder(ecfg))
    update_card(model_dir, "encoder", value={"config": ecfg.to_dict()})
    update_card(model_dir, "sample_rate", value=16000)
    update_card(model_dir, "langevin", value={"steps": 2, "sigma_start": 0.05, "sigma_end": 0.02, "lr": 0.5})
    return model_dir


@pytest.fixture(scope="session")
def random_model(tmp_path_factory):
    return write_random_model(tmp_path_factory.mktemp("random-model"))


@pytest.fixture(scope="session")
def tiny_tf_priors(toy_data, tmp_path_factory):
    """A model dir with four tiny toy4 TF priors, each trained a few seconds on its own source only."""
    from rtsep.nn.tfprior import TFPriorConfig
    from rtsep.train.tfprior import TFPriorTraining, train_tf_prior

    model_dir = tmp_path_factory.mktemp("tiny-tf")
    for k, source in enumerate(SOURCES):
        train_tf_prior(source, toy_data, model_dir, TFPriorConfig(seed=k, **TINY_TF),
                       TFPriorTraining(steps=150, batch=16, frames=12, lr=3e-3, gain_min=0.5, gain_max=1.5,
                                       checkpoint_every=75), show=False)
    return model_dir
