"""Each job's params (its Snakemake `spec`): everything the job needs and nothing else, so that a
change to another task's, method's or stage's settings leaves the job, and its outputs, alone.
A fine-tuning job's spec comes from its method's kind (wmrl.methods)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from wmrl.config import task_dataset, to_plain
from wmrl.dag.experiment import (fewshot_dataset, held_back, model_spec, pretrain_datasets, score_datasets, suite,
                                 task_env)
from wmrl.dag.paths import (EVALUATE, FINETUNE, MULTIGAME, PRETRAIN, PRETRAIN_FILES, PRETRAIN_MODEL, SINGLE_PRETRAIN,
                            SINGLE_PRETRAIN_FILES, SINGLEGAME)
from wmrl.dag.targets import training_rule
from wmrl.dag.tracked import tracked, training_job
from wmrl.jobs import DatasetSpec, EvaluateSpec, FinetuneSpec, OnlineSpec, PeerSpec, PretrainSpec, WorldModelSpec
from wmrl.methods import kind_of
from wmrl.methods.joint import trains_world_model


def dataset_spec(cfg: DictConfig, task: str, policy: str, seed: int) -> DatasetSpec:
    """One dataset job: a change to another task's or another policy's settings leaves this spec,
    and so this dataset, alone. A task whose data comes from Minari has its source instead of the
    policy's settings."""
    dataset = task_dataset(cfg, task)
    job = {"suite": cfg.suite, "task": task, "policy": policy, "seed": int(seed), **task_env(cfg, task),
           "shard_rows": dataset.shard_rows}
    if dataset.source is not None:
        return {**job, "source": dataset.source}
    return {**job, "settings": to_plain(dataset[policy])}


def pretrain_spec(cfg: DictConfig, size: str, backbone: str, seed: int, game: str | None = None) -> PretrainSpec:
    """One pretraining job: the multi-game model, or with `game` the single-game model of that
    source game (its per-game share of the steps)."""
    p = to_plain(cfg.pretrain)
    settings = {k: v for k, v in p.items()
                if k not in ("sizes", "sizes_run", "backbones", "seeds", "model", "single_game")}
    datasets = pretrain_datasets(cfg)
    wildcards = {"size": size, "backbone": backbone, "seed": int(seed)}
    if game is None:
        job = training_job(cfg, "pretrain", PRETRAIN, wildcards, "pretrain", f"{size}-{backbone}-seed{seed}")
    else:
        settings["steps"] = p["steps"] // len(datasets)
        datasets = {game: datasets[game]}
        job = training_job(cfg, "pretrain_single", SINGLE_PRETRAIN, {"task": game, **wildcards}, "pretrain",
                           f"single-{game}-{size}-{backbone}-seed{seed}")
    return {
        "seed": int(seed), "tasks": list(datasets), "heldout_tasks": list(cfg.heldout_tasks),
        "suite": suite(cfg), "datasets": datasets, "held_back": held_back(cfg), "pretrain": settings,
        "model": model_spec(cfg, size, backbone), **job,
    }


def finetune_inputs(cfg: DictConfig, task: str, method: str, model: str) -> dict[str, str]:
    """A fine-tuning run's inputs, those its kind reads: the few-shot source dataset and the
    pretrained model (the same seed's pretraining is not required: seed 0's model is fine-tuned)."""
    chosen = cfg.finetune.methods[method]
    reads, inputs = kind_of(chosen).inputs(chosen), {}
    if "dataset" in reads:
        inputs["dataset"] = fewshot_dataset(cfg, task)
    if "pretrained" in reads:
        size, backbone = model.split("-")
        inputs["pretrained"] = PRETRAIN_MODEL.format(scale=cfg.scale, experiment=cfg.experiment, size=size,
                                                     backbone=backbone, seed=cfg.pretrain.seeds[0])
    return inputs


@dataclass(frozen=True)
class FinetuneRun:
    """One fine-tuning run as its kind's `job_spec` sees it (wmrl.methods.kind.RunContext)."""

    cfg: DictConfig
    task: str
    transitions: int
    method: str
    model: str
    seed: int
    job: dict[str, Any]
    inputs: dict[str, str]

    def data(self) -> dict[str, Any]:
        d = self.cfg.finetune.data
        return {"policy": d.policy, "seed": d.seed, "transitions": self.transitions, "largest": max(d.sizes),
                "start": d.start, "control": self.task not in self.cfg.heldout_tasks}

    def env(self) -> dict[str, Any]:
        return task_env(self.cfg, self.task)

    def suite(self) -> dict[str, dict[str, Any]]:
        return suite(self.cfg)

    def model_spec(self) -> dict[str, Any]:
        size, backbone = self.model.split("-")
        return model_spec(self.cfg, size, backbone)


