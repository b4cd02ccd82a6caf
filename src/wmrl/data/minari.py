"""Minari in and out: a wmrl dataset as a Minari dataset, a Minari dataset as a task's wmrl dataset.

Minari (Farama's exchange format for offline RL) stores each episode of T steps as T+1
observations and T actions, rewards, terminations and truncations. A wmrl episode of T
transitions is T+1 rows (`wmrl.data.dataset`), so the mapping is row for row:

=======================================  ===================================================
Minari episode                           wmrl rows of the episode
=======================================  ===================================================
id                                       episode (0, 1, ... in the order of the data)
observations[t], t = 0..T                obs of row t (row T is the final row)
actions[t], t < T                        action of row t: Discrete(n) <-> Int16,
                                         Box(shape, float32) <-> List(Float32)
rewards / terminations / truncations[t]  reward / terminated / truncated of row t, t < T
=======================================  ===================================================

An episode cut by the end of the data budget is truncated in wmrl, and so in Minari. On import, a
Minari episode that ends neither terminated nor truncated was cut too: its last step is marked
truncated. `policy_step` is not exported: the writer counts it again on import (the transitions
recorded before the row), as it does for generated data.

Observation spaces from the card: grid -> Box(0, 1, shape, bool), image -> Box(0, 255, shape,
uint8), vector -> Box(-inf, inf, shape, dtype) (the card keeps no bounds). Export writes Minari's
arrow format with JPEG encoding off, so every observation is stored as a fixed-size list of its
own dtype and round-trips bit for bit (Minari JPEG-encodes uint8 frames of 32x32 or more by
default, lossily). No env spec is stored, as ids like ``minatar:breakout`` are not registered
with Gymnasium; the spaces are given explicitly, and Minari's metadata gets a "wmrl" entry with
the card's env, suite, task, policy, seed, observation spec and content digest.

Import (a task's ``dataset: {source: "minari:<id>"}``, through `wmrl.data.job`) checks that the
Minari dataset's spaces are those of the task's environment and writes the usual Parquet shards
and card; the card's policy is ``{"name": "minari", "source": "minari:<id>", ...}``. Its return
statistics cover every episode, as a cut one cannot be told from one truncated by a time limit.
The Minari files are not an input Snakemake watches: the source names a versioned id
(``...-v1``), and new data under a new version is a new source, so a new spec.
"""

from __future__ import annotations

import warnings
from importlib.metadata import version
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import gymnasium as gym
import minari
import numpy as np
import polars as pl
from minari.data_collector import EpisodeBuffer
from minari.dataset.minari_dataset import parse_dataset_id
from minari.storage import get_dataset_path

from wmrl.data.card import dataset_card, write_card
from wmrl.data.dataset import DatasetError, decode_obs, open_dataset
from wmrl.data.writer import DatasetWriter
from wmrl.envs import action_spec, make_task_env, obs_spec
from wmrl.files import publish_dir
from wmrl.provenance import dataset_digest

SOURCE_PREFIX = "minari:"
# Minari warns of every optional field left empty (author, code link, eval env, env spec); the card
# in the "wmrl" metadata says where the data came from.
UNSET_FIELD_WARNINGS = r"`\w+` is set to None|env_spec is None"


# --------------------------------------------------------------------------- export


def export_minari(dataset_dir: Path | str, dataset_id: str, force: bool = False,
                  author: str | None = None, code_permalink: str | None = None) -> minari.MinariDataset:
    """Write the wmrl dataset in `dataset_dir` as the Minari dataset `dataset_id` (under
    MINARI_DATASETS_PATH, else ~/.minari/datasets), replacing one of that id only if `force`."""
    dataset = open_dataset(dataset_dir)
    card = dataset.card
    parse_dataset_id(dataset_id)  # a malformed id fails here, before anything is written
    if get_dataset_path(dataset_id).exists():
        if not force:
            raise FileExistsError(f"Minari dataset {dataset_id!r} already exists at {get_dataset_path(dataset_id)} "
                                  f"(force, --force on the command line, replaces it)")
        minari.delete_dataset(dataset_id)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", UNSET_FIELD_WARNINGS, UserWarning)
            exported = minari.create_dataset_from_buffers(
                dataset_id, [], observation_space=observation_space(card["obs"]),
                action_space=action_space(card["action"]), algorithm_name=f"wmrl {card['policy']['name']}",
                author=author, code_permalink=code_permalink, data_format="arrow", jpeg_encoding=False,
                description=f"wmrl dataset {card['suite']}/{card['task']}: {card['policy']['name']} policy, "
                            f"seed {card['seed']}, env {card['env']['id']}")
        for path in dataset.shard_paths:  # one shard's episodes in memory at a time
            exported.update_dataset_from_buffer(list(episode_buffers(pl.read_parquet(path), card)))
        exported.storage.update_metadata({"wmrl": {
            "digest": dataset_digest(card), "format": card["format"], "suite": card["suite"], "task": card["task"],
            "env": card["env"], "policy": card["policy"], "seed": card["seed"], "obs": card["obs"]}})
    except BaseException:
        if get_dataset_path(dataset_id).exists():  # no half-written dataset under that id
            minari.delete_dataset(dataset_id)
        raise
    return exported


def observation_space(obs: dict[str, Any]) -> gym.spaces.Box:
    """The Minari observation space of a card's observation spec."""
    shape = tuple(obs["shape"])
    if obs["kind"] == "grid":
        return gym.spaces.Box(0, 1, shape, dtype=bool)
    if obs["kind"] == "image":
        return gym.spaces.Box(0, 255, shape, dtype=np.uint8)
    return gym.spaces.Box(-np.inf, np.inf, shape, dtype=np.dtype(obs["dtype"]))


