"""Behaviour policies whose interaction becomes a dataset: uniform random, and the whole learning
history of an online learner, recorded in order like DQN-Replay (Agarwal et al. 2020), the data
JOWA and Decision Transformer train on: stable-baselines3's DQN and PPO, and sb3-contrib's
RecurrentPPO for tasks that need memory (`LEARNERS`); and the agents of the online peers
(stable-baselines3 DQN and PPO, wmrl.train.online).
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium as gym
import numpy as np

from wmrl.data.writer import DatasetWriter
from wmrl.progress import Progress


def run_random(env: gym.Env, writer: DatasetWriter, steps: int, seed: int, progress: Progress) -> None:
    """Record `steps` transitions of a uniform random policy."""
    env.action_space.seed(seed)
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    writer.reset(obs)
    chunk = 16_384
    for start in range(0, steps, chunk):
        count = min(chunk, steps - start)
        if discrete:
            actions = rng.integers(0, env.action_space.n, size=count).tolist()
        else:
            actions = [env.action_space.sample() for _ in range(count)]
        for action in actions:
            obs, reward, terminated, truncated, _ = env.step(action)
            writer.step(action, obs, reward, terminated, truncated)
            if terminated or truncated:
                obs, _ = env.reset()
                writer.reset(obs)
        progress.update(start + count)
    writer.close()


class RecordingWrapper(gym.Wrapper):
    """Sends every reset and step of the wrapped env to a `DatasetWriter`."""

    def __init__(self, env: gym.Env, writer: DatasetWriter, progress: Progress):
        super().__init__(env)
        self.writer = writer
        self.progress = progress

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.writer.reset(obs)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.writer.step(int(action), obs, reward, terminated, truncated)
        if self.writer.transitions % 1024 == 0:
            self.progress.update(self.writer.transitions)
        return obs, reward, terminated, truncated, info


class ChannelsFirst(gym.ObservationWrapper):
    """(H, W, C) boolean grids or uint8 frames as uint8 (C, H, W) arrays for stable-baselines3's
    torch policies (values 0/1 for grids, 0..255 for frames)."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        h, w, c = env.observation_space.shape
        high = 1 if env.observation_space.dtype == np.bool_ else 255
        self.observation_space = gym.spaces.Box(0, high, shape=(c, h, w), dtype=np.uint8)

    def observation(self, obs):
        return np.ascontiguousarray(obs.transpose(2, 0, 1), dtype=np.uint8)


def _grid_extractor(conv_channels: int, hidden: int):
    """The MinAtar paper's DQN trunk: Conv2d(C, 16, 3, stride 1) + ReLU + Linear(., 128) + ReLU."""
    import torch
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class GridCNN(BaseFeaturesExtractor):
        def __init__(self, observation_space: gym.spaces.Box):
            super().__init__(observation_space, features_dim=hidden)
            c, h, w = observation_space.shape
            self.net = torch.nn.Sequential(
                torch.nn.Conv2d(c, conv_channels, kernel_size=3, stride=1), torch.nn.ReLU(),
                torch.nn.Flatten(), torch.nn.Linear(conv_channels * (h - 2) * (w - 2), hidden), torch.nn.ReLU(),
            )

        def forward(self, observations):
            return self.net(observations.float())

    return GridCNN


def run_learner(policy: str, env: gym.Env, writer: DatasetWriter, settings: dict[str, Any], seed: int,
                progress: Progress):
    """Train the `policy` learner (`LEARNERS`) online for settings["steps"] env steps, recording
    every transition it takes; return the trained model."""
    model = LEARNERS[policy](RecordingWrapper(env, writer, progress), settings, seed)
    model.learn(total_timesteps=settings["steps"])
    writer.close()
    return model


def _network(env: gym.Env, settings: dict[str, Any]) -> tuple[gym.Env, dict[str, Any], bool]:
    """The env as a stable-baselines3 agent sees it, its network (`policy_kwargs`) and whether its
    observations are frames: the MinAtar paper's trunk (grids), the Nature DQN network (frames;
    learnt from rewards clipped to their sign, Mnih et al. 2015, while a recorder underneath keeps
    the real ones) or a 2-layer MLP (vectors); heads are linear on the trunk."""
    from stable_baselines3.common.torch_layers import NatureCNN

    if not isinstance(env.action_space, gym.spaces.Discrete):
        raise ValueError(f"the learning agents (dqn, ppo, recurrent_ppo) need discrete actions, the env has "
                         f"{env.action_space}")
    policy_kwargs: dict[str, Any] = {"net_arch": []}
    frames = env.observation_space.dtype == np.uint8 and len(env.observation_space.shape) == 3
    if frames:
        env = gym.wrappers.TransformReward(ChannelsFirst(env), np.sign)
        policy_kwargs.update(features_extractor_class=NatureCNN, features_extractor_kwargs={"features_dim": 512})
    elif len(env.observation_space.shape) == 3:
        env = ChannelsFirst(env)
        policy_kwargs.update(features_extractor_class=_grid_extractor(settings["conv_channels"], settings["hidden"]),
                             normalize_images=False)
    else:
        policy_kwargs["net_arch"] = [settings["hidden"], settings["hidden"]]
    return env, policy_kwargs, frames


