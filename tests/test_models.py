"""Model pieces: every backbone's parallel and recurrent paths agree; HL-Gauss targets and decoding."""

import pytest
import torch

from wmrl.models.backbones import BACKBONES, linear_scan, make_backbone
from wmrl.models.hl_gauss import HLGauss, symexp, symlog


@pytest.mark.parametrize("kind, gated", [("transformer", False), ("transformer", True), ("gru", False),
                                         ("ssm", False)])
def test_parallel_and_recurrent_paths_agree(kind, gated):
    torch.manual_seed(0)
    backbone = make_backbone(kind, dim=32, layers=2, heads=4, max_tokens=24, gated=gated, state_size=8).eval()
    x = torch.randn(3, 24, 32)
    with torch.no_grad():
        parallel = backbone(x)
        state = backbone.init_state(3)
        steps = []
        for t in range(x.shape[1]):
            y, state = backbone.step(x[:, t], state)
            steps.append(y)
    torch.testing.assert_close(torch.stack(steps, 1), parallel, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kind", BACKBONES)
def test_backbones_are_causal(kind):
    torch.manual_seed(0)
    backbone = make_backbone(kind, dim=16, layers=2, heads=2, max_tokens=10).eval()
    x = torch.randn(2, 10, 16)
    changed = x.clone()
    changed[:, 6:] += 1.0
    with torch.no_grad():
        torch.testing.assert_close(backbone(x)[:, :6], backbone(changed)[:, :6])


@pytest.mark.parametrize("length", [1, 5, 32, 37, 100])
def test_linear_scan_matches_the_recurrence(length):
    torch.manual_seed(0)
    a, b = torch.rand(2, length, 5), torch.randn(2, length, 5)
    h, expected = torch.zeros(2, 5), []
    for t in range(length):
        h = a[:, t] * h + b[:, t]
        expected.append(h)
    torch.testing.assert_close(linear_scan(a, b), torch.stack(expected, 1))


def test_unknown_backbone_and_full_context_fail_clearly():
    with pytest.raises(ValueError, match="unknown backbone 'lstm'"):
        make_backbone("lstm", 8, 1, 1, 4)
    transformer = make_backbone("transformer", 8, 1, 2, max_tokens=2)
    state = transformer.init_state(1)
    for _ in range(2):
        _, state = transformer.step(torch.zeros(1, 8), state)
    with pytest.raises(ValueError, match="context of 2 tokens is full"):
        transformer.step(torch.zeros(1, 8), state)


def test_hl_gauss_targets_are_distributions_that_decode_to_the_scalar():
    hl = HLGauss(-10.0, 10.0, bins=51)
    y = torch.linspace(-8, 8, 101)
    target = hl.target(y)
    torch.testing.assert_close(target.sum(-1), torch.ones(101))
    assert (target >= 0).all()
    width = 20 / 51
    assert (hl.decode(target.log()) - y).abs().max() < 0.01 * width  # log-probs as logits
    # targets are clamped to the support
    torch.testing.assert_close(hl.target(torch.tensor([25.0])), hl.target(torch.tensor([10.0])))
    assert hl.sigma == pytest.approx(0.75 * width)


def test_hl_gauss_loss_is_minimised_at_the_target():
    hl = HLGauss(0.0, 1.0, bins=11)
    y = torch.tensor([0.3])
    logits = torch.zeros(1, 11, requires_grad=True)
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        optimiser.zero_grad()
        hl.loss(logits, y).sum().backward()
        optimiser.step()
    assert hl.decode(logits).item() == pytest.approx(0.3, abs=0.01)


def test_symlog_inverts():
    x = torch.tensor([-1000.0, -1.0, 0.0, 0.5, 250.0])
    torch.testing.assert_close(symexp(symlog(x)), x)
