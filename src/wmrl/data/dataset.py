"""The dataset contract (docs/architecture.md, "Data contracts"): Parquet schema, ``card.json``,
and a validating reader.

One dataset = one directory holding episode-aligned Parquet shards ``part-NNNNN.parquet`` and a
``card.json`` describing them. One row per step of an episode:

==============  =========================  ===================================================
column          type                       meaning
==============  =========================  ===================================================
episode         Int64                      episode index within the dataset, from 0
t               Int32                      step within the episode, from 0
obs             Binary                     observation at t (bool grids: ``np.packbits``; other
                                           dtypes: raw little-endian bytes; shape in the card)
action          Int16 / List(Float32)      action taken at t; null on the episode's final row
reward          Float32                    reward received for that action; null on final row
terminated      Boolean                    the action ended the episode (MDP terminal state); null
                                           on final row
truncated       Boolean                    the episode was cut after the action (time limit or
                                           the end of the data budget); null on final row
policy_step     Int64                      environment steps the behaviour agent had taken
                                           when it saw this observation (its training clock)
==============  =========================  ===================================================

The observation after the action of row t is the obs of row t+1 of the same episode; every
episode ends with a final row holding its last observation, so no transition is lost.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

FORMAT = "wmrl.dataset/1"
CARD = "card.json"
SHARD_GLOB = "part-*.parquet"

CARD_KEYS = {
    "format": str, "suite": str, "task": str, "env": dict, "obs": dict, "action": dict,
    "policy": dict, "seed": int, "transitions": int, "rows": int, "episodes": int,
    "returns": dict, "bytes_per_step": dict, "shards": list, "generator": dict,
}


class DatasetError(ValueError):
    """A dataset on disk does not match its card or the schema."""


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def schema(action: dict[str, Any]) -> dict[str, pl.DataType]:
    """Column types of a dataset whose action spec (card["action"]) is `action`."""
    action_type = pl.Int16() if action["kind"] == "discrete" else pl.List(pl.Float32())
    return {
        "episode": pl.Int64(), "t": pl.Int32(), "obs": pl.Binary(), "action": action_type,
        "reward": pl.Float32(), "terminated": pl.Boolean(), "truncated": pl.Boolean(),
        "policy_step": pl.Int64(),
    }


# --------------------------------------------------------------------------- observations


def obs_bytes(obs: dict[str, Any]) -> int:
    """Bytes one observation takes in the `obs` column."""
    size = int(np.prod(obs["shape"]))
    return (size + 7) // 8 if obs["dtype"] == "bool" else size * np.dtype(obs["dtype"]).itemsize


def encode_obs(batch: np.ndarray) -> pl.Series:
    """The `obs` column for the observations of `batch` (first axis); booleans are bit-packed."""
    flat = batch.reshape(len(batch), -1)
    if flat.dtype == np.bool_:
        flat = np.packbits(flat, axis=1)
    else:
        flat = np.ascontiguousarray(flat.astype(flat.dtype.newbyteorder("<"), copy=False)).view(np.uint8)
    # uint8 rows -> List(UInt8) -> Binary is done by polars in bulk (no Python bytes per row).
    return pl.Series("obs", flat).cast(pl.List(pl.UInt8)).cast(pl.Binary)


def decode_obs(column: pl.Series, obs: dict[str, Any]) -> np.ndarray:
    """The observations of an `obs` column as an array of shape (rows, *obs["shape"])."""
    shape = tuple(obs["shape"])
    width = obs_bytes(obs)
    sizes = column.bin.size()
    if column.null_count() or (len(column) and (sizes.min() != width or sizes.max() != width)):
        raise DatasetError(f"obs column: every value must be {width} bytes for obs {obs}")
    raw = column.bin.reinterpret(dtype=pl.Array(pl.UInt8, width)).to_numpy().reshape(len(column), width)
    if obs["dtype"] == "bool":
        size = int(np.prod(shape))
        return np.unpackbits(raw, axis=1, count=size).astype(bool).reshape(-1, *shape)
    return np.ascontiguousarray(raw).view(np.dtype(obs["dtype"]).newbyteorder("<")).reshape(-1, *shape)


# --------------------------------------------------------------------------- reading


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_card(directory: Path | str) -> dict[str, Any]:
    """Load and check `directory`/card.json (keys, types, format version)."""
    path = Path(directory) / CARD
    if not path.is_file():
        raise DatasetError(f"{path}: missing; {directory} is not a complete dataset (regenerate it)")
    try:
        card = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(card, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    for key, kind in CARD_KEYS.items():
        if key not in card:
            raise DatasetError(f"{path}: key '{key}' is missing")
        if not isinstance(card[key], kind):
            raise DatasetError(f"{path}: '{key}' must be {kind.__name__}, got {type(card[key]).__name__}")
    if card["format"] != FORMAT:
        raise DatasetError(f"{path}: format {card['format']!r} is not supported (expected {FORMAT!r})")
    if sum(shard["rows"] for shard in card["shards"]) != card["rows"]:
        raise DatasetError(f"{path}: shard row counts do not add up to rows={card['rows']}")
    return card


@dataclass(frozen=True)
class Dataset:
    """A validated dataset directory."""

    directory: Path
    card: dict[str, Any]

    @property
    def shard_paths(self) -> list[Path]:
        return [self.directory / shard["file"] for shard in self.card["shards"]]

    def scan(self) -> pl.LazyFrame:
        """All rows, lazily (shards are read as they are needed)."""
        return pl.scan_parquet(self.shard_paths)

    def read(self) -> pl.DataFrame:
        return self.scan().collect()

    def observations(self, frame: pl.DataFrame) -> np.ndarray:
        return decode_obs(frame["obs"], self.card["obs"])


def open_dataset(directory: Path | str, verify: bool = True) -> Dataset:
    """Open a dataset, checking its card, every shard's schema and row count, and (if `verify`)
    every shard's sha256, so that a truncated or edited shard fails here with a clear message."""
    directory = Path(directory)
    card = read_card(directory)
    expected = schema(card["action"])
    listed = {shard["file"] for shard in card["shards"]}
    extra = sorted(p.name for p in directory.glob(SHARD_GLOB) if p.name not in listed)
    if extra:
        raise DatasetError(f"{directory}: shards {extra} are not listed in {CARD}")
    for shard in card["shards"]:
        path = directory / shard["file"]
        if not path.is_file():
            raise DatasetError(f"{path}: missing (listed in {CARD})")
        if verify and (digest := sha256_file(path)) != shard["sha256"]:
            raise DatasetError(f"{path}: sha256 {digest[:12]}... does not match the card's "
                               f"{shard['sha256'][:12]}...: the shard was truncated or edited; regenerate it")
        try:
            found = pl.read_parquet_schema(path)
            rows = pl.scan_parquet(path).select(pl.len()).collect().item()
        except Exception as exc:  # polars raises several types for damaged files
            raise DatasetError(f"{path}: not a readable Parquet file ({exc})") from None
        if dict(found) != expected:
            raise DatasetError(f"{path}: schema {dict(found)} does not match the expected {expected}")
        if rows != shard["rows"]:
            raise DatasetError(f"{path}: {rows} rows, the card says {shard['rows']}")
    return Dataset(directory, card)
