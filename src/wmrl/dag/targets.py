"""The jobs an experiment runs, as the files they write: the runs of every stage, which rule
trains each method, and the files of the Snakefile's target rules."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.dag import icrl
from wmrl.dag.experiment import compares_backbones, dataset_dirs
from wmrl.dag.paths import (BENCHMARKS, DATASET, EVALUATE, FINETUNE, FINETUNE_BENCHMARK, MEMORY_PROBE, MULTIGAME,
                            PRETRAIN_MODEL, REPORT, SINGLEGAME, WORLD_MODEL_ERROR, report_layout, wildcards)
from wmrl.methods import RULES, kind_of


def pretrain_models(cfg: DictConfig) -> list[str]:
    """The model file of every pretraining job of the experiment (sizes x backbones x seeds)."""
    p = cfg.pretrain
    return [PRETRAIN_MODEL.format(scale=cfg.scale, experiment=cfg.experiment, size=size, backbone=backbone,
                                  seed=seed)
            for size in p.sizes_run for backbone in p.backbones for seed in p.seeds]


def training_rule(cfg: DictConfig, method: str) -> str:
    """The rule that trains `method`: its kind's (finetune, train_online, train_peer)."""
    return kind_of(cfg.finetune.methods[method]).rule


def methods_pattern(cfg: DictConfig, rule: str) -> str:
    """A wildcard regex matching the methods of the config that `rule` trains (see training_rule)."""
    names = [name for name in cfg.finetune.methods if training_rule(cfg, name) == rule]
    return "|".join(names) or "(?!)"


def method_models(cfg: DictConfig, method: str) -> list[str]:
    """The `model` labels a method runs with: its kind's own, or every pretrained size x backbone."""
    own = kind_of(cfg.finetune.methods[method]).model
    if own is not None:
        return [own]
    return [f"{size}-{backbone}" for size in cfg.pretrain.sizes_run for backbone in cfg.pretrain.backbones]


def run_sizes(cfg: DictConfig, method: str) -> list[int]:
    """The data sizes a method runs at on the held-out tasks: every one of finetune.data.sizes for
    the curve's methods (finetune.curve_methods; all when null), the largest for the others."""
    f = cfg.finetune
    sizes = list(f.data.sizes)
    return sizes if f.curve_methods is None or method in f.curve_methods else sizes[-1:]


def size_seeds(cfg: DictConfig, transitions: int) -> list[int]:
    """The seeds of the runs at one data size: 0..n-1 for its count in finetune.data.seeds_per_size,
    else finetune.seeds."""
    data = cfg.finetune.data
    if data.seeds_per_size is None:
        return list(cfg.finetune.seeds)
    return list(range(data.seeds_per_size[list(data.sizes).index(transitions)]))


def finetune_runs(cfg: DictConfig) -> list[dict[str, Any]]:
    """The wildcards of every fine-tuning run: held-out task x data size x method x model x seed,
    then the transfer control's: its source task x every size x its two methods x model x seed."""
    base = {"scale": cfg.scale, "experiment": cfg.experiment}
    runs = [{**base, "task": task, "transitions": n, "method": method, "model": model, "seed": seed}
            for task in cfg.heldout_tasks for method in cfg.finetune.methods_run for n in run_sizes(cfg, method)
            for model in method_models(cfg, method) for seed in size_seeds(cfg, n)]
    control = cfg.finetune.control
    if control is not None:
        runs += [{**base, "task": control.task, "transitions": n, "method": method, "model": model, "seed": seed}
                 for method in (control.method, control.baseline) for n in cfg.finetune.data.sizes
                 for model in method_models(cfg, method) for seed in size_seeds(cfg, n)]
    return runs


def imagination_runs(cfg: DictConfig) -> list[dict[str, Any]]:
    """The runs whose kind writes an imagination file (agents that learn in imagination), with its path."""
    methods = cfg.finetune.methods
    return [{**run, "file": f"{FINETUNE.format(**run)}/{kind_of(methods[run['method']]).files['imagination']}"}
            for run in finetune_runs(cfg) if "imagination" in kind_of(methods[run["method"]]).files]


