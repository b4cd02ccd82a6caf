"""Planning: beam search never picks an action the task lacks, and horizon 1 is the greedy policy."""

import pytest
import torch

from wmrl.models.config import ModelConfig
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.rl.planning import beam_search


def model_with_uneven_actions(backbone: str) -> WorldActionModel:
    """Two tasks on 5x5 grids with 3 channels: task 0 has 5 actions, task 1 only 2."""
    torch.manual_seed(0)
    shape = ModelShape("grid", (5, 5, 3), actions=5, tasks=2, window=6, task_actions=(5, 2))
    return WorldActionModel(shape, ModelConfig(backbone=backbone, dim=32, layers=1, heads=2)).eval()


def context(batch: int, steps: int, seed: int):
    generator = torch.Generator().manual_seed(seed)
    obs = (torch.rand(batch, steps + 1, 5, 5, 3, generator=generator) > 0.7).float()
    actions = torch.randint(0, 2, (batch, steps), generator=generator)
    return obs, actions


@pytest.mark.parametrize("backbone", ["transformer", "gru", "ssm"])
@pytest.mark.parametrize("width, horizon", [(1, 1), (1, 3), (2, 2), (4, 3), (10, 2)])
def test_planning_never_returns_an_invalid_action(backbone, width, horizon):
    model = model_with_uneven_actions(backbone)
    with torch.no_grad():  # push the Q-values of the missing actions far above the others
        model.q_head[-1].bias.view(5, -1)[2:] += 50.0
    for seed in range(5):
        obs, actions = context(8, 2, seed)
        task = torch.tensor([1] * 6 + [0] * 2)
        chosen = beam_search(model, model.tokens(obs, actions, task), obs[:, -1], task, width, horizon, 0.99,
                             torch.ones(5, 5, 3))
        assert chosen.shape == (8,)
        assert (chosen[:6] < 2).all(), chosen  # task 1 has actions 0 and 1 only
        assert ((chosen >= 0) & (chosen < 5)).all()


@pytest.mark.parametrize("backbone", ["transformer", "gru", "ssm"])
def test_horizon_one_is_the_greedy_policy(backbone):
    model = model_with_uneven_actions(backbone)
    obs, actions = context(6, 3, 1)
    task = torch.tensor([0, 1, 0, 1, 0, 1])
    with torch.no_grad():
        greedy = model.q_values(model(obs, actions, task)["q"][:, -1], task).argmax(-1)
        planned = beam_search(model, model.tokens(obs, actions, task), obs[:, -1], task, width=3, horizon=1,
                              gamma=0.99, obs_mask=torch.ones(5, 5, 3))
    assert torch.equal(planned, greedy)


def test_bad_planning_settings_fail_clearly():
    model = model_with_uneven_actions("transformer")
    obs, actions = context(1, 1, 0)
    with pytest.raises(ValueError, match="horizon >= 1"):
        task = torch.zeros(1, dtype=torch.long)
        beam_search(model, model.tokens(obs, actions, task), obs[:, -1], task, 2, 0, 0.99, torch.ones(5, 5, 3))
