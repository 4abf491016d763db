"""A priors-only set (`rtsep.ship`, tools/ship_priors.py): float16 weights that load as the float32 priors they came
from, and a Separator that separates with the card's cold chain alone (no encoder, no stems)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from rtsep.bands import BandPrior
from rtsep.card import read_card, update_card
from rtsep.engine import BlockGeometry
from rtsep.errors import BundleError
from rtsep.metrics import si_sdr_improvement
from rtsep.separation_eval import held_out_mixtures
from rtsep.separator import Separator

from rtsep import ship as shipped
from rtsep.separation_eval import chain_flags
from rtsep.ship import ship


@pytest.fixture(scope="module")
def basis_set(tiny_priors, tmp_path_factory):
    dst = tmp_path_factory.mktemp("basis")
    sources = ship(tiny_priors, dst)
    # a shorter chain than the shipped one (200 steps, 2 swap rounds, 1 band sweep), for the test's time
    update_card(dst, "langevin", value={"steps": 12, "space": "mask", "sigma_start": 0.3, "sigma_end": 0.01,
                                        "mask_lr": 0.1, "temperature": 0.0, "warm_start": 0.0, "relabel_every": 20,
                                        "swaps": 1, "swap_steps": 3})
    return dst, sources


def test_float16_priors_keep_their_log_density(basis_set, tiny_priors, toy_data):
    dst, sources = basis_set
    assert sources == ["saw", "sine", "square", "triangle"]
    state = torch.load(dst / "priors" / "saw.pt", weights_only=True)
    assert all(v.dtype == torch.float16 for v in state.values() if v.is_floating_point())
    change = shipped.check(tiny_priors, dst, toy_data, clips=4)
    assert 0 < change < 5e-3, change  # really rounded, and by little
    assert read_card(dst)["weights_dtype_check"]["max_abs_log_prob_change"] == change


def test_priors_only_separator_runs_the_cold_chain(basis_set, toy_data):
    dst, sources = basis_set
    src, mix = held_out_mixtures(toy_data, tuple(sources), 16000, "test", 2, 0.125)
    sep = Separator.load(dst, geometry=BlockGeometry(hop=mix.shape[-1], context=0, lookahead=0, crossfade=0))
    assert sep.run.steps == 12 and sep.sources == tuple(sources)
    gains = []
    for s, m in zip(src, mix):
        stems = sep.separate(m[None], 16000)[:, 0]
        assert np.abs(stems.sum(0) - m).max() < 1e-4  # the stems sum back to the input
        gains.append(si_sdr_improvement(s, stems * len(sources), m))
    # equal shares (no chain) score exactly 0 dB improvement; the tiny priors' chain moves every source
    assert np.abs(np.array(gains)).min() > 0.01, gains
    assert np.isfinite(gains).all()


def test_priors_only_set_errors(basis_set, tmp_path):
    dst, _ = basis_set
    with pytest.raises(BundleError, match="no ONNX graphs"):
        Separator.load(dst, backend="onnx")
    with pytest.raises(BundleError, match="no encoder"):
        Separator.load(dst, steps=0)
    ship(dst, tmp_path / "k0")
    update_card(tmp_path / "k0", "langevin", value={"steps": 0})
    with pytest.raises(BundleError, match="no encoder"):
        Separator.load(tmp_path / "k0")


def test_eval_cli_runs_band_moves_and_the_card_command_repeats_them(basis_set, toy_data, tmp_path):
    import json

    from typer.testing import CliRunner

    from rtsep.cli import app

    dst, _ = basis_set
    args = ["eval", "separate", str(dst), "--data", str(toy_data), "--steps", "4", "--clips", "1", "--seconds", "0.125",
            "--whole", "--json"]
    r = CliRunner().invoke(app, [*args, str(tmp_path / "b.json"), "--bands", "1"])
    assert r.exit_code == 0, r.output
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["langevin"]["bands"] == 1 and np.isfinite(res["per_clip"]["encoder+langevin4"]["si_sdri"]).all()
    assert " --bands 1 --swap-steps 3 --swap-sigma 0.05" in chain_flags(res)
    del res["langevin"]["bands"]  # a result from before the band moves existed ran without them
    assert " --bands 0" in chain_flags(res)
    r = CliRunner().invoke(app, [*args, str(tmp_path / "c.json"), "--bands", "-1"])
    assert r.exit_code != 0


def test_shipping_an_encoder_makes_a_warm_started_set(random_model, tmp_path):
    from conftest import write_random_model

    dst = tmp_path / "enc"
    assert shipped.ship(random_model, dst, encoder=random_model) == ["a", "b"]
    card = read_card(dst)
    assert (dst / "encoder.pt").read_bytes() == (random_model / "encoder.pt").read_bytes()
    assert card["encoder"] == read_card(random_model)["encoder"]
    assert card["langevin"]["warm_start"] == 1.0 and card["langevin"]["steps"] == shipped.WARM.steps == 4
    assert card["langevin"]["bands"] == 1 and card["langevin"]["swaps"] == 2
    sep = Separator.load(dst, steps=0)  # the encoder alone now runs: a priors-only set refuses this
    x = np.random.default_rng(0).standard_normal((1, 4096)).astype(np.float32) * 0.1
    assert sep.separate(x, 16000).shape[:2] == (2, 1)
    with pytest.raises(BundleError, match="holds an encoder"):
        shipped.ship(random_model, dst)  # priors only over an encoder set: its card would lie
    with pytest.raises(BundleError, match="holds no trained encoder"):
        shipped.ship(random_model, tmp_path / "x", encoder=tmp_path / "nothing")
    other = write_random_model(tmp_path / "other", sources=("a", "c"))
    with pytest.raises(BundleError, match="separates"):
        shipped.ship(random_model, tmp_path / "y", encoder=other)


def test_ship_chain_settings_reach_the_card(random_model, tmp_path):
    """--chain KEY=VALUE sets the shipped card's chain (music4-seed: 16 mask steps climbing the band
    prior); a bad key or value is refused before anything is written."""
    chain = shipped.parse_chain(["steps=16", "space=mask", "temperature=0", "band_weight=0.1", "consistency=false"])
    got = (chain.steps, chain.space, chain.temperature, chain.band_weight, chain.consistency)
    assert got == (16, "mask", 0.0, 0.1, False)
    with pytest.raises(BundleError, match="band_weight needs an encoder"):
        shipped.ship(random_model, tmp_path / "nb", encoder=random_model, chain=chain)  # no band prior to climb
    assert not (tmp_path / "nb").exists()  # refused before writing
    banded = tmp_path / "banded"
    shutil.copytree(random_model, banded)
    update_card(banded, "encoder", "band_prior", value=BandPrior(np.zeros((2, 7)), np.ones((2, 7)), 16000).to_dict())
    dst = tmp_path / "c"
    shipped.ship(random_model, dst, encoder=banded, chain=chain)
    assert read_card(dst)["langevin"]["band_weight"] == 0.1 and read_card(dst)["langevin"]["swaps"] == 0
    assert Separator.load(dst).backend.band_prior is not None  # the chain finds what it climbs
    with pytest.raises(BundleError, match="KEY=VALUE"):
        shipped.parse_chain(["bogus=1"])
    with pytest.raises(ValueError):
        shipped.parse_chain(["steps=many"])
