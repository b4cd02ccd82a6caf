"""Algorithm Distillation: the noise-distillation learning histories (wmrl.icrl.learning), their
contract kind (wmrl.icrl.histories) and the model (wmrl.models.ad), on tiny Dark Rooms."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from wmrl.icrl.arrays import LearningArrays
from wmrl.icrl.histories import CARD, HISTORIES, SCHEMAS, HistoriesError, read_histories, write_histories
from wmrl.icrl.learning import noise_distillation_histories
from wmrl.icrl.methods import ICRL_METHODS
from wmrl.icrl.tasks import darkroom_step, optimal_darkroom_action
from wmrl.models.ad import ADConfig, AlgorithmDistillation, ad_loss, deploy_darkroom

SIZE, GOALS, EPISODES, STEPS = 5, [(1, 2), (4, 4), (0, 3)], 10, 6
BACKBONES = ["transformer", "ssm", "gru"]


@pytest.fixture(autouse=True)
def one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def histories():
    return noise_distillation_histories(GOALS, EPISODES, STEPS, seed=0, per_task=40, size=SIZE)


def arrays_of(histories) -> LearningArrays:
    card = {"kind": histories.kind, "horizon": histories.horizon, "states": histories.states,
            "actions": histories.actions, "episode_steps": histories.episode_steps}
    return LearningArrays.from_frame(histories.frame, card)


# --------------------------------------------------------------------------- learning histories


def test_each_row_is_consecutive_episodes_of_one_learner_whose_noise_decays(histories):
    frame = histories.frame
    assert (histories.kind, histories.horizon, frame.height) == ("learning", EPISODES * STEPS, 3 * 40)
    assert dict(frame.schema) == SCHEMAS["learning"]
    columns = {name: np.stack(frame[name].to_list()).reshape(-1, EPISODES, STEPS)
               for name in ("states", "actions", "rewards", "next_states", "optimal_actions")}
    goal = np.array(GOALS)[frame["task"].to_numpy()][:, None, None]  # (rows, 1, 1, 2)
    assert (columns["states"][..., 0] == 0).all()  # every episode starts at (0, 0)
    np.testing.assert_array_equal(columns["states"][..., 1:], columns["next_states"][..., :-1])
    np.testing.assert_array_equal(columns["next_states"], darkroom_step(columns["states"], columns["actions"], SIZE))
    np.testing.assert_array_equal(columns["rewards"], columns["next_states"] == goal[..., 0] * SIZE + goal[..., 1])
    np.testing.assert_array_equal(columns["optimal_actions"],
                                  optimal_darkroom_action(columns["states"], (goal[..., 0], goal[..., 1]), SIZE))
    oracle_share = (columns["actions"] == columns["optimal_actions"]).mean(axis=(0, 2))  # per episode
    assert oracle_share[0] < 0.4  # ε_0 = 1: uniform, the oracle's action 1 time in 5
    assert (oracle_share[7:] == 1).all()  # ε_k = 0 from k = 0.7 K on
    assert (np.diff(oracle_share[:8]) > 0).all()
    returns = columns["rewards"].sum(2).mean(0)
    assert returns[-1] > returns[0]


def test_heldout_goals_are_refused_and_the_seed_fixes_the_rows():
    with pytest.raises(ValueError, match=r"held-out goals \[\(4, 4\)\]"):
        noise_distillation_histories(GOALS, EPISODES, STEPS, heldout=[(4, 4), (2, 2)], size=SIZE)
    first, again, other = (noise_distillation_histories(GOALS, EPISODES, STEPS, seed=seed, per_task=2, size=SIZE).frame
                           for seed in (0, 0, 1))
    assert first.equals(again) and not first.equals(other)


def test_learning_histories_round_trip_and_an_edited_file_is_refused(tmp_path, histories):
    card = write_histories(histories, tmp_path / "learning")
    frame, read_card = read_histories(tmp_path / "learning")
    assert read_card == card and frame.equals(histories.frame)
    assert {k: card[k] for k in ("format", "kind", "horizon", "episodes", "episode_steps", "histories")} == {
        "format": "wmrl.icrl/2", "kind": "learning", "horizon": EPISODES * STEPS, "episodes": EPISODES,
        "episode_steps": STEPS, "histories": 120}
    assert len(LearningArrays.from_frame(frame, read_card)) == 120
    with pytest.raises(ValueError, match="contexts kind"):
        ICRL_METHODS["dpt"].arrays(frame, read_card)  # DPT does not learn from learning histories

    card_path = tmp_path / "learning" / CARD
    card_path.write_text(json.dumps({**card, "episodes": EPISODES + 1}))
    with pytest.raises(HistoriesError, match="do not make the horizon"):
        read_histories(tmp_path / "learning")
    card_path.write_text(json.dumps(card))
    path = tmp_path / "learning" / HISTORIES
    pl.read_parquet(path).head(5).write_parquet(path)
    with pytest.raises(HistoriesError, match="sha256"):
        read_histories(tmp_path / "learning")


# --------------------------------------------------------------------------- windows


def test_windows_are_consecutive_steps_with_the_previous_action_and_reward(histories):
    arrays = arrays_of(histories)
    none = arrays.none_action
    assert none == 5
    windows = arrays.windows(64, np.random.default_rng(0), 15)
    assert set(windows) == {"states", "prev_actions", "prev_rewards", "actions", "optimal_actions"}
    assert all(value.shape == (64, 15) for value in windows.values())
    np.testing.assert_array_equal(windows["prev_actions"][:, 1:], windows["actions"][:, :-1])
    assert (windows["prev_actions"][:, 1:] != none).all()

    rows, starts = np.array([0, 7, 7, 119]), np.array([0, 1, 30, EPISODES * STEPS - 15])
    cut = arrays.windows_at(rows, starts, 15)
    for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
        steps = slice(start, start + 15)
        np.testing.assert_array_equal(cut["states"][i], arrays.states[row, steps])
        np.testing.assert_array_equal(cut["actions"][i], arrays.actions[row, steps])  # the target at t: a_t
        np.testing.assert_array_equal(cut["optimal_actions"][i], arrays.optimal_actions[row, steps])
        previous = slice(start - 1, start + 14) if start else slice(0, 14)
        expected_actions, expected_rewards = arrays.actions[row, previous], arrays.rewards[row, previous]
        if not start:
            expected_actions, expected_rewards = np.r_[none, expected_actions], np.r_[0, expected_rewards]
        np.testing.assert_array_equal(cut["prev_actions"][i], expected_actions)
        np.testing.assert_array_equal(cut["prev_rewards"][i], expected_rewards)
    assert (cut["prev_actions"] == none).sum() == 1  # at the one step 0 only

    with pytest.raises(ValueError, match="does not fit"):
        arrays.windows(1, np.random.default_rng(0), EPISODES * STEPS + 1)
    train, heldout = arrays.split(1 / 3)
    assert (len(train), len(heldout)) == (80, 40) and set(heldout.task) == {2} and train.none_action == none


# --------------------------------------------------------------------------- the model


@pytest.mark.parametrize("backbone", BACKBONES)
def test_the_model_is_causal_across_episode_boundaries(backbone, histories):
    torch.manual_seed(0)
    model = AlgorithmDistillation(SIZE * SIZE, 5, ADConfig(backbone=backbone, layers=2, context_steps=15)).eval()
    arrays = arrays_of(histories)
    window, other = (arrays.windows_at(np.array([row]), np.array([0]), 15) for row in (0, 119))
    inputs = [torch.from_numpy(window[name]) for name in ("states", "prev_actions", "prev_rewards")]
    others = [torch.from_numpy(other[name]) for name in ("states", "prev_actions", "prev_rewards")]
    full = model(*inputs)
    assert full.shape == (1, 15, 5)
    for t in (3, 8):  # episodes start at steps 6 and 12: the changed steps cross two boundaries, then one
        changed = model(*(torch.cat([x[:, :t + 1], y[:, t + 1:]], 1) for x, y in zip(inputs, others, strict=True)))
        torch.testing.assert_close(changed[:, :t + 1], full[:, :t + 1])
        assert not torch.allclose(changed[:, t + 1:], full[:, t + 1:])
    with pytest.raises(ValueError, match="context of 15 steps"):
        model(*(torch.cat([x, x[:, :1]], 1) for x in inputs))


def test_loss_is_the_mean_cross_entropy_over_positions():
    logits, actions = torch.randn(2, 4, 5), torch.randint(0, 5, (2, 4))
    expected = np.mean([-torch.log_softmax(logits[b, t], -1)[actions[b, t]].item() for b in range(2) for t in range(4)])
    assert ad_loss(logits, actions).item() == pytest.approx(expected, rel=1e-6)


def test_training_lowers_the_loss(histories):
    torch.manual_seed(0)
    config = ADConfig(layers=2, context_steps=24, batch_size=32)
    model = AlgorithmDistillation(SIZE * SIZE, 5, config)
    arrays, rng = arrays_of(histories), np.random.default_rng(0)

    def loss_on(batch):
        inputs = (torch.from_numpy(batch[name]) for name in ("states", "prev_actions", "prev_rewards"))
        return ad_loss(model(*inputs), torch.from_numpy(batch["actions"]))

    probe = arrays.windows(256, np.random.default_rng(1), config.context_steps)
    with torch.no_grad():
        before = loss_on(probe).item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=config.weight_decay)
    for _ in range(100):
        loss = loss_on(arrays.windows(config.batch_size, rng, config.context_steps))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        after = loss_on(probe).item()
    assert before > 1.5 and after < before - 0.3, (before, after)


def test_deployment_plays_every_goal_in_parallel():
    torch.manual_seed(0)
    model = AlgorithmDistillation(SIZE * SIZE, 5, ADConfig(layers=1, context_steps=8))
    returns = deploy_darkroom(model, GOALS, episodes=3, episode_steps=STEPS, size=SIZE,  # 18 steps: the window slides
                              generator=torch.Generator().manual_seed(0))
    assert returns.shape == (3, 3)
    assert ((returns >= 0) & (returns <= STEPS)).all() and (returns == returns.round()).all()
    again = deploy_darkroom(model, GOALS, 3, STEPS, SIZE, torch.Generator().manual_seed(0))
    np.testing.assert_array_equal(returns, again)
    with pytest.raises(ValueError, match="cannot play"):
        deploy_darkroom(model, GOALS, 1, STEPS, size=4)


def test_the_curve_does_not_credit_reading_the_previous_reward():
    """A stand-in that stays once the previous step was rewarded, and otherwise always moves x + 1,
    reads no context: on the oracle's last episodes its curve is the same in every episode."""
    from wmrl.icrl.methods import ICRL_METHODS

    class PreviousRewardOnly(torch.nn.Module):
        config = ADConfig(context_steps=3 * STEPS)

        def forward(self, states, prev_actions, prev_rewards):
            stay = torch.nn.functional.one_hot(torch.full_like(states, 4), 5).float()
            move = torch.nn.functional.one_hot(torch.zeros_like(states), 5).float()
            return 10 * torch.where(prev_rewards[..., None] > 0, stay, move)

    ad = ICRL_METHODS["ad"]
    icrl = {"ad": {"episodes": EPISODES, "decay": 0.5}, "episode_steps": STEPS, "size": SIZE}
    goals = [(2, 3), (4, 0), (1, 1)]
    curve = ad.curve(PreviousRewardOnly(), ad.curve_histories(icrl, goals, 0), len(goals))
    assert curve["context_accuracy"].shape == (3, 3) and ad.curve_step(icrl) == STEPS
    np.testing.assert_allclose(curve["context_accuracy"], curve["context_accuracy"][:, :1].repeat(3, 1))
    assert (curve["context_accuracy"] < 1).all()  # the steps after the reward, where it is right, do not count
