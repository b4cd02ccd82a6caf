"""The joint JOWA objective: it trains, its TD switch, and its CQL term."""

import copy

import numpy as np
import pytest
import torch

from wmrl.data import open_dataset
from wmrl.data.windows import WindowSampler, load_steps, obs_layout
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.config import LossConfig, ModelConfig
from wmrl.rl.objectives import joint_loss


def tiny_model(backbone="transformer", window=8, obs_shape=(10, 10, 4)):
    torch.manual_seed(0)
    shape = ModelShape("grid", obs_shape, actions=6, tasks=2, window=window)
    return WorldActionModel(shape, ModelConfig(backbone=backbone, dim=32, layers=1, heads=2, bins=21))


@pytest.fixture(scope="module")
def sampler(random_dataset):
    dataset = open_dataset(random_dataset)
    layout = obs_layout({"breakout": dataset.card})
    return WindowSampler([load_steps([dataset], "breakout", 0)], layout, window=8)


def batch_of(sampler, size, seed):
    return {k: torch.as_tensor(v) for k, v in sampler.sample(size, np.random.default_rng(seed)).items()}


@pytest.mark.parametrize("backbone", ["transformer", "gru", "ssm"])
def test_joint_loss_decreases_on_a_tiny_fixture(sampler, backbone):
    model = tiny_model(backbone)
    target = copy.deepcopy(model).requires_grad_(False)
    weights = LossConfig()
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    fixed = batch_of(sampler, 64, seed=123)
    before = joint_loss(model, target, fixed, weights)[1]
    for step in range(60):
        loss, _ = joint_loss(model, target, batch_of(sampler, 32, seed=step), weights)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = joint_loss(model, target, fixed, weights)[1]
    for part in ("next_obs", "reward", "termination"):
        assert after[part] < 0.7 * before[part], (part, before[part], after[part])
    assert all(torch.isfinite(v) for v in after.values())


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
