"""What the experiment's config says its jobs read: the tasks it runs and their environments, the
datasets of each stage, a model size's architecture."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.config import task_dataset, to_plain
from wmrl.dag.paths import DATASET


def run_tasks(cfg: DictConfig) -> list[str]:
    """The tasks the experiment runs: its source and held-out tasks, in the order of `tasks` (which
    may define more, e.g. a suite's whole catalogue)."""
    split = set(cfg.source_tasks) | set(cfg.heldout_tasks)
    return [task for task in cfg.tasks if task in split]


def task_env(cfg: DictConfig, task: str) -> dict[str, Any]:
    """How to build a task's environment (`wmrl.envs.make_task_env`): env id, its kwargs, the
    episode step limit and, where set, its wrappers and observation keys (left out when empty,
    so that adding the options changed no existing task's specs)."""
    t = cfg.tasks[task]
    optional = {key: to_plain(t[key]) for key in ("wrappers", "obs_keys") if t[key]}
    return {"env": t.env, "env_kwargs": to_plain(t.env_kwargs), "max_episode_steps": t.max_episode_steps, **optional}


def suite(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Every task's environment the experiment runs, in task-embedding order (the model's shape
    depends on all of them)."""
    return {task: task_env(cfg, task) for task in run_tasks(cfg)}


def dataset_dirs(cfg: DictConfig, tasks: list[str] | None = None) -> list[str]:
    """Every dataset directory the experiment needs (every task it runs unless `tasks` is given)."""
    dirs = []
    for task in tasks if tasks is not None else run_tasks(cfg):
        dataset = task_dataset(cfg, task)
        for policy in dataset.policies:
            for seed in dataset.seeds:
                dirs.append(DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=policy, seed=seed))
    return dirs


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


def fewshot_dataset(cfg: DictConfig, task: str) -> str:
    """The behaviour dataset a task's few-shot slices are cut from (a held-out task's, or the control's)."""
    data = cfg.finetune.data
    return DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=data.policy, seed=data.seed)


def held_back(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Per source task, the slice pretraining must not see: the transfer control's largest (every
    size is a prefix of it), named by its dataset, size and start (wmrl.data.windows.held_back_from)."""
    control, data = cfg.finetune.control, cfg.finetune.data
    if control is None:
        return {}
    return {control.task: {"dataset": fewshot_dataset(cfg, control.task), "transitions": max(data.sizes),
                           "start": data.start}}


def score_datasets(cfg: DictConfig, task: str) -> dict[str, str]:
    """The datasets whose cards give the random and reference scores config leaves null."""
    score, seeds = cfg.tasks[task].score, task_dataset(cfg, task).seeds
    needed = {"random": score.random is None, "dqn": score.reference is None}
    return {policy: DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=policy, seed=seeds[0])
            for policy, wanted in needed.items() if wanted}


def model_spec(cfg: DictConfig, size: str, backbone: str) -> dict[str, Any]:
    """The architecture of the model `{size}-{backbone}`; with `pretrain.match_parameters`, at the
    width where the backbone has the plain transformer's parameter count at that size."""
    p = to_plain(cfg.pretrain)
    spec = {**p["model"], **p["sizes"][size], "backbone": backbone}
    if p["match_parameters"]:
        from wmrl.models.backbones import matched_width  # torch: only for experiments that match

        spec["dim"] = matched_width(backbone, spec["dim"], spec["layers"], spec["heads"], 2 * p["window"] + 1,
                                    spec["state_size"])
    return spec


def compares_backbones(cfg: DictConfig) -> bool:
    """Whether the experiment compares backbones (the report's Backbones section, the cost job)."""
    return len(cfg.pretrain.backbones) > 1
