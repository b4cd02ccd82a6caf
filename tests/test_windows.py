"""Training windows: the shared observation layout, and windows that respect episode ends."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from wmrl.data import open_dataset
from wmrl.data.windows import (ReplayChunks, WindowSampler, episode_filter, held_back_from, kept_episodes, load_steps,
                               obs_layout, read_few_shot, slice_episodes)

ROOT = Path(__file__).resolve().parents[1]

GRID_CARDS = {
    "breakout": {"obs": {"kind": "grid", "shape": [10, 10, 4], "channels": ["paddle", "ball", "trail", "brick"]}},
    "asterix": {"obs": {"kind": "grid", "shape": [10, 10, 4], "channels": ["player", "enemy", "trail", "gold"]}},
}


def test_union_layout_shares_channels_by_name():
    layout = obs_layout(GRID_CARDS, "union")
    assert layout.shape == (10, 10, 7)
    assert layout.features == {"breakout": [0, 1, 2, 3], "asterix": [4, 5, 2, 6]}  # "trail" is shared


def test_pad_layout_and_vectors():
    assert obs_layout(GRID_CARDS, "pad").shape == (10, 10, 4)
    cards = {"a": {"obs": {"kind": "vector", "shape": [4]}}, "b": {"obs": {"kind": "vector", "shape": [6]}}}
    assert obs_layout(cards).shape == (6,)
    with pytest.raises(ValueError, match="mix observation kinds"):
        obs_layout({**GRID_CARDS, **cards})
    with pytest.raises(ValueError, match="unknown channel layout"):
        obs_layout(GRID_CARDS, "stack")


def test_windows_follow_the_episodes(random_dataset):
    dataset = open_dataset(random_dataset)
    steps = load_steps([dataset], "breakout", 1)
    layout = obs_layout({"breakout": dataset.card}, "union")
    k = 24  # longer than many random breakout episodes, so windows run past episode ends
    batch = WindowSampler([steps], layout, k).sample(64, np.random.default_rng(0))
    assert batch["obs"].shape == (64, k + 1, 10, 10, 4) and (batch["task"] == 1).all()
    assert not batch["mask"].all() and batch["mask"][:, 0].all()
    frame = dataset.read()
    obs = dataset.observations(frame)
    actions = frame["action"].to_numpy()
    for window in range(64):
        mask = batch["mask"][window]
        real = int(mask.sum())
        assert mask[:real].all() and not mask[real:].any()  # transitions first, then padding
        # locate the window's first observation and check every step against the dataset
        start = next(i for i in np.flatnonzero(~np.isnan(actions.astype(float)))
                     if np.array_equal(obs[i], batch["obs"][window, 0].astype(bool))
                     and all(actions[i + t] == batch["actions"][window, t] for t in range(real)))
        for t in range(real + 1):
            assert np.array_equal(batch["obs"][window, t].astype(bool), obs[start + t])
        assert not batch["obs"][window, real + 1:].any()  # after the final observation: zeros
        assert batch["terminated"][window, :real].sum() <= 1


def test_heldout_episodes_are_disjoint_from_training_episodes(random_dataset):
    dataset = open_dataset(random_dataset)
    train = load_steps([dataset], "breakout", 0, "train", holdout_fraction=0.2)
    heldout = load_steps([dataset], "breakout", 0, "heldout", holdout_fraction=0.2)
    assert len(train.action) + len(heldout.action) == dataset.card["rows"]
    assert len(heldout.starts) > 0


def test_streamed_chunks_are_whole_training_episodes_and_a_function_of_seed_and_block(random_dataset):
    """ReplayChunks (paper scale) reads about `rows` rows of whole training episodes at a time,
    never a held-out one, and the same (seed, block) always gives the same chunk."""

    dataset = open_dataset(random_dataset)
    train = load_steps([dataset], "breakout", 1, "train", 0.2)
    held_out_obs = load_steps([dataset], "breakout", 1, "heldout", 0.2).obs
    chunks = ReplayChunks([dataset], "breakout", 1, 0.2, rows=300, seed=0)
    longest = int(np.diff(np.flatnonzero(train.action < 0)).max())
    for block in range(6):
        steps = chunks.chunk(block)
        finals = np.flatnonzero(steps.action < 0)
        assert finals[-1] == len(steps.action) - 1  # ends with an episode's final row
        assert len(steps.action) <= 300 + longest
        n = len(steps.action)  # consecutive training rows from an episode start:
        assert any(np.array_equal(train.action[s:s + n], steps.action) and np.array_equal(train.obs[s:s + n], steps.obs)
                   for s in np.flatnonzero(np.diff(train.action < 0, prepend=True)))
    again = ReplayChunks([dataset], "breakout", 1, 0.2, rows=300, seed=0)
    assert np.array_equal(again.chunk(4).obs, chunks.chunk(4).obs)
    assert not np.array_equal(again.chunk(1).obs[:50], again.chunk(2).obs[:50])
    assert len(held_out_obs) and len(train.obs) + len(held_out_obs) == len(dataset.read())


def test_the_fine_tuning_slices_are_nested_each_the_start_of_the_larger(random_dataset):
    dataset = open_dataset(random_dataset)
    largest = read_few_shot(dataset, 1500, 1.0)
    transitions = pl.col("action").is_not_null()
    columns = ["obs", "action", "reward", "policy_step"]
    for size in (100, 400, 1500):
        episodes = slice_episodes(dataset, size, 1.0, 1500)
        assert episodes == slice_episodes(dataset, 1500, 1.0)[:len(episodes)]
        part = read_few_shot(dataset, size, 1.0, 1500)
        assert int(part.select(transitions.sum()).item()) == size
        assert part.filter(transitions).select(columns).equals(largest.filter(transitions).select(columns).head(size))
    assert slice_episodes(dataset, 400, 1.0) != slice_episodes(dataset, 400, 1.0, 1500)  # alone, it sits at the end


def test_the_controls_held_back_episodes_never_reach_pretraining_data(random_dataset):
    dataset, directory = open_dataset(random_dataset), str(random_dataset)
    held_back = {"breakout": {"dataset": directory, "transitions": 700, "start": 1.0}}
    kept = kept_episodes({"breakout": [dataset], "other": []}, held_back)
    assert kept == {directory: held_back_from(dataset, 700, 1.0)}
    assert kept_episodes({"asterix": [dataset]}, held_back) == {}  # not that task's data: nothing to cut
    fine_tuned = {episode for size in (100, 300, 700) for episode in slice_episodes(dataset, size, 1.0, 700)}
    for part in ("all", "train", "heldout"):
        rows = dataset.scan().filter(episode_filter(dataset, part, 0.2, kept[directory])).collect()
        assert not rows.is_empty() and not set(rows["episode"]) & fine_tuned, part
        assert len(load_steps([dataset], "breakout", 0, part, 0.2, kept).action) == len(rows)
    chunks = ReplayChunks([dataset], "breakout", 0, 0.2, rows=300, seed=0, kept=kept)
    first_held_back_row = int(dataset.scan().select((pl.col("episode") < kept[directory]).sum()).collect().item())
    assert all(starts[-1] <= first_held_back_row for starts in chunks.starts)  # chunks end before the slice


def test_pretraining_reads_the_controls_dataset_less_its_held_back_slice():
    from wmrl.config import compose
    from wmrl.dag.specs import pretrain_spec, world_model_spec

    cfg = compose({"scale": "smoke"}, ROOT)
    spec = pretrain_spec(cfg, "small", "transformer", 0)
    control = spec["held_back"]["space_invaders"]
    assert control == {"dataset": "data/smoke/minatar/space_invaders/dqn/seed0", "transitions": 1000, "start": 1.0}
    assert control["dataset"] in spec["datasets"]["space_invaders"]
    assert world_model_spec(cfg, "small", "transformer", 0)["held_back"] == spec["held_back"]
    assert pretrain_spec(compose({"scale": "smoke", "experiment": "value_loss"}, ROOT), "small", "transformer",
                         0)["held_back"] == {}