def evaluate_runs(cfg: DictConfig) -> list[str]:
    """Every evaluation file: each fine-tuning run, and the pretrained models on their source tasks
    (fine-tuned on no data: transitions 0)."""
    runs = [EVALUATE.format(**run) for run in finetune_runs(cfg)]
    pretrained = ([MULTIGAME] if cfg.evaluate.source_tasks else []) + ([SINGLEGAME] if cfg.pretrain.single_game
                                                                        else [])
    runs += [EVALUATE.format(scale=cfg.scale, experiment=cfg.experiment, task=task, transitions=0, method=method,
                             model=f"{size}-{backbone}", seed=seed)
             for method in pretrained for task in cfg.source_tasks for size in cfg.pretrain.sizes_run
             for backbone in cfg.pretrain.backbones for seed in cfg.pretrain.seeds]
    return runs


def world_model_errors(cfg: DictConfig, pattern: str = WORLD_MODEL_ERROR) -> list[str]:
    """The world-model evaluation's files (the errors, or with MEMORY_PROBE the probe's) of every pretrained model."""
    p = cfg.pretrain
    return [pattern.format(scale=cfg.scale, experiment=cfg.experiment, size=size, backbone=backbone, seed=seed)
            for size in p.sizes_run for backbone in p.backbones for seed in p.seeds]


def memory_probes(cfg: DictConfig) -> list[str]:
    """The memory probe's files, written beside the world-model errors."""
    return world_model_errors(cfg, MEMORY_PROBE)


def report_files(cfg: DictConfig) -> dict[str, str]:
    """The report job's outputs by name (see paths.report_layout)."""
    directory = REPORT.format(scale=cfg.scale, experiment=cfg.experiment)
    layout = report_layout(len(cfg.pretrain.sizes_run), len(cfg.pretrain.backbones),
                           bool(cfg.evaluate.memory_probe_delays), cfg.finetune.control is not None,
                           bool(imagination_runs(cfg)), cfg.report.target is not None)
    return {name: f"{directory}/{file}" for name, file in layout.items()}


def benchmark_files(cfg: DictConfig) -> dict[str, list[str]]:
    """The benchmark file of every job of the experiment but the report's own, by rule."""
    p = cfg.pretrain
    models = [{"size": size, "backbone": backbone, "seed": seed}
              for size in p.sizes_run for backbone in p.backbones for seed in p.seeds]
    base = {"scale": cfg.scale, "experiment": cfg.experiment}
    patterns = {**BENCHMARKS, **{rule: FINETUNE_BENCHMARK for rule in RULES}}
    jobs = {
        "generate_dataset": [wildcards(DATASET, d) for d in dataset_dirs(cfg)],
        "pretrain": models,
        "pretrain_single": [{"task": task, **m} for task in cfg.source_tasks for m in models] if p.single_game else [],
        **{rule: [run for run in finetune_runs(cfg) if training_rule(cfg, run["method"]) == rule] for rule in RULES},
        "evaluate": [wildcards(EVALUATE, e) for e in evaluate_runs(cfg)],
        "world_model_error": models,
        "context_costs": [{}] if compares_backbones(cfg) else [],
    }
    return {rule: [patterns[rule].format(**{**base, **job}) for job in jobs_of_rule]
            for rule, jobs_of_rule in jobs.items() if jobs_of_rule}


def stage_targets(cfg: DictConfig) -> dict[str, list[str]]:
    """The files of the Snakefile's target rules: `all`, and the stages up to 1 (`datasets`), 2
    (`pretrained`) and 4 (`evaluated`), for the world-model DAG or, with `icrl` set, the ICRL one."""
    if cfg.icrl is not None:
        datasets, models, evaluations = icrl.histories_dirs(cfg), icrl.models(cfg), icrl.evaluations(cfg)
        return {"all": datasets + models + evaluations + list(icrl.report_files(cfg).values()),
                "datasets": datasets, "pretrained": models, "evaluated": evaluations}
    datasets, models, errors = dataset_dirs(cfg), pretrain_models(cfg), world_model_errors(cfg)
    return {"all": datasets + models + errors + list(report_files(cfg).values()),
            "datasets": datasets, "pretrained": models, "evaluated": evaluate_runs(cfg) + errors}
