"""The in-context RL DAG (an experiment that sets `icrl`): history datasets -> DPT pretraining
(backbone x seed) -> evaluation on held-out tasks (each DPT model, and the baselines once) -> report."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.config import to_plain
from wmrl.dag.paths import (
    ICRL_BASELINES,
    ICRL_BENCHMARKS,
    ICRL_CONTROL_TABLE,
    ICRL_EVALUATE,
    ICRL_FIGURES,
    ICRL_HISTORIES,
    ICRL_PRETRAIN,
    ICRL_PRETRAIN_MLFLOW,
    ICRL_PRETRAIN_MODEL,
    ICRL_TABLES,
    REPORT,
)
from wmrl.dag.tracked import tracked
from wmrl.jobs import IcrlEvaluateSpec, IcrlHistoriesSpec, IcrlPretrainSpec, IcrlReportSpec
from wmrl.provenance import config_hash


def _base(cfg: DictConfig) -> dict[str, Any]:
    """The wildcards every ICRL path shares."""
    return {"scale": cfg.scale, "experiment": cfg.experiment}


def task_settings(cfg: DictConfig) -> dict[str, Any]:
    """The task-defining part of the ICRL section (what every ICRL job shares)."""
    icrl = to_plain(cfg.icrl)
    return {key: icrl[key] for key in ("family", "arms", "horizon", "size", "episode_steps", "noise_std",
                                       "train_tasks", "heldout_seed", "task_seed", "heldout_goals",
                                       "histories_per_task")}


def histories_dirs(cfg: DictConfig) -> list[str]:
    """One history dataset per data seed."""
    return [ICRL_HISTORIES.format(**_base(cfg), seed=seed) for seed in cfg.icrl.data_seeds]


def histories_spec(cfg: DictConfig, seed: int) -> IcrlHistoriesSpec:
    """Everything one history-dataset job needs (its Snakemake params)."""
    return {"icrl": task_settings(cfg), "seed": int(seed)}


def dataset(cfg: DictConfig, seed: int) -> str:
    """The history dataset pretraining seed `seed` reads: the data seeds in turn."""
    seeds = list(cfg.icrl.pretrain.seeds)
    data_seeds = list(cfg.icrl.data_seeds)
    return ICRL_HISTORIES.format(**_base(cfg), seed=data_seeds[seeds.index(int(seed)) % len(data_seeds)])


def models(cfg: DictConfig) -> list[str]:
    """The model file of every DPT pretraining job (backbone x seed)."""
    p = cfg.icrl.pretrain
    return [ICRL_PRETRAIN_MODEL.format(**_base(cfg), backbone=b, seed=s) for b in p.backbones for s in p.seeds]


def pretrain_spec(cfg: DictConfig, backbone: str, seed: int) -> IcrlPretrainSpec:
    """Everything one DPT pretraining job needs (`wmrl.train.dpt.train_dpt`'s spec)."""
    p = to_plain(cfg.icrl.pretrain)
    settings = {**p["model"], "backbone": backbone, "trainer": p["trainer"],
                **{key: p[key] for key in ("steps", "schedule", "validate_every", "checkpoint_every",
                                           "grad_clip", "holdout_fraction")}}
    wildcards = {"backbone": backbone, "seed": int(seed)}
    names = tracked(cfg, "icrl_pretrain", ICRL_PRETRAIN, wildcards)
    return {"dataset": dataset(cfg, seed), "seed": int(seed), "dpt": settings,
            "work_dir": f"work/{names['run_name']}", **names}


def runs(cfg: DictConfig) -> list[str]:
    """The evaluation runs: the baselines once, each DPT model (<backbone>-seed<s>)."""
    p = cfg.icrl.pretrain
    return [ICRL_BASELINES] + [f"{b}-seed{s}" for b in p.backbones for s in p.seeds]


def evaluations(cfg: DictConfig) -> list[str]:
    """The rows file of every evaluation run."""
    return [ICRL_EVALUATE.format(**_base(cfg), run=run) for run in runs(cfg)]


def evaluate_inputs(cfg: DictConfig, run: str) -> dict[str, str]:
    """What an evaluation run reads: a DPT model and its record (the baselines read nothing)."""
    if run == ICRL_BASELINES:
        return {}
    backbone, seed = run.split("-seed")
    return {name: pattern.format(**_base(cfg), backbone=backbone, seed=seed)
            for name, pattern in (("model", ICRL_PRETRAIN_MODEL), ("record", ICRL_PRETRAIN_MLFLOW))}


def evaluate_spec(cfg: DictConfig, run: str) -> IcrlEvaluateSpec:
    """Everything one evaluation job needs (`wmrl.icrl.evaluate.evaluate_icrl`'s spec)."""
    job = {"icrl": {**task_settings(cfg), "evaluate": to_plain(cfg.icrl.evaluate)}}
    if run == ICRL_BASELINES:
        return {**job, "method": ICRL_BASELINES}
    backbone, seed = run.split("-seed")
    return {**job, "method": f"dpt_{backbone}", "model_seed": int(seed),
            "model": evaluate_inputs(cfg, run)["model"]}


def report_files(cfg: DictConfig) -> dict[str, str]:
    """The report job's outputs by name: html, the rows, each figure, each table's CSV."""
    directory = REPORT.format(**_base(cfg))
    family = cfg.icrl.family
    return {"html": f"{directory}/report.html", "rows": f"{directory}/scores/rows.parquet",
            **{name: f"{directory}/figures/{name}.svg" for name in ICRL_FIGURES[family]},
            **{f"{name}_csv": f"{directory}/tables/{name}.csv"
               for name in ICRL_TABLES[family] + ((ICRL_CONTROL_TABLE,) if cfg.icrl.control else ())}}


def benchmark_files(cfg: DictConfig) -> dict[str, list[str]]:
    """The benchmark file of every ICRL job but the report's own, by rule."""
    base, p = _base(cfg), cfg.icrl.pretrain
    return {"icrl_histories": [ICRL_BENCHMARKS["icrl_histories"].format(**base, seed=s) for s in cfg.icrl.data_seeds],
            "icrl_pretrain": [ICRL_BENCHMARKS["icrl_pretrain"].format(**base, backbone=b, seed=s)
                              for b in p.backbones for s in p.seeds],
            "icrl_evaluate": [ICRL_BENCHMARKS["icrl_evaluate"].format(**base, run=r) for r in runs(cfg)]}


def report_spec(cfg: DictConfig) -> IcrlReportSpec:
    """Everything the ICRL report needs (its Snakemake params)."""
    icrl = to_plain(cfg.icrl)
    return {"experiment": cfg.experiment, "scale": cfg.scale, "question": cfg.report.question,
            "bootstrap_repetitions": cfg.report.bootstrap_repetitions, "confidence": cfg.report.confidence,
            "config_hash": config_hash(to_plain(cfg)), "icrl": icrl,
            "methods": [f"dpt_{b}" for b in icrl["pretrain"]["backbones"]],
            "benchmarks": benchmark_files(cfg),
            "inputs": {"evaluations": evaluations(cfg),
                       "records": [ICRL_PRETRAIN_MLFLOW.format(**_base(cfg), backbone=b, seed=s)
                                   for b in icrl["pretrain"]["backbones"] for s in icrl["pretrain"]["seeds"]]}}
