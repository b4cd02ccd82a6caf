"""In-context RL tasks (wmrl.icrl): the bandit and Dark Room families, their oracles, the
baselines DPT is compared with, and the in-context history datasets' contract."""

import gymnasium as gym
import numpy as np
import polars as pl
import pytest

from wmrl.icrl.baselines import (UCB, EmpiricalMean, Oracle, Thompson, Uniform, empirical_choice, lcb_choice,
                                 play_bandit, play_darkroom)
from wmrl.icrl.histories import (CARD, HISTORIES, SCHEMA, HistoriesError, bandit_histories, darkroom_histories,
                                 read_histories, write_histories)
from wmrl.icrl.tasks import (bandit_tasks, darkroom_goals, darkroom_step, optimal_arm, optimal_bandit_return,
                             optimal_darkroom_action, optimal_darkroom_return, split_goals)

ARMS, HORIZON, TASKS = 5, 500, 50


def cumulative_regret(make_policy, seed=0):
    """Cumulative pseudo-regret per step, averaged over TASKS bandits of ARMS arms."""
    rng = np.random.default_rng(seed)
    means_list = bandit_tasks(TASKS, ARMS, seed=seed)
    return np.mean([np.cumsum(play_bandit(make_policy(means), means, HORIZON, rng)[1]) for means in means_list],
                   axis=0)


@pytest.fixture(scope="module")
def regrets():
    policies = {"oracle": Oracle, "uniform": lambda m: Uniform(ARMS), "empirical": lambda m: EmpiricalMean(ARMS),
                "ucb": lambda m: UCB(ARMS), "thompson": lambda m: Thompson(ARMS)}
    return {name: cumulative_regret(make) for name, make in policies.items()}


# --------------------------------------------------------------------------- bandits


def test_bandit_env_through_gymnasium():
    env = gym.make("wmrl.icrl:wmrl/Bandit-v0", means=[0.2, 0.8], horizon=3)
    assert env.reset(seed=0)[0] == 0
    first = [env.step(1)[1] for _ in range(3)]
    env.reset(seed=0)
    steps = [env.step(1) for _ in range(3)]
    assert [s[1] for s in steps] == first  # reset seeds the noise
    assert [s[3] for s in steps] == [False, False, True]  # truncated at the horizon


def test_oracle_has_no_regret(regrets):
    assert regrets["oracle"][-1] == 0
    means = [0.2, 0.9, 0.5]
    rewards, _ = play_bandit(Oracle(means), means, HORIZON, np.random.default_rng(0))
    assert optimal_bandit_return(means, HORIZON) == pytest.approx(0.9 * HORIZON)
    assert abs(rewards.sum() - optimal_bandit_return(means, HORIZON)) < 4 * np.sqrt(0.3 * HORIZON)


