"""The in-context RL DAG (an experiment that sets `icrl`): history datasets (per kind the methods
learn from x data seed) -> pretraining (method x backbone x seed) -> evaluation on held-out tasks
(each model, and the baselines once) -> report."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.config import to_plain
from wmrl.config.icrl import ICRL_METHODS
from wmrl.dag.paths import (ICRL_BASELINES, ICRL_BENCHMARKS, ICRL_CONTROL_TABLE, ICRL_EVALUATE, ICRL_FIGURES,
                            ICRL_HISTORIES, ICRL_PRETRAIN, ICRL_PRETRAIN_MLFLOW, ICRL_PRETRAIN_MODEL, ICRL_TABLES,
                            REPORT)
from wmrl.dag.tracked import training_job
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


def method_sections(cfg: DictConfig, methods: list[str]) -> dict[str, Any]:
    """The `icrl` sections of `methods` (their entries' `sections`, e.g. AD's `ad`): given only to
    the jobs that read them, so that a change to one reruns those jobs alone."""
    return {name: to_plain(cfg.icrl[name]) for method in methods for name in ICRL_METHODS[method].sections}


def data_kinds(cfg: DictConfig) -> list[str]:
    """The kinds of histories the experiment's methods learn from, in method order."""
    return list(dict.fromkeys(ICRL_METHODS[method].data for method in cfg.icrl.methods))


def histories_dirs(cfg: DictConfig) -> list[str]:
    """One history dataset per kind and data seed."""
    return [ICRL_HISTORIES.format(**_base(cfg), data=kind, seed=seed) for kind in data_kinds(cfg)
            for seed in cfg.icrl.data_seeds]


def histories_spec(cfg: DictConfig, data: str, seed: int) -> IcrlHistoriesSpec:
    """Everything one history-dataset job needs (its Snakemake params)."""
    learners = [method for method in cfg.icrl.methods if ICRL_METHODS[method].data == data]
    return {"icrl": {**task_settings(cfg), **method_sections(cfg, learners)}, "data": data, "seed": int(seed)}


def model_labels(cfg: DictConfig) -> list[str]:
    """Every pretrained model's label, <method>_<backbone> (method x backbone)."""
    return [f"{method}_{backbone}" for method in cfg.icrl.methods for backbone in cfg.icrl.pretrain.backbones]


def dataset(cfg: DictConfig, model: str, seed: int) -> str:
    """The history dataset that pretraining `model` with seed `seed` reads: its method's kind, the
    data seeds in turn."""
    seeds, data_seeds = list(cfg.icrl.pretrain.seeds), list(cfg.icrl.data_seeds)
    kind = ICRL_METHODS[model.split("_")[0]].data
    return ICRL_HISTORIES.format(**_base(cfg), data=kind, seed=data_seeds[seeds.index(int(seed)) % len(data_seeds)])


def models(cfg: DictConfig) -> list[str]:
    """The model file of every pretraining job (method x backbone x seed)."""
    return [ICRL_PRETRAIN_MODEL.format(**_base(cfg), model=m, seed=s) for m in model_labels(cfg)
            for s in cfg.icrl.pretrain.seeds]


def pretrain_spec(cfg: DictConfig, model: str, seed: int) -> IcrlPretrainSpec:
    """Everything one pretraining job needs (`wmrl.train.icrl.train_icrl`'s spec)."""
    method, backbone = model.split("_")
    p = to_plain(cfg.icrl.pretrain)
    settings = {**p["model"], "backbone": backbone, "trainer": p["trainer"],
                **{key: p[key] for key in ("steps", "schedule", "validate_every", "checkpoint_every",
                                           "grad_clip", "holdout_fraction")},
                **ICRL_METHODS[method].settings(cfg.icrl)}
    job = training_job(cfg, "icrl_pretrain", ICRL_PRETRAIN, {"model": model, "seed": int(seed)}, "icrl",
                       f"{model}-seed{seed}")
    return {"dataset": dataset(cfg, model, seed), "seed": int(seed), "method": method, "model": settings, **job}


def runs(cfg: DictConfig) -> list[str]:
    """The evaluation runs: the baselines once, each model (<method>_<backbone>-seed<s>)."""
    return [ICRL_BASELINES] + [f"{m}-seed{s}" for m in model_labels(cfg) for s in cfg.icrl.pretrain.seeds]


def evaluations(cfg: DictConfig) -> list[str]:
    """The rows file of every evaluation run."""
    return [ICRL_EVALUATE.format(**_base(cfg), run=run) for run in runs(cfg)]


def evaluate_inputs(cfg: DictConfig, run: str) -> dict[str, str]:
    """What an evaluation run reads: a model and its record (the baselines read nothing)."""
    if run == ICRL_BASELINES:
        return {}
    model, seed = run.split("-seed")
    return {name: pattern.format(**_base(cfg), model=model, seed=seed)
            for name, pattern in (("model", ICRL_PRETRAIN_MODEL), ("record", ICRL_PRETRAIN_MLFLOW))}


def evaluate_spec(cfg: DictConfig, run: str) -> IcrlEvaluateSpec:
    """Everything one evaluation job needs (`wmrl.icrl.evaluate.evaluate_icrl`'s spec)."""
    icrl = {**task_settings(cfg), "evaluate": to_plain(cfg.icrl.evaluate)}
    if run == ICRL_BASELINES:  # and the learners the methods distil, where they name one
        sources = {method: ICRL_METHODS[method].source for method in cfg.icrl.methods if ICRL_METHODS[method].source}
        return {"icrl": {**icrl, **method_sections(cfg, list(sources)), "sources": sources}, "method": ICRL_BASELINES}
    model, seed = run.split("-seed")
    return {"icrl": {**icrl, **method_sections(cfg, [model.split("_")[0]])}, "method": model, "model_seed": int(seed),
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
    return {"icrl_histories": [ICRL_BENCHMARKS["icrl_histories"].format(**base, data=kind, seed=s)
                               for kind in data_kinds(cfg) for s in cfg.icrl.data_seeds],
            "icrl_pretrain": [ICRL_BENCHMARKS["icrl_pretrain"].format(**base, model=m, seed=s)
                              for m in model_labels(cfg) for s in p.seeds],
            "icrl_evaluate": [ICRL_BENCHMARKS["icrl_evaluate"].format(**base, run=r) for r in runs(cfg)]}


def report_spec(cfg: DictConfig) -> IcrlReportSpec:
    """Everything the ICRL report needs (its Snakemake params)."""
    icrl = to_plain(cfg.icrl)
    return {"experiment": cfg.experiment, "scale": cfg.scale, "question": cfg.report.question,
            "bootstrap_repetitions": cfg.report.bootstrap_repetitions, "confidence": cfg.report.confidence,
            "config_hash": config_hash(to_plain(cfg)), "icrl": icrl,
            "methods": model_labels(cfg),
            "benchmarks": benchmark_files(cfg),
            "inputs": {"evaluations": evaluations(cfg),
                       "records": [ICRL_PRETRAIN_MLFLOW.format(**_base(cfg), model=m, seed=s)
                                   for m in model_labels(cfg) for s in icrl["pretrain"]["seeds"]]}}