def action_space(action: dict[str, Any]) -> gym.Space:
    """The Minari action space of a card's action spec."""
    if action["kind"] == "discrete":
        return gym.spaces.Discrete(action["n"])
    return gym.spaces.Box(-np.inf, np.inf, tuple(action["shape"]), dtype=np.float32)


def episode_buffers(frame: pl.DataFrame, card: dict[str, Any]) -> Iterator[EpisodeBuffer]:
    """The episodes of one shard's rows as Minari episode buffers."""
    obs = decode_obs(frame["obs"], card["obs"])
    steps = frame.filter(pl.col("action").is_not_null())  # every row but the final ones
    if card["action"]["kind"] == "discrete":
        actions = steps["action"].to_numpy().astype(np.int64)  # Discrete's dtype
    else:
        actions = np.asarray(steps["action"].to_list(), dtype=np.float32).reshape(len(steps), *card["action"]["shape"])
    rewards, terminated, truncated = (steps[c].to_numpy() for c in ("reward", "terminated", "truncated"))
    _, rows = np.unique(frame["episode"].to_numpy(), return_counts=True)  # rows of each episode, in order
    first_row = np.cumsum(rows) - rows
    first_step = first_row - np.arange(len(rows))  # each earlier episode has one final row without a step
    for start, step, length in zip(first_row, first_step, rows - 1, strict=True):
        yield EpisodeBuffer(observations=obs[start:start + length + 1], actions=actions[step:step + length],
                            rewards=rewards[step:step + length], terminations=terminated[step:step + length],
                            truncations=truncated[step:step + length])


# --------------------------------------------------------------------------- import


def import_minari(spec: dict[str, Any], out: Path | str) -> dict[str, Any]:
    """Import the Minari dataset spec["source"] (``minari:<id>``) as the dataset of the dataset job
    `spec` (wmrl.dag.specs.dataset_spec) into directory `out`, through ``<out>.partial``
    (files.publish_dir); return its card. Its policy and seed only name the dataset: every
    (policy, seed) of a task with a source holds the same import."""
    with publish_dir(out) as partial:
        source = load_source(spec["source"])
        env = make_task_env(spec)
        obs, action = obs_spec(env).to_dict(), action_spec(env).to_dict()
        check_spaces(source, spec, obs, action)

        writer = DatasetWriter(partial, obs, action, spec["shard_rows"])
        for episode in source.iterate_episodes():
            record_episode(writer, episode, spec["source"], action["kind"] == "discrete")
        writer.close()
        metadata = source.storage.metadata
        provenance = {key: metadata[key] for key in ("dataset_id", "algorithm_name", "description", "code_permalink",
                                                     "minari_version", "wmrl") if key in metadata}
        policy = {"name": "minari", "source": spec["source"], "metadata": provenance, "reference_score": None}
        card = dataset_card(spec, obs, action, writer, policy)
        card["generator"]["versions"]["minari"] = version("minari")
        write_card(partial, card)
    return card


def load_source(source: str) -> minari.MinariDataset:
    """The local Minari dataset a source string (``minari:<id>``) names."""
    if not source.startswith(SOURCE_PREFIX) or source == SOURCE_PREFIX:
        raise ValueError(f"dataset source {source!r}: expected {SOURCE_PREFIX}<Minari dataset id>")
    dataset_id = source.removeprefix(SOURCE_PREFIX)
    try:
        return minari.load_dataset(dataset_id)
    except FileNotFoundError:
        raise FileNotFoundError(f"dataset source {source!r}: no Minari dataset {dataset_id!r} at "
                                f"{get_dataset_path(dataset_id)} (MINARI_DATASETS_PATH, else ~/.minari/datasets); "
                                f"write one with `wmrl export-minari` or `minari download`") from None


def check_spaces(source: minari.MinariDataset, spec: dict[str, Any], obs: dict[str, Any],
                 action: dict[str, Any]) -> None:
    """Fail unless the Minari dataset's observations and actions are those of the task's env."""
    spaces = SimpleNamespace(observation_space=source.observation_space, action_space=source.action_space,
                             unwrapped=None)  # wmrl.envs reads the spaces off an env; this stands in for one
    found_obs, found_action = obs_spec(spaces).to_dict(), action_spec(spaces).to_dict()
    same = ("kind", "shape", "dtype")
    if {k: found_obs[k] for k in same} != {k: obs[k] for k in same} or found_action != action:
        raise DatasetError(f"dataset source {spec['source']!r}: observations {found_obs} and actions {found_action} "
                           f"do not match task {spec['task']!r}'s env {spec['env']} (observations {obs}, "
                           f"actions {action})")


def record_episode(writer: DatasetWriter, episode: minari.EpisodeData, source: str, discrete: bool) -> None:
    """Record one Minari episode; an episode that ends neither terminated nor truncated was cut."""
    steps = len(episode)
    ends = episode.terminations | episode.truncations
    if steps == 0 or ends[:-1].any():
        raise DatasetError(f"dataset source {source!r}: episode {episode.id} has {steps} steps and ends at steps "
                           f"{np.flatnonzero(ends).tolist()}; an episode must end at its last step, and only there")
    truncations = episode.truncations.copy()
    truncations[-1] |= not ends[-1]
    observations, actions = episode.observations, episode.actions
    writer.reset(observations[0])
    for t in range(steps):
        action = int(actions[t]) if discrete else actions[t].tolist()
        writer.step(action, observations[t + 1], float(episode.rewards[t]), bool(episode.terminations[t]),
                    bool(truncations[t]))
