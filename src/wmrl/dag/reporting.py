"""The report job's params: its inputs, the question it answers, the bootstrap settings, how it
names each method (from the method's kind), and what the experiment defines but does not run.
(Not `report`: the Snakefile's namespace has Snakemake's own report().)"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.config import to_plain
from wmrl.dag.experiment import (compares_backbones, dataset_dirs, fewshot_dataset, pretrain_datasets, run_tasks,
                                 score_datasets)
from wmrl.dag.paths import CONTEXT_COSTS, FINETUNE, MULTIGAME, REPORT_TEMPLATE, SINGLEGAME, evaluate_lineage
from wmrl.dag.targets import (benchmark_files, evaluate_runs, finetune_runs, imagination_runs, memory_probes,
                              run_sizes, world_model_errors)
from wmrl.jobs import ReportSpec
from wmrl.methods import kind_of
from wmrl.provenance import config_hash


def report_spec(cfg: DictConfig, root: str = ".") -> ReportSpec:
    """Everything the report job needs. `root`: the workflow's directory, which holds the HTML template."""
    f, p = cfg.finetune, cfg.pretrain
    methods = {name: f.methods[name] for name in f.methods_run}
    roles = {d: "generated, not read downstream" for d in dataset_dirs(cfg)}
    for task in run_tasks(cfg):
        roles |= {d: "score reference" for d in score_datasets(cfg, task).values()}
    roles |= {d: "pretraining (source)" for dirs in pretrain_datasets(cfg).values() for d in dirs}
    if f.control is not None:
        roles[fewshot_dataset(cfg, f.control.task)] = "pretraining (source), its last slice held back for the control"
    roles |= {fewshot_dataset(cfg, task): "few-shot (held-out)" for task in cfg.heldout_tasks}
    curves = [{"file": f"{FINETUNE.format(**run)}/{kind_of(methods[run['method']]).files['curve']}", **run,
               "online": kind_of(methods[run["method"]]).online, "kind": methods[run["method"]].kind}
              for run in finetune_runs(cfg)]
    sizes = list(f.data.sizes)  # ascending (config.checks)
    compare = {**to_plain(cfg.report.compare), "transitions": cfg.report.compare.transitions or sizes[0]}
    not_run = [f"method {name} (defined in finetune.methods, not in methods_run)" for name in f.methods
               if name not in f.methods_run]
    not_run += [f"model size {size} (defined in pretrain.sizes, not in sizes_run)" for size in p.sizes
                if size not in p.sizes_run]
    not_run += [f"{name}: no planning (it trains no world model)" for name, method in methods.items()
                if not kind_of(method).plans(cfg, method)]
    not_run += [f"{name}: no 'best' checkpoint ({kind_of(method).no_best})" for name, method in methods.items()
                if "best" not in kind_of(method).files]
    not_run += [f"{name} at {sizes[:-1]} transitions (not in finetune.curve_methods: the largest size only)"
                for name in f.methods_run if run_sizes(cfg, name) != sizes]
    not_run += [] if p.single_game else ["single-game pretraining (pretrain.single_game is false)"]
    not_run += [] if cfg.evaluate.source_tasks else ["the pretrained model on its source tasks "
                                                     "(evaluate.source_tasks is false)"]
    conditioned = any(kind_of(method).return_conditioned(method) for method in methods.values())
    return {
        "experiment": cfg.experiment, "scale": cfg.scale, **to_plain(cfg.report), "compare": compare,
        "config_hash": config_hash(to_plain(cfg)), "episodes": cfg.evaluate.episodes, "sizes": list(p.sizes_run),
        "backbones": list(p.backbones), "probe_delays": list(cfg.evaluate.memory_probe_delays),
        "match_parameters": p.match_parameters,
        "data_sizes": sizes,
        "control": to_plain(f.control) if f.control is not None else None, "not_run": not_run,
        "target": to_plain(cfg.report.target) if cfg.report.target is not None else None,
        "methods": method_labels(cfg),
        "decision": {"actions": cfg.evaluate.decision_actions,  # how return-conditioned methods are evaluated
                     "target_return": {task: to_plain(cfg.tasks[task].target_return or cfg.evaluate.target_return)
                                       for task in cfg.heldout_tasks}}
        if conditioned else None,
        "episode_caps": {task: cfg.evaluate.max_episode_steps or cfg.tasks[task].max_episode_steps
                         for task in run_tasks(cfg)},
        "benchmarks": benchmark_files(cfg),
        "inputs": {"evaluations": evaluate_runs(cfg), "lineage": [evaluate_lineage(e) for e in evaluate_runs(cfg)],
                   "curves": curves, "world_model": world_model_errors(cfg), "datasets": roles,
                   "imagination": imagination_runs(cfg),
                   "memory_probe": memory_probes(cfg) if compares_backbones(cfg) else [],
                   "context_costs": [CONTEXT_COSTS.format(scale=cfg.scale, experiment=cfg.experiment)]
                   if compares_backbones(cfg) else [],
                   "template": f"{root}/{REPORT_TEMPLATE}"},
    }


def method_labels(cfg: DictConfig) -> dict[str, dict[str, str]]:
    """How the report names every evaluated method: its kind's report group (ours | peer | online),
    a label that says what a peer or a baseline is, e.g. "d3rlpy_cql (peer: d3rlpy 2.8.1
    DiscreteCQL)", and its recipe: where it starts, what it trains, with which head and adapters."""
    labels = {name: {"kind": "ours", "label": name, "recipe": "pretrained, not fine-tuned"}
              for name in (MULTIGAME, SINGLEGAME)}
    control = cfg.finetune.control
    for name in dict.fromkeys([*cfg.finetune.methods_run, *([control.method, control.baseline] if control else [])]):
        method = cfg.finetune.methods[name]
        kind = kind_of(method)
        labels[name] = {"kind": kind.report_kind, "label": kind.label(name, method),
                        "recipe": kind.recipe(cfg, method)}
    return labels


def report_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """The report job's input files, by kind (everything in its `report_spec`'s "inputs")."""
    inputs = spec["inputs"]
    return {**{k: v for k, v in inputs.items() if k not in ("curves", "datasets", "imagination")},
            "curves": [run["file"] for run in inputs["curves"]], "datasets": list(inputs["datasets"]),
            "imagination": [run["file"] for run in inputs["imagination"]]}
