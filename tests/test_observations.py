"""Observation spaces brought into model form: Dict, Tuple, Discrete, MiniGrid's symbolic view,
small frames; wrappers by import path; every task's env checked before any job starts."""

import subprocess

import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import ROOT, snakemake_command, snakemake_env
from wmrl.config import ConfigError, compose
from wmrl.dag.preflight import check_envs
from wmrl.envs import action_spec, make_env, obs_spec
from wmrl.envs.observations import UnsupportedSpace, as_model_observations
from wmrl.models.world_model import ImageEncoder


class SpaceEnv(gym.Env):
    """An env whose observations are samples of `space` (seeded), for the conversions."""

    def __init__(self, space: gym.Space):
        self.observation_space, self.action_space = space, gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.observation_space.seed(seed)
        return self.observation_space.sample(), {}

    def step(self, action):
        return self.observation_space.sample(), 0.0, False, False, {}


def converted(space: gym.Space, obs_keys=()):
    env = as_model_observations(SpaceEnv(space), obs_keys)
    raw = SpaceEnv(space).reset(seed=0)[0]
    obs = env.reset(seed=0)[0]
    assert env.observation_space.contains(obs), (env.observation_space, obs)
    return env, raw, obs


def test_native_spaces_are_left_unwrapped():
    for space in (gym.spaces.Box(0, 1, (10, 10, 4), bool), gym.spaces.Box(0, 255, (84, 84, 1), np.uint8),
                  gym.spaces.Box(-1, 1, (3,), np.float32)):
        env = SpaceEnv(space)
        assert as_model_observations(env) is env


def test_discrete_and_multi_discrete_become_one_hots():
    _, raw, obs = converted(gym.spaces.Discrete(5, start=2))
    assert obs.shape == (5,) and obs.sum() == 1 and obs[raw - 2] == 1
    _, raw, obs = converted(gym.spaces.MultiDiscrete([2, 3]))
    assert obs.shape == (5,) and obs[raw[0]] == 1 and obs[2 + raw[1]] == 1 and obs.sum() == 2


def test_a_dict_of_flat_parts_is_one_vector_in_key_order_and_obs_keys_choose_parts():
    space = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (2, 2)), "mode": gym.spaces.Discrete(3)})
    env, raw, obs = converted(space)
    assert obs_spec(env).kind == "vector" and obs.shape == (7,)
    keys = list(space.spaces)  # gymnasium sorts Dict keys
    parts = {"mode": np.eye(3, dtype=np.float32)[raw["mode"]], "position": raw["position"].reshape(-1)}
    assert np.array_equal(obs, np.concatenate([parts[key] for key in keys]))
    _, raw, obs = converted(space, ["position"])
    assert np.array_equal(obs, raw["position"].reshape(-1))
    with pytest.raises(UnsupportedSpace, match=r"obs_keys \['speed'\] are not in the observation space"):
        converted(space, ["speed"])


def test_a_grid_with_discrete_parts_gets_them_as_constant_channels():
    space = gym.spaces.Tuple((gym.spaces.Box(0, 1, (3, 4, 2), bool), gym.spaces.Discrete(4)))
    env, raw, obs = converted(space)
    assert obs.shape == (3, 4, 6) and obs.dtype == np.bool_
    assert np.array_equal(obs[..., :2], raw[0]) and (obs[..., 2 + raw[1]]).all() and obs[..., 2:].sum() == 12
    assert obs_spec(env).channels == ("0:0", "0:1", "1:0", "1:1", "1:2", "1:3")


def test_an_image_stands_alone_and_small_frames_get_a_channel_axis():
    with pytest.raises(UnsupportedSpace, match="cannot be combined"):
        converted(gym.spaces.Dict({"frame": gym.spaces.Box(0, 255, (8, 8), np.uint8), "t": gym.spaces.Discrete(2)}))
    env, raw, obs = converted(gym.spaces.Box(0, 255, (8, 8), np.uint8))
    assert obs.shape == (8, 8, 1) and np.array_equal(obs[..., 0], raw) and obs_spec(env).kind == "image"


def test_spaces_without_a_model_form_fail_naming_the_part():
    with pytest.raises(UnsupportedSpace, match="unsupported observation space Text"):
        as_model_observations(SpaceEnv(gym.spaces.Text(5)))
    with pytest.raises(UnsupportedSpace, match="no part of the observation space"):
        as_model_observations(SpaceEnv(gym.spaces.Dict({"name": gym.spaces.Text(5)})))


def test_the_image_encoder_takes_small_frames():
    encoder = ImageEncoder((7, 7, 3), 32)
    assert encoder(torch.zeros(2, 5, 7, 7, 3)).shape == (2, 5, 32)


