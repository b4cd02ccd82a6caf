"""Model pieces: every backbone's parallel and recurrent paths agree; HL-Gauss targets and decoding."""

import pytest
import torch

from wmrl.models.backbones import BACKBONES, backbone_parameters, chunked_ssd, make_backbone, matched_width
from wmrl.models.scalar_heads import HLGauss, TwoHot, make_scalar_head, symexp, symlog


@pytest.mark.parametrize("kind, length", [(kind, 24) for kind in BACKBONES] + [("ssm", 150)])  # SSM: three chunks
def test_parallel_and_recurrent_paths_agree(kind, length):
    torch.manual_seed(0)
    backbone = make_backbone(kind, dim=32, layers=2, heads=4, max_tokens=length, state_size=8).eval()
    x = torch.randn(3, length, 32)
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


@pytest.mark.parametrize("length, chunk", [(1, 64), (5, 4), (37, 8), (64, 64), (130, 16)])
def test_chunked_ssd_matches_the_recurrence(length, chunk):
    """One chunk, several, and a last chunk that is padded: all equal the step-by-step recurrence."""
    torch.manual_seed(0)
    x, B, C = torch.randn(2, length, 3, 4), torch.randn(2, length, 5), torch.randn(2, length, 5)
    log_a = -torch.rand(2, length, 3)
    h, expected = torch.zeros(2, 3, 4, 5), []
    for t in range(length):
        h = torch.exp(log_a[:, t])[..., None, None] * h + x[:, t, :, :, None] * B[:, t, None, None, :]
        expected.append((h @ C[:, t, None, :, None]).squeeze(-1))
    torch.testing.assert_close(chunked_ssd(x, log_a, B, C, chunk), torch.stack(expected, 1), rtol=1e-4, atol=1e-4)


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


@pytest.mark.parametrize("dim, layers, heads", [(64, 2, 4), (128, 2, 4), (192, 4, 6), (32, 4, 1)])
def test_matched_widths_give_every_backbone_the_transformers_parameter_count(dim, layers, heads):
    """Equal widths would not compare like with like (a GRU layer holds half a transformer block's
    weights, a GTrXL block twice); at the matched widths every count is within 10%."""
    target = backbone_parameters("transformer", dim, layers, heads, 33)
    assert abs(backbone_parameters("gru", dim, layers, heads, 33) / target - 1) > 0.3
    for kind in BACKBONES:
        width = matched_width(kind, dim, layers, heads, 33)
        assert abs(backbone_parameters(kind, width, layers, heads, 33) / target - 1) <= 0.10, (kind, width)
        make_backbone(kind, width, layers, heads, 33)  # a width the backbone takes


def test_two_hot_targets_split_the_mass_between_the_two_nearest_centres():
    head = TwoHot(-1.0, 1.0, bins=5)  # centres -0.8, -0.4, 0, 0.4, 0.8
    target = head.target(torch.tensor([0.1, -0.8, 5.0]))
    torch.testing.assert_close(target[0], torch.tensor([0, 0, 0.75, 0.25, 0]))
    torch.testing.assert_close(target[1], torch.tensor([1.0, 0, 0, 0, 0]))
    torch.testing.assert_close(target[2], torch.tensor([0, 0, 0, 0, 1.0]))  # clamped to the last centre
    y = torch.linspace(-0.8, 0.8, 33)
    torch.testing.assert_close(head.decode(head.target(y).clamp(min=1e-12).log()), y, atol=1e-5, rtol=0)


def test_the_regression_head_decodes_its_output_and_unknown_value_losses_fail_clearly():
    head = make_scalar_head("mse", support=6.0, bins=51)
    assert head.outputs == 1
    out = torch.tensor([[0.5], [-2.0]])
    torch.testing.assert_close(head.decode(out), torch.tensor([0.5, -2.0]))
    torch.testing.assert_close(head.loss(out, torch.tensor([1.5, -2.0])), torch.tensor([0.5, 0.0]))
    with pytest.raises(ValueError, match="unknown value loss 'huber'"):
        make_scalar_head("huber", 6.0, 51)
