"""What the Snakemake rules ask of the package at DAG-build time: paths, targets, job params.

Kept free of heavy imports (no torch, polars or gymnasium) so that ``snakemake`` with nothing to
do answers in about a second.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.config import task_dataset, to_plain

DATASET = "data/{scale}/{suite}/{task}/{policy}/seed{seed}"
# The source that decides a dataset's bytes (readers elsewhere in data/ do not regenerate data).
DATASET_CODE = ("envs", "data/dataset", "data/writer", "data/behaviour", "data/generate")


def dataset_dirs(cfg: DictConfig, tasks: list[str] | None = None) -> list[str]:
    """Every dataset directory the experiment needs (all tasks unless `tasks` is given)."""
    dirs = []
    for task in tasks if tasks is not None else list(cfg.tasks):
        dataset = task_dataset(cfg, task)
        for policy in dataset.policies:
            for seed in dataset.seeds:
                dirs.append(DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=policy, seed=seed))
    return dirs


def dataset_spec(cfg: DictConfig, task: str, policy: str, seed: int) -> dict[str, Any]:
    """Everything one dataset job needs, and nothing else (its Snakemake params): a change to
    another task's or another policy's settings leaves this spec, and so this dataset, alone."""
    task_cfg = cfg.tasks[task]
    dataset = task_dataset(cfg, task)
    return {
        "suite": cfg.suite, "task": task, "policy": policy, "seed": int(seed),
        "env": task_cfg.env, "env_kwargs": to_plain(task_cfg.env_kwargs),
        "max_episode_steps": task_cfg.max_episode_steps,
        "shard_rows": dataset.shard_rows, "settings": to_plain(dataset[policy]),
    }
