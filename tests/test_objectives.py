"""The joint JOWA objective: it trains, its TD switch, and its CQL term."""

import copy

import numpy as np
import pytest
import torch

from wmrl.data import open_dataset
from wmrl.data.windows import WindowSampler, load_steps, obs_layout
from wmrl.models.config import BACKBONES, VALUE_LOSSES, ModelConfig
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.rl.config import LossConfig
from wmrl.rl.objectives import joint_loss


def tiny_model(backbone="transformer", window=8, obs_shape=(10, 10, 4), value_loss="hl_gauss"):
    torch.manual_seed(0)
    shape = ModelShape("grid", obs_shape, actions=6, tasks=2, window=window)
    return WorldActionModel(shape, ModelConfig(backbone=backbone, dim=32, layers=1, heads=2, bins=21,
                                               value_loss=value_loss))


@pytest.fixture(scope="module")
def sampler(random_dataset):
    dataset = open_dataset(random_dataset)
    layout = obs_layout({"breakout": dataset.card})
    return WindowSampler([load_steps([dataset], "breakout", 0)], layout, window=8)


def batch_of(sampler, size, seed):
    return {k: torch.as_tensor(v) for k, v in sampler.sample(size, np.random.default_rng(seed)).items()}


def train(model, target, sampler, weights, steps):
    """`steps` AdamW steps (lr 3e-3) on batches of 32 windows; the last step's loss parts."""
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(steps):
        loss, parts = joint_loss(model, target, batch_of(sampler, 32, seed=step), weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return parts


@pytest.mark.parametrize("backbone", BACKBONES)
def test_joint_loss_decreases_on_a_tiny_fixture(sampler, backbone):
    model = tiny_model(backbone)
    target = copy.deepcopy(model).requires_grad_(False)
    weights = LossConfig()
    fixed = batch_of(sampler, 64, seed=123)
    before = joint_loss(model, target, fixed, weights)[1]
    train(model, target, sampler, weights, 60)
    after = joint_loss(model, target, fixed, weights)[1]
    for part in ("next_obs", "reward", "termination"):
        assert after[part] < 0.7 * before[part], (part, before[part], after[part])
    assert all(torch.isfinite(v) for v in after.values())


@pytest.mark.parametrize("value_loss", VALUE_LOSSES)
def test_every_value_loss_learns_the_reward_and_decodes_it(sampler, value_loss):
    """Reward, value and Q heads share the head kind; trained on rewards, each decodes closer to them
    (the regression head's single output included)."""
    model = tiny_model(value_loss=value_loss)
    target = copy.deepcopy(model).requires_grad_(False)
    weights = LossConfig(next_obs=0, termination=0, cql_alpha=0)
    fixed = batch_of(sampler, 64, seed=123)

    def reward_error():
        with torch.no_grad():
            out = model(fixed["obs"], fixed["actions"], fixed["task"])
        mask = fixed["mask"]
        return (model.decode_scalar(out["reward"]) - fixed["reward"]).abs()[mask].mean()

    outputs = {"hl_gauss": 21, "two_hot": 21, "mse": 1}[value_loss]
    out = model(fixed["obs"], fixed["actions"], fixed["task"])
    assert out["reward"].shape[-1] == out["value"].shape[-1] == out["q"].shape[-1] == outputs
    before = reward_error()
    parts = train(model, target, sampler, weights, 60)
    assert reward_error() < 0.5 * before, (before, reward_error())
    assert all(torch.isfinite(v) for v in parts.values()) and {"td", "value", "reward"} <= set(parts)


def test_td_to_backbone_switch_keeps_value_gradients_out_of_the_backbone(sampler):
    model = tiny_model()
    target = copy.deepcopy(model).requires_grad_(False)
    batch = batch_of(sampler, 8, seed=0)
    only_values = LossConfig(next_obs=0, reward=0, termination=0, td=1, cql_alpha=1, td_to_backbone=False)
    joint_loss(model, target, batch, only_values)[0].backward()
    assert all(p.grad is None or not p.grad.any() for p in model.backbone.parameters())
    assert model.q_head[0].weight.grad.abs().sum() > 0
    model.zero_grad()
    joint_loss(model, target, batch, LossConfig(next_obs=0, reward=0, termination=0))[0].backward()
    assert any(p.grad is not None and p.grad.any() for p in model.backbone.parameters())


def test_cql_pushes_down_actions_the_data_did_not_take(sampler):
    model = tiny_model()
    target = copy.deepcopy(model).requires_grad_(False)
    batch = batch_of(sampler, 32, seed=0)
    weights = LossConfig(next_obs=0, reward=0, termination=0, td=0, cql_alpha=1)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = joint_loss(model, target, batch, weights)[1]["cql"]
    for _ in range(30):
        optimiser.zero_grad()
        joint_loss(model, target, batch, weights)[0].backward()
        optimiser.step()
    assert joint_loss(model, target, batch, weights)[1]["cql"] < first


def test_only_the_weighted_terms_run(sampler, monkeypatch):
    """Behaviour cloning runs neither the target network nor the decoders; TD runs the target's
    value heads only."""
    model = tiny_model()
    batch = batch_of(sampler, 8, seed=0)

    class NoTarget(torch.nn.Module):
        def forward(self, *args, **kwargs):
            raise AssertionError("the target network ran")

    def no_decoder(*args):
        raise AssertionError("the next-observation decoder ran")

    monkeypatch.setattr(model.next_obs_head, "forward", no_decoder)
    bc = LossConfig(next_obs=0, reward=0, termination=0, td=0, cql_alpha=1)
    _, parts = joint_loss(model, NoTarget(), batch, bc)
    assert set(parts) == {"cql"}
    target = copy.deepcopy(model)
    td = LossConfig(next_obs=0, reward=0, termination=0)
    _, parts = joint_loss(model, target, batch, td)
    assert set(parts) == {"td", "value", "cql"}


def test_an_untrained_world_model_predicts_that_nothing_changes(sampler):
    model = tiny_model().eval()
    batch = batch_of(sampler, 16, seed=1)
    with torch.no_grad():
        predicted = model.predicted_obs(model(batch["obs"], batch["actions"], batch["task"])["next_obs"])
    assert torch.equal(predicted, batch["obs"][:, :-1])


def test_the_world_model_learns_what_copying_the_frame_misses(sampler):
    """Breakout's ball moves along its trail and the paddle with the action: a little training
    on world-model losses alone beats "nothing changes" one step ahead."""
    from wmrl.evaluate.world_model import open_loop_errors

    model = tiny_model()
    train(model, model, sampler, LossConfig(td=0, cql_alpha=0), 150)
    model_error, still_error, counts = open_loop_errors(model.eval(), batch_of(sampler, 64, seed=999),
                                                        torch.ones(10, 10, 4))
    assert model_error[0] < 0.8 * still_error[0], (model_error / counts, still_error / counts)
