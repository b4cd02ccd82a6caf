"""Training windows: K consecutive transitions of one episode, sampled evenly across tasks.

A window starting at transition row i holds the observations of rows i..i+K (the last one is the
observation after the K-th action), the K actions, rewards, termination flags and returns-to-go
(for return-conditioned methods), and a mask that is 0 where the episode ended before the window
did (those positions are padding).

Observations of different tasks share one input layout along their last axis: for MinAtar grids,
`channel_layout = "union"` gives every distinct channel name of the suite its own plane (so
"trail" or "enemy_bullet" mean the same input in every game), `"pad"` stacks each game's channels
from plane 0 (zero-padding to the widest game); flat vectors are always zero-padded; images
(Atari frames) must all have one shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from wmrl.data.dataset import Dataset, decode_obs
from wmrl.models.config import CHANNEL_LAYOUTS


@dataclass(frozen=True)
class ObsLayout:
    kind: str  # "grid", "vector" or "image"
    shape: tuple[int, ...]  # the shared shape; its last axis holds every task's features
    features: dict[str, list[int]]  # per task: where its last-axis features go in the shared layout

    def place(self, task: str, own: np.ndarray) -> np.ndarray:
        """Observations (…, *task's own shape) of `task` in the shared layout (…, *shape), float32."""
        shared = np.zeros((*own.shape[:own.ndim - len(self.shape)], *self.shape), dtype=np.float32)
        shared[..., self.features[task]] = own
        return shared


def obs_layout(cards: dict[str, dict[str, Any]], mode: str = "union") -> ObsLayout:
    """The shared observation layout of the tasks whose dataset cards are `cards`."""
    if mode not in CHANNEL_LAYOUTS:
        raise ValueError(f"unknown channel layout {mode!r}; choose one of {', '.join(CHANNEL_LAYOUTS)}")
    specs = {task: card["obs"] for task, card in cards.items()}
    kinds = {spec["kind"] for spec in specs.values()}
    if len(kinds) != 1:
        raise ValueError(f"tasks mix observation kinds {sorted(kinds)}; one model needs one kind")
    kind = kinds.pop()
    if kind == "grid":
        grids = {tuple(spec["shape"][:-1]) for spec in specs.values()}
        if len(grids) != 1:
            raise ValueError(f"tasks have different grid sizes {sorted(grids)}")
        if mode == "union":
            names: list[str] = []
            for spec in specs.values():
                names += [name for name in spec["channels"] if name not in names]
            features = {task: [names.index(name) for name in spec["channels"]] for task, spec in specs.items()}
            width = len(names)
        else:
            features = {task: list(range(spec["shape"][-1])) for task, spec in specs.items()}
            width = max(spec["shape"][-1] for spec in specs.values())
        return ObsLayout("grid", (*grids.pop(), width), features)
    if kind == "image":
        shapes = {tuple(spec["shape"]) for spec in specs.values()}
        if len(shapes) != 1:
            raise ValueError(f"tasks have different frame shapes {sorted(shapes)}")
        shape = shapes.pop()
        return ObsLayout("image", shape, {task: list(range(shape[-1])) for task in specs})
    if kind == "vector":
        features = {task: list(range(spec["shape"][0])) for task, spec in specs.items()}
        return ObsLayout("vector", (max(spec["shape"][0] for spec in specs.values()),), features)
    raise ValueError(f"no shared layout for {kind!r} observations")


@dataclass
class TaskSteps:
    """One task's steps in memory, in the task's own observation layout."""

    task: str
    index: int  # the task's id in the model's task embedding
    obs: np.ndarray  # (rows, *own obs shape)
    action: np.ndarray  # (rows,) int64, -1 on final rows
    reward: np.ndarray  # (rows,) float32, 0 on final rows
    terminated: np.ndarray  # (rows,) bool
    episode_end: np.ndarray  # (rows,) the row index of the episode's final row
    starts: np.ndarray  # transition rows: where windows may start
    return_to_go: np.ndarray  # (rows,) float32: the rewards of this row and the later rows of its episode

    def chunk(self, block: int) -> TaskSteps:
        """Held in memory, every chunk of training is all of it (see ReplayChunks)."""
        return self


def load_steps(datasets: list[Dataset], task: str, index: int, episodes: str = "all",
               holdout_fraction: float = 0.1, kept: dict[str, int] | None = None) -> TaskSteps:
    """Load one task's datasets (all its behaviour policies) into memory. `episodes` picks "all",
    "train" (all but the last `holdout_fraction` of each dataset's episodes) or "heldout"; only
    the shards that hold those episodes are read. `kept` (dataset directory -> n) limits a dataset
    to its first n episodes (the rest held back, e.g. for fine-tuning: `held_back_from`)."""
    frames, offset = [], 0
    kept = kept or {}
    for dataset in datasets:
        rows = episode_filter(dataset, episodes, holdout_fraction, kept.get(str(dataset.directory)))
        kept_rows = dataset.scan().filter(rows).collect()
        frames.append(kept_rows.with_columns(pl.col("episode") + offset))
        offset += dataset.card["episodes"]
    frame = pl.concat(frames)
    if frame.is_empty():
        raise ValueError(f"task {task}: no {episodes} episodes in {[str(d.directory) for d in datasets]}")
    return task_steps(frame, datasets[0].card["obs"], task, index)


def episode_filter(dataset: Dataset, episodes: str, holdout_fraction: float, kept: int | None = None) -> pl.Expr:
    """Which rows of `dataset` are its "all", "train" or "heldout" episodes (see split_episodes),
    of its first `kept` episodes (default: all of them)."""
    count = dataset.card["episodes"] if kept is None else kept
    within = pl.col("episode") < count
    if episodes == "all":
        return within
    cut = holdout_cut(count, holdout_fraction, str(dataset.directory))
    return pl.col("episode") < cut if episodes == "train" else (pl.col("episode") >= cut) & within


def holdout_cut(count: int, holdout_fraction: float, name: str, first: int = 0) -> int:
    """The first held-out episode of `count` episodes numbered from `first`: the last
    `holdout_fraction` of them, at least one, are held out."""
    if count < 2:
        raise ValueError(f"{name}: {count} episode, none to hold out; generate more steps or set the task's "
                         f"max_episode_steps")
    return first + count - max(1, int(round(holdout_fraction * count)))


def split_episodes(frame: pl.DataFrame, episodes: str, holdout_fraction: float, name: str) -> pl.DataFrame:
    """The rows of "all" episodes, the "train" ones or the "heldout" ones (the last
    `holdout_fraction` of the episodes, at least one) of a dataset's `frame`."""
    if episodes == "all":
        return frame
    cut = holdout_cut(frame["episode"].n_unique(), holdout_fraction, name, frame["episode"].min())
    return frame.filter(pl.col("episode") < cut if episodes == "train" else pl.col("episode") >= cut)


class ReplayChunks:
    """One task's training episodes read from Parquet a chunk at a time, for replays too large to
    hold (`paper` scale: 10M Atari frames a game). Chunk b is whole consecutive episodes of one
    of the task's datasets, about `rows` rows from an episode drawn with the generator
    (seed, b, task index); windows are sampled within the current chunk. A chunk is a function of
    (seed, b) alone, so a resumed run reads the chunks an unbroken one would. Only the episode
    column is read whole (to find episode starts); observations are read a chunk at a time."""

    def __init__(self, datasets: list[Dataset], task: str, index: int, holdout_fraction: float, rows: int,
                 seed: int, kept: dict[str, int] | None = None):
        self.datasets, self.task, self.index, self.rows, self.seed = datasets, task, index, rows, seed
        self.starts = []  # per dataset: the first row of each training episode, and the end of the last
        for dataset in datasets:
            count = (kept or {}).get(str(dataset.directory), dataset.card["episodes"])  # as load_steps
            cut = holdout_cut(count, holdout_fraction, str(dataset.directory))
            episode = dataset.scan().select("episode").collect()["episode"].to_numpy()
            boundaries = np.flatnonzero(np.diff(episode, prepend=-1))  # the first row of every episode
            self.starts.append(boundaries[:cut + 1])  # + the first held-out row: where training rows end
        self.block, self.steps = -1, None

    def chunk(self, block: int) -> TaskSteps:
        """The steps of chunk `block` (kept until another block is asked for)."""
        if block != self.block:
            rng = np.random.default_rng([self.seed, block, self.index])
            sizes = np.array([starts[-1] for starts in self.starts], dtype=float)
            which = int(rng.choice(len(self.datasets), p=sizes / sizes.sum()))
            starts = self.starts[which]
            first = int(rng.integers(max(1, np.searchsorted(starts, starts[-1] - self.rows, side="right"))))
            last = max(first + 1, int(np.searchsorted(starts, starts[first] + self.rows, side="right")) - 1)
            frame = self.datasets[which].scan().slice(int(starts[first]), int(starts[last] - starts[first])).collect()
            self.block, self.steps = block, task_steps(frame, self.datasets[which].card["obs"], self.task,
                                                       self.index)
        return self.steps


def few_shot(frame: pl.DataFrame, transitions: int, start: float, name: str) -> pl.DataFrame:
    """Exactly `transitions` consecutive transitions of a dataset's `frame`: whole episodes from an
    episode start, the last episode cut short (its cut row becomes a final row, the transition
    before it truncated). The slice begins at the last episode start at or before
    `start` x (all transitions - `transitions`): 0 takes the first steps, 1 the latest that fit."""
    per_episode = frame.group_by("episode", maintain_order=True).agg(steps=pl.col("action").is_not_null().sum())
    before = per_episode["steps"].cum_sum() - per_episode["steps"]  # transitions before each episode
    total = int(per_episode["steps"].sum())
    if total < transitions:
        raise ValueError(f"{name}: {total} transitions, fewer than the {transitions} asked for fine-tuning")
    target = start * (total - transitions)
    first = int((before <= target).arg_true().max())
    origin = int(before[first])
    kept = (per_episode.with_columns(before=before).filter(pl.col("before") >= origin)
            .filter(pl.col("before") < origin + transitions))
    frame = frame.join(kept.select("episode", "before", "steps"), on="episode").sort("episode", "t")
    room = origin + transitions - pl.col("before")  # transitions still to take when this episode begins
    shortened = pl.col("steps") > room
    frame = frame.filter(pl.col("t") <= room)
    cut = shortened & (pl.col("t") == room)  # the row where the cut episode now ends
    nulls = {c: pl.when(cut).then(None).otherwise(pl.col(c)) for c in ("action", "reward", "terminated")}
    last = shortened & (pl.col("t") == room - 1)
    return frame.with_columns(
        **nulls,
        truncated=pl.when(cut).then(None).when(last).then(True).otherwise(pl.col("truncated")),
        episode=pl.col("episode").rank("dense").cast(pl.Int64) - 1,
    ).drop("before", "steps")


def slice_episodes(dataset: Dataset, transitions: int, start: float, largest: int | None = None) -> list[int]:
    """The dataset's episodes (ids) that hold the fine-tuning slice of `transitions`: the first
    `transitions` of the `largest` slice (`few_shot` at `start`; default: the slice itself), so
    that the slices of several sizes are nested, each a prefix of the larger ones. Read from the
    columns without observations."""
    name = str(dataset.directory)
    light = dataset.scan().select(pl.exclude("obs")).with_columns(source=pl.col("episode")).collect()
    outer = few_shot(light, largest or transitions, start, name)
    return few_shot(outer, transitions, 0.0, name)["source"].unique().sort().to_list()


def read_few_shot(dataset: Dataset, transitions: int, start: float, largest: int | None = None) -> pl.DataFrame:
    """`few_shot` of a dataset without reading it whole (see slice_episodes): only the slice's
    episodes' rows are read (a few thousand of 10M Atari frames at `paper` scale), and taking
    the slice again from them, from their start, gives the same rows."""
    episodes = slice_episodes(dataset, transitions, start, largest)
    return few_shot(dataset.scan().filter(pl.col("episode").is_in(episodes)).collect(), transitions, 0.0,
                    str(dataset.directory))


def held_back_from(dataset: Dataset, transitions: int, start: float) -> int:
    """The first episode of the slice of `transitions` at `start`: the episodes from here on are
    held back from pretraining when a fine-tuning run of a source task (the transfer control)
    draws its slices (all prefixes of that one) from this dataset."""
    return slice_episodes(dataset, transitions, start)[0]


def kept_episodes(datasets: dict[str, list[Dataset]], held_back: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Pretraining's `kept` (see load_steps): for each task's open dataset of `datasets` that a
    held-back slice is cut from ({task: {dataset, transitions, start}}), the episodes before that slice."""
    return {entry["dataset"]: held_back_from(dataset, entry["transitions"], entry["start"])
            for task, entry in held_back.items() for dataset in datasets.get(task, [])
            if str(dataset.directory) == entry["dataset"]}


def task_steps(frame: pl.DataFrame, obs: dict[str, Any], task: str, index: int) -> TaskSteps:
    """The steps of `frame` (rows of whole episodes, sorted) as arrays; `obs` is the card's obs spec."""
    return steps_of(task, index, decode_obs(frame["obs"], obs), frame["action"].fill_null(-1).to_numpy(),
                    frame["reward"].fill_null(0.0).to_numpy(), frame["terminated"].fill_null(False).to_numpy())


def steps_of(task: str, index: int, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
             terminated: np.ndarray) -> TaskSteps:
    """Rows of whole episodes (an episode's final row has action -1) as a task's steps."""
    action, reward = action.astype(np.int64), reward.astype(np.float32)
    episode_end = next_true(action < 0)
    return TaskSteps(task=task, index=index, obs=obs, action=action, reward=reward, terminated=terminated.astype(bool),
                     episode_end=episode_end, starts=np.flatnonzero(action >= 0),
                     return_to_go=returns_to_go(reward, episode_end))


def returns_to_go(reward: np.ndarray, episode_end: np.ndarray) -> np.ndarray:
    """R_t = r_t + r_{t+1} + ... up to the episode's final row, undiscounted (Decision Transformer's
    return-to-go). Only the rows given count: an episode cut short (by its time limit, or by the
    few-shot slice) has the return it has in the data, never rewards from beyond it."""
    after = np.r_[np.cumsum(reward[::-1], dtype=np.float64)[::-1], 0.0]  # after[i]: rewards of rows i..end
    return (after[:-1] - after[episode_end + 1]).astype(np.float32)


def next_true(flags: np.ndarray) -> np.ndarray:
    """For every position, the index of the first True at or after it."""
    index = np.where(flags, np.arange(len(flags)), len(flags))
    return np.minimum.accumulate(index[::-1])[::-1]


class WindowSampler:
    """Batches of windows: tasks drawn evenly, then a start row uniformly within the task."""

    def __init__(self, tasks: list[TaskSteps], layout: ObsLayout, window: int):
        self.tasks, self.layout, self.window = tasks, layout, window

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        which = rng.integers(len(self.tasks), size=batch)
        out = self._empty(batch)
        for position, steps in enumerate(self.tasks):
            members = np.flatnonzero(which == position)
            if len(members):
                start = steps.starts[rng.integers(len(steps.starts), size=len(members))]
                self._fill(out, members, steps, start)
        return out

    def episode_starts(self, position: int) -> dict[str, np.ndarray]:
        """One window from the first step of every episode of task `position` (in episode order)."""
        steps = self.tasks[position]
        return self.windows(position, steps.starts[(steps.starts == 0) | (steps.episode_end[np.maximum(
            steps.starts - 1, 0)] == steps.starts - 1)])

    def windows(self, position: int, starts: np.ndarray) -> dict[str, np.ndarray]:
        """One window from each of the rows `starts` of task `position`."""
        out = self._empty(len(starts))
        self._fill(out, np.arange(len(starts)), self.tasks[position], starts)
        return out

    def _empty(self, batch: int) -> dict[str, np.ndarray]:
        k = self.window
        return {
            "obs": np.zeros((batch, k + 1, *self.layout.shape), dtype=np.float32),
            "actions": np.zeros((batch, k), dtype=np.int64),
            "reward": np.zeros((batch, k), dtype=np.float32),
            "terminated": np.zeros((batch, k), dtype=bool),
            "return_to_go": np.zeros((batch, k), dtype=np.float32),
            "mask": np.zeros((batch, k), dtype=bool),
            "task": np.zeros(batch, dtype=np.int64),
        }

    def _fill(self, out: dict[str, np.ndarray], members: np.ndarray, steps: TaskSteps, start: np.ndarray) -> None:
        k = self.window
        rows = start[:, None] + np.arange(k + 1)  # (n, K+1)
        end = steps.episode_end[start][:, None]
        seen = rows <= end  # observation rows inside the episode
        rows = np.minimum(rows, end)
        own = steps.obs[rows] * seen.reshape(*seen.shape, *([1] * (steps.obs.ndim - 1)))
        out["obs"][members] = self.layout.place(steps.task, own)
        transition = rows[:, :k] < end  # transition rows end one before the final row
        step_rows = rows[:, :k]
        out["actions"][members] = np.where(transition, steps.action[step_rows], 0)
        out["reward"][members] = np.where(transition, steps.reward[step_rows], 0.0)
        out["terminated"][members] = transition & steps.terminated[step_rows]
        out["return_to_go"][members] = np.where(transition, steps.return_to_go[step_rows], 0.0)
        out["mask"][members] = transition
        out["task"][members] = steps.index
