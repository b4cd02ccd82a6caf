"""Observations as datasets and models take them: a bool grid (H, W, C), a uint8 image
(H, W, C) or a float vector (D,).

Gymnasium environments come with many observation spaces. `as_model_observations` maps each
supported one onto those three kinds once, as a wrapper, so that datasets, models, peers and
evaluation all see one form:

==============================  =============================================================
space                           becomes
==============================  =============================================================
Box of bools (H, W, C)          a grid, as is
Box of uint8 (H, W) / (H, W, C) an image (2-D frames get a channel axis)
MiniGrid's symbolic image       a grid of one-hot channels: object (11), colour (6), state (3)
Box of any other shape          a float32 vector (flattened)
Discrete(n)                     a one-hot vector of n
MultiDiscrete, MultiBinary      one-hots side by side; 0/1 floats
Dict, Tuple                     the parts named in ``obs_keys`` (default: every part that has a
                                model form; MiniGrid's mission text has none).
                                One grid and Discrete parts: the grid, each Discrete part added
                                as constant one-hot channels (MiniGrid's view and direction).
                                Otherwise every part flattened into one vector; an image may
                                only stand alone.
==============================  =============================================================

An environment whose space already is one of the three kinds is returned unwrapped (MinAtar
steps at up to 400k steps/s, where a wrapper layer costs a noticeable share).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import gymnasium as gym
import numpy as np

SUPPORTED = ("Box (bool grids (H, W, C), uint8 images (H, W[, C]), float arrays of any shape), Discrete, "
             "MultiDiscrete, MultiBinary, and Dict or Tuple spaces of those (MiniGrid's symbolic image "
             "becomes one-hot grid channels)")


class UnsupportedSpace(ValueError):
    """An observation space (or a part of one) that has no model form."""


@dataclass(frozen=True)
class Part:
    """One observation (part) in model form: `kind` grid, image, vector or discrete (a one-hot
    vector that may also become grid channels), its `shape`, the names of its grid channels or
    categories, and `convert`, from the env's value to the model form."""

    kind: str
    shape: tuple[int, ...]
    names: tuple[str, ...]
    convert: Callable[[Any], np.ndarray]


def as_model_observations(env: gym.Env, obs_keys: Sequence[str] = ()) -> gym.Env:
    """`env` with observations in model form (see the module docstring); unchanged if they are."""
    space, views = env.observation_space, _minigrid_views(env)
    if not obs_keys and not views and _native(space):
        return env
    return ModelObservations(env, _whole(space, obs_keys, views))


class ModelObservations(gym.ObservationWrapper):
    """Converts every observation with `part.convert`; `channel_names` names a grid's channels."""

    def __init__(self, env: gym.Env, part: Part):
        super().__init__(env)
        self.part = part
        if part.kind == "grid":
            self.observation_space = gym.spaces.Box(0, 1, part.shape, dtype=bool)
            self.channel_names = part.names
        elif part.kind == "image":
            self.observation_space = gym.spaces.Box(0, 255, part.shape, dtype=np.uint8)
        else:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, part.shape, dtype=np.float32)

    def observation(self, observation):
        return self.part.convert(observation)


def _native(space: gym.Space) -> bool:
    if not isinstance(space, gym.spaces.Box):
        return False
    dtype = np.dtype(space.dtype)
    return (dtype == np.bool_ and len(space.shape) == 3) or (dtype == np.uint8 and len(space.shape) == 3) \
        or (dtype.kind == "f" and len(space.shape) == 1)


def _minigrid_views(env: gym.Env) -> set[tuple[int, int]]:
    """The (H, W) of a MiniGrid env's symbolic views (the agent's and the full grid); none elsewhere."""
    module = sys.modules.get("minigrid.minigrid_env")  # not imported: not a MiniGrid env
    grid = env.unwrapped
    if module is None or not isinstance(grid, module.MiniGridEnv):
        return set()
    return {(grid.agent_view_size, grid.agent_view_size), (grid.width, grid.height)}


def _whole(space: gym.Space, obs_keys: Sequence[str], views: set[tuple[int, int]]) -> Part:
    if isinstance(space, (gym.spaces.Dict, gym.spaces.Tuple)):
        return _combined(space, obs_keys, views)
    if obs_keys:
        raise UnsupportedSpace(f"obs_keys {list(obs_keys)} given, but the observation space {space} has no keys")
    part = _part(space, "obs", views)
    return Part("vector", part.shape, (), part.convert) if part.kind == "discrete" else part


