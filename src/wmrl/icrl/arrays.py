"""In-context histories as arrays, for training and evaluation: `ContextArrays` (DPT's contexts
kind) and `LearningArrays` (AD's learning kind) of `wmrl.icrl.histories`, each read from the
contract's table with its card's checks (list lengths, ids in range), split by task, and sampled.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

CONTEXT_COLUMNS = ("states", "actions", "rewards", "next_states")
LEARNING_COLUMNS = ("states", "actions", "rewards", "optimal_actions")


def list_arrays(frame: pl.DataFrame, card: dict[str, Any], limits: dict[str, str | None]) -> dict[str, np.ndarray]:
    """The list columns of `limits` as (N, L) arrays, L the card's horizon: rewards float32, the
    others int64 and within 0..card[limit] - 1."""
    length, n = int(card["horizon"]), len(frame)
    arrays = {}
    for name, limit in limits.items():
        lengths = frame[name].list.len()
        if n and (lengths.min() != length or lengths.max() != length):
            raise ValueError(f"column {name}: every history must have {length} steps (the card's horizon), "
                             f"found lengths {lengths.min()}..{lengths.max()}")
        values = frame[name].explode().to_numpy()
        arrays[name] = values.astype(np.float32 if limit is None else np.int64).reshape(n, length)
        if limit is not None and n and (arrays[name].min() < 0 or arrays[name].max() >= card[limit]):
            raise ValueError(f"column {name}: values outside 0..{card[limit] - 1}")
    return arrays


def validation_rows(task: np.ndarray, fraction: float) -> np.ndarray:
    """The rows of the last `fraction` of the distinct tasks (by id): a validation set no trained
    task is in."""
    tasks = np.unique(task)
    return np.isin(task, tasks[len(tasks) - int(fraction * len(tasks)):]) if fraction else np.zeros(len(task), bool)


@dataclass
class ContextArrays:
    """DPT's histories: (N,) task, query_state, optimal_action; (N, H) the context's transitions."""

    task: np.ndarray
    query_state: np.ndarray
    optimal_action: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, card: dict[str, Any]) -> ContextArrays:
        """The contexts kind's table as arrays, checked against its card (lengths H, ids in range)."""
        arrays = list_arrays(frame, card, {"states": "states", "actions": "actions", "rewards": None,
                                           "next_states": "states"})
        scalars = {name: frame[name].to_numpy().astype(np.int64) for name in ("task", "query_state", "optimal_action")}
        if len(frame) and (scalars["optimal_action"].max() >= card["actions"]
                           or scalars["query_state"].max() >= card["states"]):
            raise ValueError("query_state or optimal_action outside the card's states or actions")
        return cls(**scalars, **arrays)

    def __len__(self) -> int:
        return len(self.task)

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {name: value[index] for name, value in vars(self).items()}

    def sample(self, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`size` distinct histories (all of them, if there are fewer), each history's context in a
        fresh random order (DPT shuffles the context per sample: its transitions are exchangeable,
        and each order trains other prefixes)."""
        batch = self.rows(rng.permutation(len(self))[:size])
        order = np.argsort(rng.random(batch["actions"].shape), axis=1)
        return {name: np.take_along_axis(value, order, 1) if name in CONTEXT_COLUMNS else value
                for name, value in batch.items()}

    def split(self, holdout_fraction: float) -> tuple[ContextArrays, ContextArrays]:
        """(train, validation) by task (`validation_rows`)."""
        heldout = validation_rows(self.task, holdout_fraction)
        return self.subset(~heldout), self.subset(heldout)

    def subset(self, mask: np.ndarray) -> ContextArrays:
        return ContextArrays(**self.rows(mask))


@dataclass
class LearningArrays:
    """Learning histories as arrays: task (N,); states, actions, rewards, optimal_actions (N, L);
    `none_action`, the index A of "no previous action" (the card's action count); and the steps
    of each episode (the card's `episode_steps`)."""

    task: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    optimal_actions: np.ndarray
    none_action: int
    episode_steps: int

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, card: dict[str, Any]) -> LearningArrays:
        """The learning kind's table as arrays, checked against its card (kind, lengths L, ids in range)."""
        if card.get("kind") != "learning":
            raise ValueError(f"learning arrays read the learning kind of histories, not {card.get('kind')!r}")
        arrays = list_arrays(frame, card, {"states": "states", "actions": "actions", "rewards": None,
                                           "optimal_actions": "actions"})
        return cls(frame["task"].to_numpy().astype(np.int64), **arrays, none_action=int(card["actions"]),
                   episode_steps=int(card["episode_steps"]))

    def __len__(self) -> int:
        return len(self.task)

    @property
    def length(self) -> int:
        """L, the steps of each history."""
        return self.states.shape[1]

    def subset(self, mask: np.ndarray) -> LearningArrays:
        return replace(self, **{name: getattr(self, name)[mask] for name in ("task", *LEARNING_COLUMNS)})

    def split(self, holdout_fraction: float) -> tuple[LearningArrays, LearningArrays]:
        """(train, validation) by task (`validation_rows`)."""
        heldout = validation_rows(self.task, holdout_fraction)
        return self.subset(~heldout), self.subset(heldout)

    def windows(self, size: int, rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
        """`size` windows of `length` consecutive steps, each from a random history at a random start
        (0..L - length): states, prev_actions, prev_rewards (the token's inputs), actions (the target:
        the learner's action) and optimal_actions, each (size, length)."""
        self.check_window(length)
        rows = rng.integers(len(self), size=size)
        return self.windows_at(rows, rng.integers(self.length - length + 1, size=size), length)

    def check_window(self, length: int) -> None:
        """Raise unless a window of `length` steps fits in a history."""
        if not 1 <= length <= self.length:
            raise ValueError(f"a window of {length} steps does not fit in histories of {self.length} steps")

    def windows_at(self, rows: np.ndarray, starts: np.ndarray, length: int) -> dict[str, np.ndarray]:
        """The windows of histories `rows` from steps `starts` (both (size,)); the previous action and
        reward of a history's step 0 are the none action and 0."""
        steps = starts[:, None] + np.arange(length)
        history, before = rows[:, None], np.maximum(steps - 1, 0)
        first = steps == 0
        return {"states": self.states[history, steps],
                "prev_actions": np.where(first, self.none_action, self.actions[history, before]),
                "prev_rewards": np.where(first, np.float32(0), self.rewards[history, before]),
                "actions": self.actions[history, steps], "optimal_actions": self.optimal_actions[history, steps]}