def dqn_agent(env: gym.Env, settings: dict[str, Any], seed: int):
    """A stable-baselines3 DQN agent with `_network`'s network, on one torch thread (small
    networks: ~3x faster than two here)."""
    import torch
    from stable_baselines3 import DQN

    torch.set_num_threads(1)
    env, policy_kwargs, frames = _network(env, settings)
    # frames: a 1M-frame replay keeps each frame once (7 GB, not 14): the next observation is the next row
    buffer: dict[str, Any] = {}
    if frames:
        buffer = {"optimize_memory_usage": True, "replay_buffer_kwargs": {"handle_timeout_termination": False}}
    steps = settings["steps"]
    return DQN(
        "MlpPolicy", env, seed=seed, device="cpu", verbose=0, policy_kwargs=policy_kwargs,
        learning_rate=settings["learning_rate"], buffer_size=settings["buffer_size"],
        batch_size=settings["batch_size"], learning_starts=settings["learning_starts"],
        train_freq=settings["train_freq"], gradient_steps=1,
        target_update_interval=settings["target_update_interval"], gamma=settings["gamma"],
        exploration_initial_eps=settings["exploration_initial_eps"],
        exploration_final_eps=settings["exploration_final_eps"],
        exploration_fraction=min(1.0, settings["exploration_steps"] / steps), **buffer,
    )


def ppo_agent(env: gym.Env, settings: dict[str, Any], seed: int, recurrent: bool = False):
    """A stable-baselines3 PPO agent with `_network`'s network (actor and critic share its trunk),
    or with `recurrent` sb3-contrib's RecurrentPPO, whose LSTM of settings["lstm_hidden"] units
    (shared by actor and critic) reads the trunk's features; one torch thread; its rollouts are at
    most settings["steps"] long."""
    import torch

    torch.set_num_threads(1)
    env, policy_kwargs, _ = _network(env, settings)
    if recurrent:
        from sb3_contrib import RecurrentPPO as Algorithm

        policy = "MlpLstmPolicy"
        policy_kwargs.update(lstm_hidden_size=settings["lstm_hidden"], shared_lstm=True, enable_critic_lstm=False)
    else:
        from stable_baselines3 import PPO as Algorithm

        policy = "MlpPolicy"
    return Algorithm(
        policy, env, seed=seed, device="cpu", verbose=0, policy_kwargs=policy_kwargs,
        learning_rate=settings["learning_rate"], n_steps=min(settings["n_steps"], settings["steps"]),
        batch_size=settings["batch_size"], n_epochs=settings["n_epochs"], gamma=settings["gamma"],
        gae_lambda=settings["gae_lambda"], clip_range=settings["clip_range"], ent_coef=settings["ent_coef"],
    )


LEARNERS = {"dqn": dqn_agent, "ppo": ppo_agent,  # behaviour policy -> agent
            "recurrent_ppo": functools.partial(ppo_agent, recurrent=True)}


def online_agent(env: gym.Env, settings: dict[str, Any], seed: int):
    """The agent settings["algorithm"] names: dqn (also when absent, as in checkpoints from before PPO) or ppo."""
    return {"dqn": dqn_agent, "ppo": ppo_agent}[settings.get("algorithm", "dqn")](env, settings, seed)


def evaluate_policy(model, env: gym.Env, episodes: int, seed: int, epsilon: float = 0.0,
                    sampled: bool = False) -> dict[str, Any]:
    """Returns of `episodes` episodes of a stable-baselines3 `model` on `env` (a fresh env, seeded
    apart from the training one): epsilon-greedy, or acting by sampling from its policy. A
    recurrent model's state is carried through each episode and starts afresh at the next."""
    if len(env.observation_space.shape) == 3:
        env = ChannelsFirst(env)
    rng = np.random.default_rng(seed + 1)
    returns = []
    obs, _ = env.reset(seed=seed + 1)
    for _ in range(episodes):
        total, done, state, start = 0.0, False, None, np.ones(1, dtype=bool)
        while not done:
            chosen, state = model.predict(obs, state=state, episode_start=start, deterministic=not sampled)
            start = np.zeros(1, dtype=bool)
            action = int(rng.integers(env.action_space.n)) if rng.random() < epsilon else int(chosen)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
        obs, _ = env.reset()
    return {"mean": float(np.mean(returns)), "std": float(np.std(returns)), "episodes": episodes,
            "epsilon": epsilon, **({"sampled": True} if sampled else {}), "returns": returns}
