"""The dataset contract: schema, card, episode structure, and validation of damaged datasets."""

import json
import shutil

import numpy as np
import polars as pl
import pytest

from wmrl.data import DatasetError, open_dataset, read_card
from wmrl.data.dataset import decode_obs, encode_obs, schema
from wmrl.envs import make_env


@pytest.fixture
def copy_of(random_dataset, tmp_path):
    target = tmp_path / "copy"
    shutil.copytree(random_dataset, target)
    return target


def test_card_describes_the_data(random_dataset):
    card = open_dataset(random_dataset).card
    assert card["transitions"] == 3000
    assert card["rows"] == card["transitions"] + card["episodes"]
    assert card["obs"] == {"kind": "grid", "shape": [10, 10, 4], "dtype": "bool",
                           "channels": ["paddle", "ball", "trail", "brick"], "encoding": "packbits"}
    assert card["bytes_per_step"]["obs_packed"] == 50
    assert card["bytes_per_step"]["on_disk"] < 50
    assert len(card["shards"]) >= 3


def test_rows_follow_the_schema_and_episode_structure(random_dataset):
    frame = open_dataset(random_dataset).read()
    assert dict(frame.schema) == schema({"kind": "discrete"})
    final = frame.filter(pl.col("action").is_null())
    assert final["reward"].null_count() == len(final) == frame["episode"].n_unique()
    per_episode = frame.group_by("episode").agg(pl.len().alias("rows"), pl.col("t").max().alias("t_max"),
                                                pl.col("t").min().alias("t_min"),
                                                (pl.col("terminated") | pl.col("truncated")).sum().alias("ends"))
    assert (per_episode["t_max"] == per_episode["rows"] - 1).all() and (per_episode["t_min"] == 0).all()
    assert (per_episode["ends"] == 1).all()  # exactly one transition ends each episode
    assert frame["policy_step"].max() == 3000
    transitions = frame.filter(pl.col("action").is_not_null())
    assert transitions["policy_step"].to_list() == list(range(3000))


def test_episodes_never_span_shards(random_dataset):
    dataset = open_dataset(random_dataset)
    episodes = [set(pl.read_parquet(p)["episode"].unique()) for p in dataset.shard_paths]
    for a, b in zip(episodes, episodes[1:], strict=False):
        assert not a & b


def test_recorded_observations_replay_the_environment(random_dataset):
    """Re-running the env with the recorded actions reproduces every recorded observation."""
    dataset = open_dataset(random_dataset)
    frame = dataset.read().filter(pl.col("episode") < 5)
    obs = dataset.observations(frame)
    env = make_env("minatar:breakout", {"sticky_action_prob": 0.1}, 500)
    first, _ = env.reset(seed=0)
    assert np.array_equal(first, obs[0])
    for i, action in enumerate(frame["action"].to_list()):
        if action is None:
            if i + 1 < len(frame):
                assert np.array_equal(env.reset()[0], obs[i + 1])
            continue
        assert np.array_equal(env.step(action)[0], obs[i + 1])


@pytest.mark.parametrize("batch", [
    np.random.default_rng(0).random((7, 10, 10, 3)) > 0.5,
    np.random.default_rng(0).standard_normal((7, 4)).astype(np.float32),
    np.random.default_rng(0).integers(0, 255, (7, 84, 84), dtype=np.uint8),
])
def test_obs_encoding_round_trips(batch):
    spec = {"shape": list(batch.shape[1:]), "dtype": batch.dtype.name}
    decoded = decode_obs(encode_obs(batch), spec)
    assert decoded.dtype == batch.dtype and np.array_equal(decoded, batch)


def test_missing_card(copy_of):
    (copy_of / "card.json").unlink()
    with pytest.raises(DatasetError, match="card.json: missing"):
        open_dataset(copy_of)


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.pop("shards"), "key 'shards' is missing"),
    (lambda c: c.update(seed="zero"), "'seed' must be int, got str"),
    (lambda c: c.update(format="other/9"), "format 'other/9' is not supported"),
    (lambda c: c.update(rows=c["rows"] + 1), "shard row counts do not add up"),
])
def test_bad_card(copy_of, edit, message):
    card = json.loads((copy_of / "card.json").read_text())
    edit(card)
    (copy_of / "card.json").write_text(json.dumps(card))
    with pytest.raises(DatasetError, match=message):
        read_card(copy_of)


def test_truncated_shard_is_detected(copy_of):
    shard = copy_of / "part-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="part-00001.parquet: sha256 .* truncated or edited"):
        open_dataset(copy_of)
    with pytest.raises(DatasetError, match="part-00001.parquet: not a readable Parquet file"):
        open_dataset(copy_of, verify=False)


def test_edited_shard_is_detected(copy_of):
    shard = copy_of / "part-00000.parquet"
    frame = pl.read_parquet(shard).with_columns(pl.col("reward") * 2)
    frame.write_parquet(shard)
    with pytest.raises(DatasetError, match="part-00000.parquet: sha256"):
        open_dataset(copy_of)


def test_wrong_schema_is_detected_even_with_a_matching_hash(copy_of):
    shard = copy_of / "part-00000.parquet"
    pl.read_parquet(shard).with_columns(pl.col("action").cast(pl.Int64)).write_parquet(shard)
    card = json.loads((copy_of / "card.json").read_text())
    from wmrl.data.dataset import sha256_file

    card["shards"][0]["sha256"] = sha256_file(shard)
    (copy_of / "card.json").write_text(json.dumps(card))
    with pytest.raises(DatasetError, match="does not match the expected"):
        open_dataset(copy_of)


def test_unlisted_and_missing_shards(copy_of):
    shutil.copy(copy_of / "part-00000.parquet", copy_of / "part-00099.parquet")
    with pytest.raises(DatasetError, match=r"\['part-00099.parquet'\] are not listed"):
        open_dataset(copy_of)
    (copy_of / "part-00099.parquet").unlink()
    (copy_of / "part-00002.parquet").unlink()
    with pytest.raises(DatasetError, match="part-00002.parquet: missing"):
        open_dataset(copy_of)


def test_obs_of_the_wrong_width_is_rejected():
    column = pl.Series("obs", [b"\x00" * 50, b"\x00" * 49], dtype=pl.Binary)
    with pytest.raises(DatasetError, match="every value must be 50 bytes"):
        decode_obs(column, {"shape": [10, 10, 4], "dtype": "bool"})