def test_minigrid_symbolic_view_and_direction_become_one_hot_grid_channels():
    env = make_env("MiniGrid-DoorKey-5x5-v0")  # the ids of known suites need no "minigrid:"
    spec = obs_spec(env)
    assert (spec.kind, spec.shape) == ("grid", (7, 7, 24)) and action_spec(env).n == 7
    assert spec.channels[:3] == ("object:unseen", "object:empty", "object:wall") and spec.channels[-1] == "direction:3"
    obs, _ = env.reset(seed=1)
    symbols = env.unwrapped.gen_obs()["image"]  # (object, colour, state) indices of the same view
    assert (obs[..., :20].sum(-1) == 3).all()  # one object, one colour, one state per cell
    assert np.array_equal(obs[..., :11].argmax(-1), symbols[..., 0])
    assert np.array_equal(obs[..., 11:17].argmax(-1), symbols[..., 1])
    assert obs[..., 20 + env.unwrapped.agent_dir].all() and obs[..., 20:].sum() == 49
    replay = make_env("minigrid:MiniGrid-DoorKey-5x5-v0")
    assert np.array_equal(replay.reset(seed=1)[0], obs)  # a seed fixes the layout


def test_popgym_tasks_are_one_hot_vectors():
    env = make_env("popgym:popgym-AutoencodeEasy-v0")  # Tuple(Discrete(2), Discrete(4))
    obs, _ = env.reset(seed=0)
    assert obs_spec(env).kind == "vector" and obs.shape == (6,) and obs.sum() == 2 and action_spec(env).n == 4


def test_wrappers_apply_in_order_by_import_path():
    env = make_env("CartPole-v1", wrappers=[{"path": "gymnasium.wrappers:TimeAwareObservation"},
                                            {"path": "gymnasium.wrappers.ClipReward", "kwargs": {"max_reward": 0.5}}])
    obs, _ = env.reset(seed=0)
    assert obs.shape == (5,) and obs[-1] == 0  # the time step appended
    assert env.step(0)[1] == 0.5  # CartPole's reward 1, clipped
    with pytest.raises(ValueError, match="wrapper 'gymnasium.wrappers:NoSuch' cannot be imported"):
        make_env("CartPole-v1", wrappers=[{"path": "gymnasium.wrappers:NoSuch"}])
    with pytest.raises(ValueError, match="wrapper 'gymnasium.wrappers:RescaleAction' failed on the env"):
        make_env("CartPole-v1", wrappers=[{"path": "gymnasium.wrappers:RescaleAction",
                                           "kwargs": {"min_action": 0.0, "max_action": 1.0}}])


BAD_TASKS = {"tasks": {"cartpole": {"env": "minigrid:MiniGrid-Empty-55-v0"},
                       "acrobot": {"wrappers": [{"path": "gymnasium.wrappers:NoSuch"}]}}}


def test_every_failing_task_env_is_named_before_any_job():
    cfg = compose({"scale": "smoke", "experiment": "cartpole", **BAD_TASKS}, ROOT)
    with pytest.raises(ConfigError) as failure:
        check_envs(cfg)
    message = str(failure.value)
    assert "task 'cartpole' (minigrid:MiniGrid-Empty-55-v0): unknown environment" in message
    assert "task 'acrobot' (Acrobot-v1): wrapper 'gymnasium.wrappers:NoSuch'" in message
    assert "supported observations:" in message


def test_checked_envs_are_cached_by_their_settings(tmp_path, monkeypatch):
    import wmrl.envs

    cfg = compose({"scale": "smoke", "experiment": "cartpole"}, ROOT)
    built = []
    real = wmrl.envs.describe_env
    monkeypatch.setattr(wmrl.envs, "describe_env", lambda settings: built.append(settings["env"]) or real(settings))
    cache = tmp_path / "checked.json"
    first = check_envs(cfg, cache)
    assert check_envs(cfg, cache) == first and sorted(built) == ["Acrobot-v1", "CartPole-v1"]
    changed = compose({"scale": "smoke", "experiment": "cartpole", "tasks": {"cartpole": {"max_episode_steps": 50}}},
                      ROOT)
    check_envs(changed, cache)
    assert sorted(built) == ["Acrobot-v1", "CartPole-v1", "CartPole-v1"]  # only the changed task is built again
    assert first["cartpole"]["obs"] == {"kind": "vector", "shape": [4], "dtype": "float32", "channels": []}


def test_snakemake_stops_on_a_bad_env_before_the_first_job(tmp_path):
    (tmp_path / "bad.yaml").write_text('tasks:\n  cartpole: {env: "MiniGrid-Empty-55-v0"}\n')
    result = subprocess.run(snakemake_command("--cores", "1", "--config", "scale=smoke", "experiment=cartpole",
                                              "--configfile", "bad.yaml"),
                            cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=120)
    assert result.returncode != 0
    assert "wmrl: experiment 'cartpole' has environments that cannot be used" in result.stderr
    assert "task 'cartpole' (MiniGrid-Empty-55-v0): unknown environment" in result.stderr
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_tasks_one_model_cannot_share_fail_before_any_job():
    mixed = {"tasks": {"cartpole": {"env": "minigrid:MiniGrid-Empty-5x5-v0"}}}
    with pytest.raises(ConfigError, match=r"observations differ: cartpole grid\[7, 7\], acrobot vector"):
        check_envs(compose({"scale": "smoke", "experiment": "cartpole", **mixed}, ROOT))
    continuous = {"tasks": {"cartpole": {"env": "MountainCarContinuous-v0"}}}
    with pytest.raises(ConfigError, match="needs discrete actions; continuous: cartpole"):
        check_envs(compose({"scale": "smoke", "experiment": "cartpole", **continuous}, ROOT))
