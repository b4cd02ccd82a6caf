"""In-context pretraining datasets: one row per history, written as Parquet + ``card.json``.

The contract (the DPT and AD models read it): one directory holding ``histories.parquet``, one row
per training history, of one of two kinds. ``contexts`` (DPT's: a context and a query) has

==============  ============  ==========================================================
column          type          meaning
==============  ============  ==========================================================
task            Int64         index of the task in the card's ``tasks`` list
states          List(Int16)   state of each in-context step (bandit: all 0)
actions         List(Int16)   action of each step
rewards         List(Float32) reward of each step
next_states     List(Int16)   state after each step (bandit: all 0)
query_state     Int16         the state DPT is asked about (bandit: 0; Dark Room: uniform)
optimal_action  Int16         the oracle's action at the query state (the label)
==============  ============  ==========================================================

and ``learning`` (AD's: consecutive episodes of one learner, `wmrl.icrl.learning`) has ``task``,
``states``, ``actions``, ``rewards``, ``next_states`` as above and, instead of the query,

===============  ============  ==========================================================
optimal_actions  List(Int16)   the oracle's action at each step's state (for accuracy curves)
===============  ============  ==========================================================

every list of length ``horizon`` (H), and ``card.json`` = {"format": "wmrl.icrl/2", "kind":
"contexts" | "learning", "family": "bandit" | "darkroom", "states", "actions", "horizon",
"histories" (rows), "tasks" (bandit: arm means; Dark Room: goals [x, y]), "settings", "seed",
"sha256" (of the Parquet file)}; a ``learning`` card adds "episodes" and "episode_steps", whose
product is the horizon.

Behaviour policies (DPT's): a bandit history pulls arms i.i.d. from
p = (1 - w) Dirichlet(1, ..., 1) + w e_j, the coverage weight w drawn from {0, 0.1, ..., 1} and
the arm j uniformly, per history; a Dark Room history takes each step from a uniformly drawn
state with a uniformly drawn action (next state by the room's dynamics, reward 1 on the goal).

A dataset is written into ``<out>.partial`` and renamed to ``<out>`` once its card is written;
the same arguments and seed give the same bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from wmrl.data.dataset import sha256_file
from wmrl.files import publish_dir
from wmrl.icrl.tasks import (BANDIT_HORIZON, DARKROOM_HORIZON, DARKROOM_SIZE, MOVES, NOISE_STD, darkroom_step,
                             optimal_darkroom_action)

FORMAT = "wmrl.icrl/2"
HISTORIES = "histories.parquet"
CARD = "card.json"
COVERAGE_WEIGHTS = [round(0.1 * i, 1) for i in range(11)]
STEPS = {
    "task": pl.Int64(), "states": pl.List(pl.Int16()), "actions": pl.List(pl.Int16()),
    "rewards": pl.List(pl.Float32()), "next_states": pl.List(pl.Int16()),
}
SCHEMA = {**STEPS, "query_state": pl.Int16(), "optimal_action": pl.Int16()}
SCHEMAS = {"contexts": SCHEMA, "learning": {**STEPS, "optimal_actions": pl.List(pl.Int16())}}
CARD_KEYS = ("format", "kind", "family", "states", "actions", "horizon", "histories", "tasks", "settings", "seed",
             "sha256")


class HistoriesError(ValueError):
    """An in-context dataset on disk that does not match its card or the contract."""


@dataclass(frozen=True)
class Histories:
    """An in-context dataset in memory: its rows and what its card says about them (`episodes` and
    `episode_steps`: the learning kind's only)."""

    family: str
    states: int
    actions: int
    horizon: int
    tasks: list
    settings: dict[str, Any]
    seed: int
    frame: pl.DataFrame
    kind: str = "contexts"
    episodes: int | None = None
    episode_steps: int | None = None


def kind_frame(kind: str, columns: dict[str, np.ndarray]) -> pl.DataFrame:
    """The rows of the contract's `kind` from arrays: per-step columns (histories, H), the others (histories,)."""
    return pl.DataFrame([pl.Series(name, columns[name]).cast(dtype) for name, dtype in SCHEMAS[kind].items()])


def history_frame(task: np.ndarray, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                  next_states: np.ndarray, query_state: np.ndarray, optimal_action: np.ndarray) -> pl.DataFrame:
    """The rows of the contexts kind from arrays."""
    return kind_frame("contexts", {"task": task, "states": states, "actions": actions, "rewards": rewards,
                                   "next_states": next_states, "query_state": query_state,
                                   "optimal_action": optimal_action})


# --------------------------------------------------------------------------- generators


def bandit_histories(means_list: Sequence[Sequence[float]], horizon: int = BANDIT_HORIZON, seed: int = 0,
                     per_task: int = 1, noise_std: float = NOISE_STD) -> Histories:
    """`per_task` histories of `horizon` pulls for each bandit of `means_list` (DPT's behaviour mix).
    Rewards are N(mu_a, `noise_std`^2), as in DPT's code (see `wmrl.icrl.tasks`)."""
    means = np.asarray(means_list, dtype=float)
    count, arms = means.shape
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(count), per_task)
    rows = len(task)
    coverage = rng.choice(COVERAGE_WEIGHTS, size=rows)[:, None]
    point_mass = np.eye(arms)[rng.integers(arms, size=rows)]
    probs = (1 - coverage) * rng.dirichlet(np.ones(arms), size=rows) + coverage * point_mass
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    # Inverse-CDF sampling: arm i where cdf[i - 1] <= u < cdf[i].
    actions = (rng.random((rows, horizon))[:, :, None] >= cdf[:, None, :]).sum(axis=2)
    rewards = means[task[:, None], actions] + noise_std * rng.standard_normal((rows, horizon))
    zeros = np.zeros((rows, horizon), dtype=np.int16)
    frame = history_frame(task, zeros, actions, rewards, zeros, zeros[:, 0], np.argmax(means, axis=1)[task])
    settings = {"arms": arms, "noise_std": noise_std, "coverage_weights": COVERAGE_WEIGHTS,
                "per_task": per_task, "behaviour": "(1 - w) Dirichlet(1) + w point mass, per history"}
    return Histories("bandit", 1, arms, horizon, means.tolist(), settings, seed, frame)


