"""The flow prior is a real bijection with an exact log-determinant, noise-conditioned."""

import pytest
import torch

from rtsep.nn.flow import FlowPrior, PriorConfig, squeeze, unsqueeze


def tiny_prior(seed: int = 0, mixing: str = "flip") -> FlowPrior:
    torch.manual_seed(seed)
    prior = FlowPrior(PriorConfig(source="x", squeeze=4, n_flows=3, hidden=8, layers=2, mixing=mixing))
    prior.train()
    prior(torch.randn(4, 1, 64) * 0.5, 0.1)  # ActNorm data init
    # Perturb the zero-initialised output layers so the couplings are not the identity.
    with torch.no_grad():
        for c in prior.couplings:
            c.net.end.weight.normal_(0, 0.3)
            c.net.end.bias.normal_(0, 0.3)
    return prior.eval().double()


def test_squeeze_roundtrip():
    x = torch.randn(2, 1, 64)
    assert torch.equal(unsqueeze(squeeze(x, 16), 16), x)
    assert squeeze(x, 16)[0, 3, 1] == x[0, 0, 16 + 3]


@pytest.mark.parametrize("mixing", ["flip", "lu"])
def test_flow_inverts(mixing):
    prior = tiny_prior(mixing=mixing)
    x = torch.randn(3, 1, 128, dtype=torch.float64) * 0.5
    for sigma in (0.01, 0.3):
        z, _ = prior(x, sigma)
        assert (prior.inverse(z, sigma) - x).abs().max() < 1e-4
        # and it really transforms: z is not a reshuffle of x
        assert (z.flatten().sort().values - x.flatten().sort().values).abs().max() > 1e-2


@pytest.mark.parametrize("mixing", ["flip", "lu"])
def test_logdet_matches_bruteforce_jacobian(mixing):
    prior = tiny_prior(1, mixing)
    x = torch.randn(1, 1, 16, dtype=torch.float64) * 0.5
    for sigma in (0.02, 0.2):
        _, logdet = prior(x, sigma)
        jac = torch.autograd.functional.jacobian(lambda v: prior(v.reshape(1, 1, 16), sigma)[0].flatten(), x.flatten())
        sign, brute = torch.linalg.slogdet(jac)
        assert sign > 0
        assert abs(float(logdet[0].detach()) - float(brute)) < 1e-6


def test_sigma_conditions_the_density():
    prior = tiny_prior(2)
    x = torch.randn(2, 1, 64, dtype=torch.float64) * 0.5
    assert not torch.allclose(prior.log_prob(x, 0.01), prior.log_prob(x, 0.3))


def test_actnorm_init_flag_round_trips():
    prior = tiny_prior(3)
    state = prior.state_dict()
    fresh = FlowPrior(prior.cfg).double()
    fresh.load_state_dict(state)
    fresh.train()
    x = torch.randn(2, 1, 64, dtype=torch.float64)
    before = fresh.norms[0].loc.clone()
    fresh(x, 0.1)  # must not re-initialise: the flag came with the weights
    assert torch.equal(before, fresh.norms[0].loc)


def test_score_is_gradient_of_log_prob():
    prior = tiny_prior(4)
    x = torch.randn(1, 1, 32, dtype=torch.float64) * 0.3
    g = prior.score(x, 0.05)
    e = torch.zeros_like(x)
    e[0, 0, 5] = 1e-6
    fd = (prior.log_prob_sum(x + e, 0.05) - prior.log_prob_sum(x - e, 0.05)) / 2e-6
    assert abs(float(fd[0]) - float(g[0, 0, 5])) < 1e-4 * max(1.0, abs(float(fd[0])))


def test_shape_log_prob_judges_shape_and_level_separately():
    """Level-normalised evaluation: the shape term ignores loudness, the level prior prices it."""
    import math

    prior = tiny_prior()
    prior.cfg.level, prior.cfg.level_spread, prior.cfg.level_weight = 0.3, 0.5, 0.1
    x = torch.randn(2, 1, 128, dtype=torch.float64)
    x = 0.3 * x / x.pow(2).mean(dim=-1, keepdim=True).sqrt()  # exactly at the reference level
    at_level = prior.shape_log_prob_sum(x, 0.05)
    assert torch.allclose(at_level, prior.log_prob_sum(x, 0.05))  # no rescaling, no level cost
    louder = prior.shape_log_prob_sum(2 * x, 0.05)
    cost = 0.1 * 128 * 0.5 * (math.log(2) / 0.5) ** 2
    assert torch.allclose(at_level - louder, torch.full_like(louder, cost))
    assert torch.allclose(prior.shape_log_prob_sum(0.5 * x, 0.05), louder)  # symmetric in log level
    prior.cfg.level = 0.0  # raw density: louder is a different (here much lower) density
    assert not torch.allclose(prior.shape_log_prob_sum(2 * x, 0.05) - prior.shape_log_prob_sum(x, 0.05),
                              torch.zeros(2, dtype=torch.float64))


def test_lu_mixing_is_learned_and_old_cards_stay_flip():
    """`lu` mixes channels with trainable weights; a card written before `mixing` existed loads as `flip`."""
    prior = tiny_prior(4, "lu")
    assert prior.mixers is not None and prior.mixers[0].log_s.requires_grad
    w = prior.mixers[0].weight().detach()
    assert (w - torch.diag(torch.diagonal(w))).abs().max() > 0.1  # not a permutation or a scaling
    old = prior.cfg.to_dict()
    del old["mixing"]
    assert PriorConfig.from_dict(old).mixing == "flip"
    with pytest.raises(ValueError, match="mixing"):
        FlowPrior(PriorConfig(source="x", mixing="shuffle"))