def finetune_spec(cfg: DictConfig, task: str, transitions: int, method: str, model: str, seed: int
                  ) -> FinetuneSpec | OnlineSpec | PeerSpec:
    """One fine-tuning job (whichever rule trains it): its method's kind builds it."""
    wildcards = {"task": task, "transitions": int(transitions), "method": method, "model": model, "seed": int(seed)}
    job = training_job(cfg, training_rule(cfg, method), FINETUNE, wildcards, "finetune",
                       f"{task}-n{transitions}-{method}-{model}-seed{seed}")
    run = FinetuneRun(cfg, task, int(transitions), method, model, int(seed), job,
                      finetune_inputs(cfg, task, method, model))
    chosen = cfg.finetune.methods[method]
    return kind_of(chosen).job_spec(run, chosen)


def evaluate_inputs(cfg: DictConfig, task: str, transitions: int, method: str, model: str, seed: int
                    ) -> dict[str, str]:
    """The checkpoints an evaluation reads (name -> file): "final" of a pretrained model, "last"
    and, where its kind writes one, "best" of a fine-tuned one."""
    if method in (MULTIGAME, SINGLEGAME):
        size, backbone = model.split("-")
        pattern = PRETRAIN_MODEL if method == MULTIGAME else SINGLE_PRETRAIN_FILES["model"]
        return {"final": pattern.format(scale=cfg.scale, experiment=cfg.experiment, task=task, size=size,
                                        backbone=backbone, seed=seed)}
    run = FINETUNE.format(scale=cfg.scale, experiment=cfg.experiment, task=task, transitions=transitions,
                          method=method, model=model, seed=seed)
    files = kind_of(cfg.finetune.methods[method]).files
    return {name: f"{run}/{files[name]}" for name in ("last", "best") if name in files}


def model_record(cfg: DictConfig, task: str, transitions: int, method: str, model: str, seed: int) -> str:
    """The lineage file (``model.mlflow.json``) of the model an evaluation plays."""
    checkpoint = next(iter(evaluate_inputs(cfg, task, transitions, method, model, seed).values()))
    return f"{checkpoint.rsplit('/', 1)[0]}/{PRETRAIN_FILES['mlflow']}"


def evaluate_spec(cfg: DictConfig, task: str, transitions: int, method: str, model: str, seed: int) -> EvaluateSpec:
    """One evaluation job: evaluation settings only, and the agent that plays the model (a
    pretrained model's, or the fine-tuning method's kind's)."""
    e = to_plain(cfg.evaluate)
    wildcards = {"task": task, "transitions": int(transitions), "method": method, "model": model, "seed": int(seed)}
    if method in (MULTIGAME, SINGLEGAME):
        agent, loss, window = "wmrl.evaluate.rollout:ModelAgent", to_plain(cfg.pretrain.loss), cfg.pretrain.window
        plans = trains_world_model(loss)
        conditioned = False
    else:
        chosen = cfg.finetune.methods[method]
        kind = kind_of(chosen)
        agent, loss, window = kind.agent(chosen), kind.loss(cfg, chosen), cfg.finetune.window
        plans, conditioned = kind.plans(cfg, chosen), kind.return_conditioned(chosen)
    return {
        "experiment": cfg.experiment, "scale": cfg.scale, "task": task, "transitions": int(transitions),
        "method": method, "model": model, "seed": int(seed), "agent": agent, **task_env(cfg, task),
        "episodes": e["episodes"],
        "max_episode_steps": e["max_episode_steps"] or cfg.tasks[task].max_episode_steps,
        "env_seed": e["env_seed"] + 1000 * int(seed), "context": window, "gamma": loss["gamma"],
        "planning": e["planning"] if plans else None, "score": to_plain(cfg.tasks[task].score),
        **({"target_return": to_plain(cfg.tasks[task].target_return or cfg.evaluate.target_return),
            "actions": e["decision_actions"]} if conditioned else {}),
        "inputs": {"checkpoints": evaluate_inputs(cfg, task, transitions, method, model, seed),
                   "datasets": score_datasets(cfg, task),
                   "record": model_record(cfg, task, transitions, method, model, seed)},
        **tracked(cfg, "evaluate", EVALUATE.removesuffix(".parquet"), wildcards),
    }


def world_model_spec(cfg: DictConfig, size: str, backbone: str, seed: int) -> WorldModelSpec:
    """One world-model evaluation: open-loop error and memory probe of a pretrained model."""
    e = cfg.evaluate
    model = PRETRAIN_MODEL.format(scale=cfg.scale, experiment=cfg.experiment, size=size, backbone=backbone, seed=seed)
    return {"model": model, "tasks": list(cfg.source_tasks), "datasets": pretrain_datasets(cfg),
            "held_back": held_back(cfg), "holdout_fraction": cfg.pretrain.holdout_fraction,
            "horizon": e.world_model_horizon,
            "windows": e.world_model_windows, "probe_delays": list(e.memory_probe_delays), "seed": int(seed),
            "size": size, "backbone": backbone}


def context_costs_spec(cfg: DictConfig) -> dict[str, Any]:
    """Each backbone at the first size the experiment trains, timed at every `evaluate.context_windows` K."""
    return {"models": {backbone: model_spec(cfg, cfg.pretrain.sizes_run[0], backbone)
                       for backbone in cfg.pretrain.backbones},
            "windows": list(cfg.evaluate.context_windows), "threads": 2}