def check_heldout(goals: Sequence[Sequence[int]], heldout: Sequence[Sequence[int]]) -> None:
    """Raise if a held-out goal is among the pretraining goals."""
    leaked = sorted({tuple(map(int, g)) for g in goals} & {tuple(map(int, g)) for g in heldout})
    if leaked:
        raise ValueError(f"held-out goals {leaked} would enter the pretraining data")


def darkroom_histories(goals: Sequence[tuple[int, int]], horizon: int = DARKROOM_HORIZON, seed: int = 0,
                       heldout: Sequence[tuple[int, int]] = (), per_task: int = 1,
                       size: int = DARKROOM_SIZE) -> Histories:
    """`per_task` histories of `horizon` uniform (state, action) steps for each goal of `goals`,
    refusing any goal of `heldout`."""
    check_heldout(goals, heldout)
    goal_xy = np.asarray(goals, dtype=int).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(len(goal_xy)), per_task)
    rows, cells = len(task), size * size
    states = rng.integers(cells, size=(rows, horizon))
    actions = rng.integers(len(MOVES), size=(rows, horizon))
    next_states = darkroom_step(states, actions, size)
    goal_state = goal_xy[task, 0] * size + goal_xy[task, 1]
    rewards = (next_states == goal_state[:, None]).astype(np.float32)
    query_state = rng.integers(cells, size=rows)
    optimal_action = optimal_darkroom_action(query_state, (goal_xy[task, 0], goal_xy[task, 1]), size)
    frame = history_frame(task, states, actions, rewards, next_states, query_state, optimal_action)
    settings = {"size": size, "per_task": per_task, "heldout_goals": [list(map(int, g)) for g in heldout],
                "behaviour": "uniform random state and action each step"}
    return Histories("darkroom", cells, len(MOVES), horizon, goal_xy.tolist(), settings, seed, frame)