def test_ucb_and_thompson_regret_grows_sublinearly(regrets):
    uniform = regrets["uniform"]
    assert uniform[-1] / uniform[HORIZON // 2 - 1] == pytest.approx(2, rel=0.1)  # linear
    for name in ("ucb", "thompson"):
        regret = regrets[name]
        assert regret[-1] / regret[HORIZON // 2 - 1] < 1.5, name
        assert regret[-1] < uniform[-1] / 4, name


def test_offline_choosers_find_the_best_arm_with_enough_data():
    rng = np.random.default_rng(0)
    means = np.array([0.1, 0.3, 0.5, 0.9, 0.7])
    actions = np.repeat(np.arange(ARMS), 400)
    rewards = means[actions] + np.sqrt(0.3) * rng.standard_normal(len(actions))
    assert empirical_choice(actions, rewards, ARMS) == lcb_choice(actions, rewards, ARMS) == optimal_arm(means) == 3


def test_lcb_is_pessimistic_about_an_arm_pulled_once():
    actions = [0] * 400 + [1]
    rewards = [0.6] * 400 + [0.95]
    assert empirical_choice(actions, rewards, ARMS) == 1
    assert lcb_choice(actions, rewards, ARMS) == 0  # 0.6 - 1/20 > 0.95 - 1


# --------------------------------------------------------------------------- Dark Room


def test_darkroom_env_through_gymnasium():
    env = gym.make("wmrl.icrl:wmrl/DarkRoom-v0", goal=(3, 4))
    assert env.reset(seed=0)[0] == 0
    assert env.observation_space.n == 100 and env.action_space.n == 5
    assert env.step(0)[0] == 10  # x + 1: index x * size + y
    assert env.step(3)[0] == 10  # y - 1 at the wall: clipped


@pytest.mark.parametrize("goal", [(0, 0), (0, 1), (3, 4), (9, 9)])
def test_darkroom_oracle_takes_the_manhattan_path(goal):
    state, steps = 0, 0
    while state != goal[0] * 10 + goal[1]:
        state = int(darkroom_step(state, optimal_darkroom_action(state, goal)))
        steps += 1
    assert steps == goal[0] + goal[1]
    oracle = play_darkroom(lambda s, history: optimal_darkroom_action(s, goal), goal, episodes=2)
    assert oracle.tolist() == [optimal_darkroom_return(goal)] * 2
    assert optimal_darkroom_return(goal) == 100 - max(goal[0] + goal[1] - 1, 0)


def test_goal_split_holds_out_twenty_never_trained_on():
    train, heldout = split_goals(darkroom_goals(10), heldout=20, seed=0)
    assert (len(train), len(heldout)) == (80, 20)
    assert sorted(train + heldout) == darkroom_goals(10)
    assert split_goals(darkroom_goals(10), 20, seed=0) == (train, heldout)
    frame = darkroom_histories(train, horizon=100, seed=0, heldout=heldout).frame
    seen = {tuple(train[t]) for t in frame["task"].unique()}
    assert seen == set(train) and not seen & set(heldout)
    with pytest.raises(ValueError, match="held-out"):
        darkroom_histories(train + heldout[:1], horizon=100, seed=0, heldout=heldout)


# --------------------------------------------------------------------------- history datasets


def written(tmp_path, histories, name):
    card = write_histories(histories, tmp_path / name)
    return card, (tmp_path / name / HISTORIES).read_bytes()


def test_bandit_histories_follow_the_contract(tmp_path):
    means = bandit_tasks(6, ARMS, seed=0)
    card, _ = written(tmp_path, bandit_histories(means, horizon=40, seed=1, per_task=2), "bandit")
    frame, read_card = read_histories(tmp_path / "bandit")
    assert read_card == card and not (tmp_path / "bandit.partial").exists()
    assert dict(frame.schema) == SCHEMA and frame.height == card["histories"] == 12
    assert {k: card[k] for k in ("format", "kind", "family", "states", "actions", "horizon", "seed")} == {
        "format": "wmrl.icrl/2", "kind": "contexts", "family": "bandit", "states": 1, "actions": ARMS, "horizon": 40,
        "seed": 1}
    assert card["tasks"] == means.tolist()
    for column in ("states", "actions", "rewards", "next_states"):
        assert (frame[column].list.len() == 40).all()
    assert frame["states"].explode().max() == frame["next_states"].explode().max() == 0
    assert (frame["query_state"] == 0).all()
    assert frame["optimal_action"].to_list() == [optimal_arm(means[t]) for t in frame["task"]]


def test_darkroom_histories_follow_the_contract(tmp_path):
    goals = [(3, 4), (9, 0)]
    card, _ = written(tmp_path, darkroom_histories(goals, horizon=100, seed=0), "room")
    frame, _ = read_histories(tmp_path / "room")
    assert (card["family"], card["states"], card["actions"], card["tasks"]) == ("darkroom", 100, 5, [[3, 4], [9, 0]])
    row = frame.row(1, named=True)
    goal = goals[row["task"]]
    assert row["next_states"] == [int(darkroom_step(s, a)) for s, a in zip(row["states"], row["actions"])]
    assert row["rewards"] == [float(n == goal[0] * 10 + goal[1]) for n in row["next_states"]]
    assert row["optimal_action"] == optimal_darkroom_action(row["query_state"], goal)


def test_histories_bytes_are_fixed_by_the_seed(tmp_path):
    means = bandit_tasks(5, ARMS, seed=0)
    _, first = written(tmp_path, bandit_histories(means, 30, seed=0), "a")
    _, again = written(tmp_path, bandit_histories(means, 30, seed=0), "b")
    _, other = written(tmp_path, bandit_histories(means, 30, seed=1), "c")
    assert first == again != other
    _, room = written(tmp_path, darkroom_histories([(1, 1)], 50, seed=0), "d")
    _, room_again = written(tmp_path, darkroom_histories([(1, 1)], 50, seed=0), "e")
    _, room_other = written(tmp_path, darkroom_histories([(1, 1)], 50, seed=1), "f")
    assert room == room_again != room_other


def test_an_edited_history_file_is_refused(tmp_path):
    write_histories(darkroom_histories([(2, 2)], 20, seed=0), tmp_path / "room")
    path = tmp_path / "room" / HISTORIES
    pl.read_parquet(path).head(0).write_parquet(path)
    with pytest.raises(HistoriesError, match="sha256"):
        read_histories(tmp_path / "room")
    (tmp_path / "room" / CARD).unlink()
    with pytest.raises(HistoriesError, match="not a complete"):
        read_histories(tmp_path / "room")
