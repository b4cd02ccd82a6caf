"""The env factory: MinAtar games and Gymnasium ids, their specs, seeding."""

import numpy as np
import pytest

from wmrl.envs import action_spec, make_env, obs_spec


def test_minatar_game_has_full_action_set_bool_grid_and_sticky_actions():
    env = make_env("minatar:breakout", {"sticky_action_prob": 0.1})
    obs, _ = env.reset(seed=0)
    assert obs.shape == (10, 10, 4) and obs.dtype == np.bool_
    spec = obs_spec(env)
    assert (spec.kind, spec.shape, spec.dtype) == ("grid", (10, 10, 4), "bool")
    assert spec.channels == ("paddle", "ball", "trail", "brick")
    assert action_spec(env).to_dict() == {"kind": "discrete", "n": 6, "shape": []}
    assert env.unwrapped.game.sticky_action_prob == 0.1


@pytest.mark.parametrize("game, channels", [("asterix", 4), ("freeway", 7), ("seaquest", 10), ("space_invaders", 6)])
def test_every_minatar_game_shares_the_six_action_space(game, channels):
    env = make_env(f"minatar:{game}")
    assert env.action_space.n == 6 and env.observation_space.shape == (10, 10, channels)


def test_minatar_same_seed_same_trajectory():
    def rollout(seed):
        env = make_env("minatar:seaquest")
        frames = [env.reset(seed=seed)[0]]
        for action in [1, 2, 3, 4, 5, 0] * 20:
            frames.append(env.step(action)[0])
        return np.stack(frames)

    assert np.array_equal(rollout(3), rollout(3))
    assert not np.array_equal(rollout(3), rollout(4))


def test_minatar_time_limit_truncates():
    env = make_env("minatar:freeway", max_episode_steps=5)
    env.reset(seed=0)
    flags = [env.step(0)[2:4] for _ in range(5)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])


def test_gymnasium_id():
    env = make_env("CartPole-v1", max_episode_steps=50)
    obs, _ = env.reset(seed=0)
    assert obs_spec(env).kind == "vector" and obs.shape == (4,)
    assert action_spec(env).n == 2
    assert env.spec.max_episode_steps == 50
    assert action_spec(make_env("Pendulum-v1")).kind == "continuous"


def test_unknown_envs_fail_clearly():
    with pytest.raises(ValueError, match="not 'minatar:<game>', not 'atari:<Game>' and not a registered Gymnasium"):
        make_env("NoSuchEnv-v0")
    with pytest.raises(ValueError, match="unknown MinAtar game 'pong'"):
        make_env("minatar:pong")
    with pytest.raises(ValueError, match="unknown Atari game 'Pongg'"):
        make_env("atari:Pongg")
    with pytest.raises(ValueError, match="unknown environment 'minigrid:MiniGrid-NoSuch-v0'"):
        make_env("minigrid:MiniGrid-NoSuch-v0")


def test_atari_frames_as_jowa_sees_them():
    """84x84 grayscale, 4 frames a step, the full 18-action set, deterministic for a seed."""
    env = make_env("atari:Pong", {"full_action_space": True}, max_episode_steps=20)
    spec = obs_spec(env)
    assert (spec.kind, spec.shape, spec.dtype) == ("image", (84, 84, 1), "uint8")
    assert action_spec(env).n == 18
    runs, truncated = [], []
    for _ in range(2):
        obs, _ = env.reset(seed=3)
        steps = [env.step(i % 18) for i in range(20)]
        runs.append(np.stack([obs] + [step[0] for step in steps]))
        truncated.append([step[3] for step in steps])
    assert np.array_equal(runs[0], runs[1]) and runs[0].std() > 0
    assert truncated[0] == [False] * 19 + [True]  # max_episode_steps counts agent steps