# --------------------------------------------------------------------------- writing and reading


def write_histories(histories: Histories, out: Path | str) -> dict[str, Any]:
    """Write `histories` into directory `out` (through ``<out>.partial``); return its card."""
    if histories.kind not in SCHEMAS:
        raise ValueError(f"unknown kind {histories.kind!r} of in-context dataset; choose one of {', '.join(SCHEMAS)}")
    if dict(histories.frame.schema) != SCHEMAS[histories.kind]:
        raise ValueError(f"schema {dict(histories.frame.schema)} is not the {histories.kind} kind's")
    if histories.family == "darkroom":
        check_heldout(histories.tasks, histories.settings["heldout_goals"])
    layout = {}
    if histories.kind == "learning":
        layout = {"episodes": histories.episodes, "episode_steps": histories.episode_steps}
        check_layout(layout, histories.horizon, "learning histories")
    with publish_dir(out) as partial:
        partial.mkdir(parents=True)
        histories.frame.write_parquet(partial / HISTORIES, compression="zstd", compression_level=3, statistics=True)
        card = {"format": FORMAT, "kind": histories.kind, "family": histories.family, "states": histories.states,
                "actions": histories.actions, "horizon": histories.horizon, **layout,
                "histories": histories.frame.height, "tasks": histories.tasks, "settings": histories.settings,
                "seed": histories.seed, "sha256": sha256_file(partial / HISTORIES)}
        (partial / CARD).write_text(json.dumps(card, indent=1) + "\n")
    return card


def check_layout(layout: dict[str, Any], horizon: int, where: str) -> None:
    """Raise unless a learning dataset's episodes x episode_steps (positive integers) make its horizon."""
    episodes, steps = layout.get("episodes"), layout.get("episode_steps")
    if not (isinstance(episodes, int) and isinstance(steps, int) and episodes > 0 and steps > 0
            and episodes * steps == horizon):
        raise HistoriesError(f"{where}: {episodes} episodes of {steps} steps do not make the horizon {horizon}")


def read_histories(directory: Path | str) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The rows and card of an in-context dataset, checked against the contract (card keys, format
    and kind, the learning kind's episodes, the Parquet file's sha256, the kind's schema, row count
    and list lengths)."""
    directory = Path(directory)
    path, card_path = directory / HISTORIES, directory / CARD
    if not card_path.is_file() or not path.is_file():
        raise HistoriesError(f"{directory}: not a complete in-context dataset (regenerate it)")
    card = json.loads(card_path.read_text())
    missing = [key for key in CARD_KEYS if key not in card]
    if missing or card["format"] != FORMAT:
        raise HistoriesError(f"{card_path}: keys {missing} missing or format {card.get('format')!r} "
                             f"is not {FORMAT!r}")
    if card["kind"] not in SCHEMAS:
        raise HistoriesError(f"{card_path}: kind {card['kind']!r} is not one of {', '.join(SCHEMAS)}")
    if card["kind"] == "learning":
        check_layout(card, card["horizon"], str(card_path))
    if sha256_file(path) != card["sha256"]:
        raise HistoriesError(f"{path}: sha256 does not match the card: truncated or edited; regenerate it")
    frame = pl.read_parquet(path)
    schema = SCHEMAS[card["kind"]]
    if dict(frame.schema) != schema:
        raise HistoriesError(f"{path}: schema {dict(frame.schema)} is not the {card['kind']} kind's {schema}")
    if frame.height != card["histories"]:
        raise HistoriesError(f"{path}: {frame.height} rows, the card says {card['histories']}")
    for column in (name for name, dtype in schema.items() if isinstance(dtype, pl.List)):
        if frame.height and not (frame[column].list.len() == card["horizon"]).all():
            raise HistoriesError(f"{path}: {column} lists are not all of length {card['horizon']}")
    return frame, card