def _combined(space: gym.spaces.Dict | gym.spaces.Tuple, obs_keys: Sequence[str], views: set[tuple[int, int]]) -> Part:
    named = dict(space.spaces.items()) if isinstance(space, gym.spaces.Dict) else dict(enumerate(space.spaces))
    by_text = {str(key): key for key in named}
    unknown = [key for key in obs_keys if str(key) not in by_text]
    if unknown:
        raise UnsupportedSpace(f"obs_keys {unknown} are not in the observation space; its keys: {list(by_text)}")
    if obs_keys:
        parts = {by_text[str(key)]: _part(named[by_text[str(key)]], str(key), views) for key in obs_keys}
    else:
        parts = {key: part for key, part in ((key, _usable(space, str(key), views)) for key, space in named.items())
                 if part is not None}
    if not parts:
        raise UnsupportedSpace(f"no part of the observation space {space} has a model form; supported: {SUPPORTED}")
    keys = list(parts)
    grids = [key for key, part in parts.items() if part.kind == "grid"]
    images = [key for key, part in parts.items() if part.kind == "image"]
    if images and len(parts) > 1:
        raise UnsupportedSpace(f"the image {images[0]!r} cannot be combined with other parts "
                               f"({[str(k) for k in parts if k != images[0]]}): choose obs_keys")
    if len(grids) == 1 and len(parts) > 1 and all(part.kind == "discrete" for part in parts.values()
                                                  if part.kind != "grid"):
        return _grid_with_planes(grids[0], parts)
    if len(parts) == 1 and parts[keys[0]].kind in ("grid", "image"):
        only, key = parts[keys[0]], keys[0]
        return Part(only.kind, only.shape, only.names, lambda x: only.convert(x[key]))
    return _flat(parts)


def _usable(space: gym.Space, name: str, views: set[tuple[int, int]]) -> Part | None:
    """The part in model form, or None where it has none (MiniGrid's mission text)."""
    try:
        return _part(space, name, views)
    except UnsupportedSpace:
        return None


def _part(space: gym.Space, name: str, views: set[tuple[int, int]]) -> Part:
    if isinstance(space, gym.spaces.Box):
        dtype, shape = np.dtype(space.dtype), tuple(int(d) for d in space.shape)
        if dtype == np.bool_ and len(shape) == 3:
            return Part("grid", shape, tuple(f"{name}:{i}" for i in range(shape[-1])), lambda x: np.asarray(x, bool))
        if dtype == np.uint8 and len(shape) == 3 and shape[-1] == 3 and shape[:2] in views:
            return _minigrid_symbols(shape)
        if dtype == np.uint8 and len(shape) in (2, 3):
            if len(shape) == 2:
                return Part("image", (*shape, 1), (), lambda x: np.asarray(x, np.uint8)[..., None])
            return Part("image", shape, (), lambda x: np.asarray(x, np.uint8))
        size = int(np.prod(shape))
        return Part("vector", (size,), (), lambda x: np.asarray(x, np.float32).reshape(size))
    if isinstance(space, gym.spaces.Discrete):
        n, start = int(space.n), int(space.start)
        eye = np.eye(n, dtype=np.float32)
        return Part("discrete", (n,), tuple(f"{name}:{i}" for i in range(n)), lambda x: eye[int(x) - start])
    if isinstance(space, gym.spaces.MultiDiscrete) and len(space.nvec.shape) == 1:
        sizes, starts = [int(n) for n in space.nvec], np.asarray(space.start, np.int64)
        offsets = np.cumsum([0, *sizes[:-1]])

        def one_hots(x):
            out = np.zeros(sum(sizes), np.float32)
            out[offsets + (np.asarray(x, np.int64) - starts)] = 1.0
            return out

        return Part("vector", (sum(sizes),), (), one_hots)
    if isinstance(space, gym.spaces.MultiBinary):
        size = int(np.prod(space.shape))
        return Part("vector", (size,), (), lambda x: np.asarray(x, np.float32).reshape(size))
    raise UnsupportedSpace(f"unsupported observation space {space} (part {name!r}); supported: {SUPPORTED}")


def _minigrid_symbols(shape: tuple[int, ...]) -> Part:
    """MiniGrid's (H, W, 3) view of (object, colour, state) indices as one-hot bool channels."""
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX

    tables = {"object": OBJECT_TO_IDX, "color": COLOR_TO_IDX, "state": STATE_TO_IDX}
    names = tuple(f"{field}:{name}" for field, table in tables.items() for name in sorted(table, key=table.get))
    codes = [np.arange(len(table)) for table in tables.values()]

    def one_hot(x):
        x = np.asarray(x)
        return np.concatenate([x[..., i, None] == code for i, code in enumerate(codes)], axis=-1)

    return Part("grid", (*shape[:2], len(names)), names, one_hot)


def _grid_with_planes(grid_key: Any, parts: dict[Any, Part]) -> Part:
    """The grid part with each Discrete part as constant one-hot channels ("<key>:<value>")."""
    grid = parts[grid_key]
    planes = {key: part for key, part in parts.items() if key != grid_key}
    h, w, _ = grid.shape
    names = grid.names + tuple(name for part in planes.values() for name in part.names)

    def convert(x):
        channels = [grid.convert(x[grid_key])]
        channels += [np.broadcast_to(part.convert(x[key]).astype(bool), (h, w, part.shape[0]))
                     for key, part in planes.items()]
        return np.concatenate(channels, axis=-1)

    return Part("grid", (h, w, len(names)), names, convert)


def _flat(parts: dict[Any, Part]) -> Part:
    """Every part flattened, side by side, into one float32 vector."""
    size = sum(int(np.prod(part.shape)) for part in parts.values())

    def convert(x):
        return np.concatenate([np.asarray(part.convert(x[key]), np.float32).reshape(-1) for key, part in parts.items()])

    return Part("vector", (size,), (), convert)
