"""What the Snakemake rules ask of the package at DAG-build time: paths, targets, job params.

Kept free of heavy imports (no torch, polars or gymnasium) so that ``snakemake`` with nothing to
do answers in about a second.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.config import task_dataset, to_plain
from wmrl.tracking import experiment_name

DATASET = "data/{scale}/{suite}/{task}/{policy}/seed{seed}"
# The source that decides a dataset's bytes (readers elsewhere in data/ do not regenerate data).
DATASET_CODE = ("envs", "data/dataset", "data/writer", "data/behaviour", "data/generate")

PRETRAIN = "results/{scale}/{experiment}/pretrain/{size}-{backbone}-seed{seed}"
PRETRAIN_FILES = {"model": "model.pt", "mlflow": "model.mlflow.json", "heldout": "heldout.parquet"}
PRETRAIN_MODEL, PRETRAIN_MLFLOW, PRETRAIN_HELDOUT = (f"{PRETRAIN}/{name}" for name in PRETRAIN_FILES.values())
PRETRAIN_CODE = ("models", "rl", "train", "data/windows", "data/dataset", "tracking")


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


def pretrain_models(cfg: DictConfig) -> list[str]:
    """The model file of every pretraining job of the experiment (sizes x backbones x seeds)."""
    p = cfg.pretrain
    return [PRETRAIN_MODEL.format(scale=cfg.scale, experiment=cfg.experiment, size=size, backbone=backbone,
                                  seed=seed)
            for size in p.sizes_run for backbone in p.backbones for seed in p.seeds]


def pretrain_datasets(cfg: DictConfig) -> dict[str, list[str]]:
    """The datasets pretraining reads: source tasks only, the configured behaviour policies."""
    held_out = set(cfg.heldout_tasks)
    datasets = {}
    for task in cfg.source_tasks:
        assert task not in held_out, f"held-out task {task} would enter pretraining data"
        seeds = task_dataset(cfg, task).seeds
        datasets[task] = [DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=policy, seed=seed)
                          for policy in cfg.pretrain.policies for seed in seeds]
    return datasets


def pretrain_spec(cfg: DictConfig, size: str, backbone: str, seed: int) -> dict[str, Any]:
    """Everything one pretraining job needs (its Snakemake params)."""
    p = to_plain(cfg.pretrain)
    model = {**p["model"], **p["sizes"][size], "backbone": backbone}
    wildcards = {"scale": cfg.scale, "experiment": cfg.experiment, "size": size, "backbone": backbone,
                 "seed": int(seed)}
    run_name = PRETRAIN.format(**wildcards).removeprefix("results/")
    settings = {k: v for k, v in p.items() if k not in ("sizes", "sizes_run", "backbones", "seeds", "model")}
    return {
        "seed": int(seed), "tasks": list(cfg.source_tasks), "heldout_tasks": list(cfg.heldout_tasks),
        "datasets": pretrain_datasets(cfg),
        "pretrain": settings, "model": model,
        "work_dir": f"work/{run_name}",
        "mlflow_experiment": experiment_name(cfg.experiment, cfg.scale), "run_name": run_name,
        "tags": {"rule": "pretrain", **{k: str(v) for k, v in wildcards.items()}},
        "registered_model": f"wmrl-{cfg.experiment}-pretrain",
        "alias": f"{cfg.scale}-{size}-{backbone}-seed{seed}",
    }
