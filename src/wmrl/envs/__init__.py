"""One factory for every environment: MinAtar games, Atari games and any Gymnasium id, plus
their specs.

``make_env("minatar:breakout")``, ``make_env("atari:Pong")`` or ``make_env("CartPole-v1")``;
``obs_spec`` and ``action_spec`` describe an env in the terms the dataset cards and the models use.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np

MINATAR_PREFIX, ATARI_PREFIX = "minatar:", "atari:"


@dataclass(frozen=True)
class ObsSpec:
    """What one observation is: `grid` (H, W, C booleans), `vector` (flat floats) or `image`."""

    kind: str
    shape: tuple[int, ...]
    dtype: str
    channels: tuple[str, ...] = field(default=())  # names of grid channels, where known

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape), "channels": list(self.channels)}


@dataclass(frozen=True)
class ActionSpec:
    """`discrete` actions 0..n-1, or `continuous` float vectors of `shape`."""

    kind: str
    n: int = 0
    shape: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "shape": list(self.shape)}


def make_env(env_id: str, env_kwargs: dict[str, Any] | None = None,
             max_episode_steps: int | None = None) -> gym.Env:
    """Build the environment named `env_id` ("minatar:<game>", "atari:<Game>" or a Gymnasium id)."""
    env_kwargs = dict(env_kwargs or {})
    if env_id.startswith(MINATAR_PREFIX):
        from wmrl.envs.minatar import MinAtarEnv

        return MinAtarEnv(env_id[len(MINATAR_PREFIX):], max_episode_steps=max_episode_steps, **env_kwargs)
    if env_id.startswith(ATARI_PREFIX):
        from wmrl.envs.atari import make_atari

        return make_atari(env_id[len(ATARI_PREFIX):], max_episode_steps=max_episode_steps, **env_kwargs)
    try:
        return gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
    except gym.error.Error as exc:
        raise ValueError(f"unknown environment {env_id!r}: not 'minatar:<game>', not 'atari:<Game>' and not a "
                         f"registered Gymnasium id ({exc})") from None


def obs_spec(env: gym.Env) -> ObsSpec:
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"unsupported observation space {space}: only Box observations are supported")
    dtype = np.dtype(space.dtype)
    if dtype == np.bool_ and len(space.shape) == 3:
        kind = "grid"
    elif dtype == np.uint8 and len(space.shape) in (2, 3):
        kind = "image"
    elif len(space.shape) == 1:
        kind = "vector"
    else:
        raise ValueError(f"unsupported observation space {space}: expected a bool grid, a uint8 image or a vector")
    channels = tuple(getattr(env.unwrapped, "channel_names", ()))
    return ObsSpec(kind=kind, shape=tuple(int(d) for d in space.shape), dtype=dtype.name, channels=channels)


def action_spec(env: gym.Env) -> ActionSpec:
    space = env.action_space
    if isinstance(space, gym.spaces.Discrete):
        if space.start != 0:
            raise ValueError(f"unsupported action space {space}: discrete actions must start at 0")
        return ActionSpec(kind="discrete", n=int(space.n))
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
        return ActionSpec(kind="continuous", shape=tuple(int(d) for d in space.shape))
    raise ValueError(f"unsupported action space {space}: expected Discrete or a 1-D Box")
