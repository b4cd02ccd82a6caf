"""One factory for every environment: MinAtar games, Atari games and any Gymnasium id, plus
their specs.

``make_env("minatar:breakout")``, ``make_env("atari:Pong")``, ``make_env("CartPole-v1")`` or,
with Gymnasium's own ``module:EnvId`` syntax, which imports the module that registers the id,
``make_env("minigrid:MiniGrid-Empty-5x5-v0")``. A task's ``wrappers`` (import path and kwargs)
are applied in order, then its observations are brought into model form
(`wmrl.envs.observations`: Dict, Tuple and Discrete spaces, MiniGrid's symbolic view).
``obs_spec`` and ``action_spec`` describe an env in the terms the dataset cards and the models use;
``describe_env`` builds one task's env and reads both (`wmrl.dag.preflight.check_envs` does it for
every task before any job starts).
"""

from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence

import gymnasium as gym
import numpy as np

from wmrl.envs.observations import SUPPORTED, as_model_observations

MINATAR_PREFIX, ATARI_PREFIX = "minatar:", "atari:"
ENV_KEYS = ("env", "env_kwargs", "max_episode_steps", "wrappers", "obs_keys")  # a task's env settings
# Suites whose ids register when their module is imported: imported for ids without "module:" too.
PLUGINS = {"MiniGrid-": "minigrid", "BabyAI-": "minigrid", "popgym-": "popgym"}


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


def make_env(env_id: str, env_kwargs: Mapping[str, Any] | None = None, max_episode_steps: int | None = None,
             wrappers: Sequence[Mapping[str, Any]] = (), obs_keys: Sequence[str] = ()) -> gym.Env:
    """Build the environment named `env_id` ("minatar:<game>", "atari:<Game>", a Gymnasium id or
    "<module>:<Gymnasium id>"), apply `wrappers` ({"path": "module:Class", "kwargs": {...}}) in
    order and bring its observations into model form (of the `obs_keys` parts of a Dict space)."""
    env = _base_env(env_id, dict(env_kwargs or {}), max_episode_steps)
    for wrapper in wrappers:
        env = _wrap(env, wrapper)
    return as_model_observations(env, obs_keys)


def env_settings(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A task's env settings out of a job spec that holds them (`ENV_KEYS`: wmrl.dag.experiment.task_env)."""
    return {key: spec[key] for key in ENV_KEYS if key in spec}


def make_task_env(spec: Mapping[str, Any]) -> gym.Env:
    """`make_env` from a spec holding a task's env settings."""
    settings = env_settings(spec)
    return make_env(settings.pop("env"), **settings)


def _base_env(env_id: str, env_kwargs: dict[str, Any], max_episode_steps: int | None) -> gym.Env:
    if env_id.startswith(MINATAR_PREFIX):
        from wmrl.envs.minatar import MinAtarEnv

        return MinAtarEnv(env_id[len(MINATAR_PREFIX):], max_episode_steps=max_episode_steps, **env_kwargs)
    if env_id.startswith(ATARI_PREFIX):
        from wmrl.envs.atari import make_atari

        return make_atari(env_id[len(ATARI_PREFIX):], max_episode_steps=max_episode_steps, **env_kwargs)
    plugin = next((module for prefix, module in PLUGINS.items() if env_id.startswith(prefix)), None)
    try:
        if plugin:
            importlib.import_module(plugin)  # its ids register on import, as "<module>:<EnvId>" would do
        return gym.make(env_id, max_episode_steps=max_episode_steps, **env_kwargs)
    except (gym.error.Error, ModuleNotFoundError) as exc:
        raise ValueError(f"unknown environment {env_id!r}: not 'minatar:<game>', not 'atari:<Game>' and not a "
                         f"registered Gymnasium id or '<module>:<EnvId>' ({exc})") from None


def _wrap(env: gym.Env, wrapper: Mapping[str, Any]) -> gym.Env:
    path = wrapper["path"]
    module, _, name = path.rpartition(":") if ":" in path else path.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ValueError(f"wrapper {path!r} cannot be imported ({exc}); write it 'module:Class' or "
                         f"'module.Class'") from None
    try:
        return cls(env, **dict(wrapper.get("kwargs") or {}))
    except Exception as exc:
        raise ValueError(f"wrapper {path!r} failed on the env: {type(exc).__name__}: {exc}") from None


def obs_spec(env: gym.Env) -> ObsSpec:
    space = env.observation_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"unsupported observation space {space}: only Box observations are supported")
    dtype = np.dtype(space.dtype)
    if dtype == np.bool_ and len(space.shape) == 3:
        kind = "grid"
    elif dtype == np.uint8 and len(space.shape) == 3:
        kind = "image"
    elif len(space.shape) == 1:
        kind = "vector"
    else:
        raise ValueError(f"unsupported observation space {space}: expected a bool grid, a uint8 image or a vector")
    channels = tuple(_attribute(env, "channel_names", ()))
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


def _attribute(env: gym.Env, name: str, default: Any) -> Any:
    """An attribute of the env or of any wrapper around it."""
    try:
        return env.get_wrapper_attr(name)
    except AttributeError:
        return default


def describe_env(settings: Mapping[str, Any]) -> dict[str, Any]:
    """The obs and action specs of a task's env (built, read, closed); a ValueError (an
    `UnsupportedSpace` among them) where it cannot be built or its spaces have no model form."""
    env = make_task_env(settings)
    try:
        return {"obs": obs_spec(env).to_dict(), "action": action_spec(env).to_dict()}
    finally:
        env.close()
