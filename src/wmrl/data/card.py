"""A dataset's ``card.json`` (the contract: `wmrl.data.dataset`), as generation and a Minari import
write it: what was recorded, by which policy, with which code and package versions."""

from __future__ import annotations

import json
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from wmrl import cpu_kernels
from wmrl.data import DATASET_CODE
from wmrl.data.dataset import CARD, FORMAT, obs_bytes
from wmrl.data.writer import DatasetWriter
from wmrl.provenance import code_hash


def dataset_card(spec: dict[str, Any], obs: dict[str, Any], action: dict[str, Any], writer: DatasetWriter,
                 policy: dict[str, Any]) -> dict[str, Any]:
    """The card of the dataset `writer` has recorded for `spec`; `policy`: what recorded it."""
    rows = sum(shard["rows"] for shard in writer.shards)
    complete = writer.episode_returns[:-1] if writer.cut_last_episode else writer.episode_returns
    returns = {"episodes": len(complete)}
    if complete:
        values = np.asarray(complete)
        returns |= {"mean": float(values.mean()), "std": float(values.std()), "min": float(values.min()),
                    "median": float(np.median(values)), "max": float(values.max())}
    return {
        "format": FORMAT,
        "suite": spec["suite"], "task": spec["task"],
        "env": {"id": spec["env"], "kwargs": spec["env_kwargs"], "max_episode_steps": spec["max_episode_steps"],
                **{key: spec[key] for key in ("wrappers", "obs_keys") if key in spec}},
        "obs": {**obs, "encoding": "packbits" if obs["dtype"] == "bool" else "raw-le"},
        "action": action,
        "policy": policy,
        "seed": spec["seed"],
        "transitions": writer.transitions, "rows": rows, "episodes": writer.episodes,
        "returns": returns,  # over episodes that ended in the env (not cut by the data budget)
        "bytes_per_step": {"obs_packed": obs_bytes(obs),
                           "obs_unpacked": int(np.prod(obs["shape"])) * np.dtype(obs["dtype"]).itemsize,
                           "on_disk": round(sum(s["bytes"] for s in writer.shards) / max(rows, 1), 2)},
        "shards": writer.shards,
        "generator": {"code_hash": code_hash(*DATASET_CODE), "cpu_kernels": cpu_kernels(),
                      "versions": {p: version(p) for p in ("wmrl", "polars", "numpy", "gymnasium", "minatar",
                                                             "stable-baselines3", "sb3-contrib", "torch")}},
    }


def write_card(directory: Path, card: dict[str, Any]) -> None:
    """Write `card` as the ``card.json`` of the dataset in `directory`."""
    (directory / CARD).write_text(json.dumps(card, indent=1) + "\n")
