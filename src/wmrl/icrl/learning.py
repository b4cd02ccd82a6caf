"""Learning histories for Algorithm Distillation (`wmrl.models.ad`), made by noise distillation.

AD (Laskin et al. 2022) imitates a learning algorithm from its learning histories: the steps of a
learner on one task over many consecutive episodes, its return rising as it learns. AD-ε (Zisman
et al. 2023, "Emergence of In-Context Reinforcement Learning from Noise Distillation") makes such
histories without running an RL algorithm: one learner plays the oracle's action with noise that
decays across episodes. Episode k = 0..K-1 of a history is played ε_k-greedily,

    ε_k = max(0, 1 - k / (decay · K)),

i.e. with probability ε_k a uniformly drawn action, else the oracle's (`optimal_darkroom_action`):
the first episode is uniform, and from episode decay · K on the learner is the oracle.

Dark Room (`wmrl.icrl.tasks`): every episode starts at state 0, (0, 0), lasts `episode_steps`
steps, 5 actions, reward 1 on each step that ends on the goal, no termination. A history is its K
episodes one after the other, L = K · episode_steps steps, written as the contract's learning kind
(`wmrl.icrl.histories`) with the oracle's action at every step's state (``optimal_actions``: the
label of an in-context accuracy curve).

AD reads a history as one token per step t: the state s_t, the previous action a_{t-1} and reward
r_{t-1}, across episode boundaries too (the first step of episode k + 1 carries the last action and
reward of episode k); the history's step 0 has none, so it carries the "none" action index A and
reward 0. `LearningArrays.windows` cuts training windows of consecutive steps from random
histories at random starts; the target at each step is the learner's action a_t.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import polars as pl

from wmrl.icrl.histories import Histories, check_heldout, kind_frame
from wmrl.icrl.tasks import MOVES, darkroom_step, optimal_darkroom_action

STEP_COLUMNS = ("states", "actions", "rewards", "optimal_actions")


def exploration_schedule(episodes: int, decay: float) -> np.ndarray:
    """ε_k = max(0, 1 - k / (decay · episodes)) for k = 0..episodes-1 (module doc)."""
    if decay <= 0:
        raise ValueError(f"decay must be positive, not {decay}")
    return np.maximum(0.0, 1.0 - np.arange(episodes) / (decay * episodes))


def noise_distillation_histories(goals: Sequence[tuple[int, int]], episodes: int, episode_steps: int, seed: int = 0,
                                 heldout: Sequence[tuple[int, int]] = (), per_task: int = 1, size: int = 5,
                                 decay: float = 0.7) -> Histories:
    """`per_task` learning histories of `episodes` episodes of `episode_steps` steps for each goal of
    `goals` in a `size` x `size` Dark Room (module doc), refusing any goal of `heldout`."""
    check_heldout(goals, heldout)
    if episodes < 1 or episode_steps < 1:
        raise ValueError(f"a learning history needs episodes and steps, not {episodes} x {episode_steps}")
    goal_xy = np.asarray(goals, dtype=int).reshape(-1, 2)
    rng = np.random.default_rng(seed)
    task = np.repeat(np.arange(len(goal_xy)), per_task)
    rows, shape = len(task), (len(task), episodes, episode_steps)
    explores = rng.random(shape) < exploration_schedule(episodes, decay)[None, :, None]
    uniform_actions = rng.integers(len(MOVES), size=shape)
    goal_x, goal_y = goal_xy[task, 0, None], goal_xy[task, 1, None]  # (rows, 1): broadcast over episodes
    goal_state = goal_x * size + goal_y
    columns = {name: np.zeros(shape, dtype=np.float32 if name == "rewards" else np.int64)
               for name in ("states", "actions", "rewards", "next_states", "optimal_actions")}
    state = np.zeros((rows, episodes), dtype=np.int64)  # every episode starts at (0, 0)
    for t in range(episode_steps):  # the episodes of a history are independent given ε_k: all at once
        optimal = optimal_darkroom_action(state, (goal_x, goal_y), size)
        action = np.where(explores[..., t], uniform_actions[..., t], optimal)
        next_state = darkroom_step(state, action, size)
        for name, value in (("states", state), ("actions", action), ("rewards", next_state == goal_state),
                            ("next_states", next_state), ("optimal_actions", optimal)):
            columns[name][..., t] = value
        state = next_state
    length = episodes * episode_steps
    frame = kind_frame("learning", {"task": task, **{name: value.reshape(rows, length)
                                                     for name, value in columns.items()}})
    settings = {"size": size, "per_task": per_task, "heldout_goals": [list(map(int, g)) for g in heldout],
                "decay": decay, "behaviour": "the oracle, epsilon-greedy with epsilon_k = max(0, 1 - k / (decay K)) "
                                             "in episode k of K (AD-epsilon noise distillation)"}
    return Histories("darkroom", size * size, len(MOVES), length, goal_xy.tolist(), settings, seed, frame,
                     kind="learning", episodes=episodes, episode_steps=episode_steps)


@dataclass
class LearningArrays:
    """Learning histories as arrays: task (N,); states, actions, rewards, optimal_actions (N, L); and
    `none_action`, the index A of "no previous action" (the card's action count)."""

    task: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    optimal_actions: np.ndarray
    none_action: int

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, card: dict[str, Any]) -> LearningArrays:
        """The learning kind's table as arrays, checked against its card (kind, lengths L, ids in range)."""
        if card.get("kind") != "learning":
            raise ValueError(f"learning arrays read the learning kind of histories, not {card.get('kind')!r}")
        length, n = int(card["horizon"]), len(frame)
        arrays = {}
        for name in STEP_COLUMNS:
            lengths = frame[name].list.len()
            if n and (lengths.min() != length or lengths.max() != length):
                raise ValueError(f"column {name}: every history must have {length} steps (the card's horizon), "
                                 f"found lengths {lengths.min()}..{lengths.max()}")
            dtype = np.float32 if name == "rewards" else np.int64
            arrays[name] = frame[name].explode().to_numpy().astype(dtype).reshape(n, length)
        for name, limit in (("states", "states"), ("actions", "actions"), ("optimal_actions", "actions")):
            if n and (arrays[name].min() < 0 or arrays[name].max() >= card[limit]):
                raise ValueError(f"column {name}: values outside 0..{card[limit] - 1}")
        return cls(frame["task"].to_numpy().astype(np.int64), **arrays, none_action=int(card["actions"]))

    def __len__(self) -> int:
        return len(self.task)

    @property
    def length(self) -> int:
        """L, the steps of each history."""
        return self.states.shape[1]

    def subset(self, mask: np.ndarray) -> LearningArrays:
        return replace(self, **{name: getattr(self, name)[mask] for name in ("task", *STEP_COLUMNS)})

    def split(self, holdout_fraction: float) -> tuple[LearningArrays, LearningArrays]:
        """(train, heldout): the held-out part is every history of the last `holdout_fraction` of
        the distinct tasks (by id), so no held-out task is seen in training."""
        tasks = np.unique(self.task)
        heldout = np.isin(self.task, tasks[len(tasks) - int(holdout_fraction * len(tasks)):]) if holdout_fraction \
            else np.zeros(len(self), bool)
        return self.subset(~heldout), self.subset(heldout)

    def windows(self, size: int, rng: np.random.Generator, length: int) -> dict[str, np.ndarray]:
        """`size` windows of `length` consecutive steps, each from a random history at a random start
        (0..L - length): states, prev_actions, prev_rewards (the token's inputs), actions (the target:
        the learner's action) and optimal_actions, each (size, length)."""
        self.check_window(length)
        rows = rng.integers(len(self), size=size)
        return self.windows_at(rows, rng.integers(self.length - length + 1, size=size), length)

    def first_windows(self, length: int) -> dict[str, np.ndarray]:
        """The window of `length` steps at the start of every history, in order (evaluation curves)."""
        self.check_window(length)
        return self.windows_at(np.arange(len(self)), np.zeros(len(self), dtype=np.int64), length)

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
