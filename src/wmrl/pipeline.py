"""What the Snakemake rules ask of the package at DAG-build time: paths, targets, job params.

Kept free of heavy imports (no torch, polars or gymnasium) so that ``snakemake`` with nothing to
do answers in about a second.
"""

from __future__ import annotations

import json
import os
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from wmrl.config import PEER_ALGORITHMS, ConfigError, code_hash, task_dataset, to_plain
from wmrl.data import DATASET_CODE
from wmrl.tracking import config_hash, experiment_name

DATASET = "data/{scale}/{suite}/{task}/{policy}/seed{seed}"
ENV_PACKAGES = ("gymnasium", "minatar", "ale-py", "minigrid", "popgym")  # with the env code, they key checked envs
CHECKED_ENVS = ".snakemake/wmrl/checked-envs.json"  # specs of envs checked before earlier runs

PRETRAIN = "results/{scale}/{experiment}/pretrain/{size}-{backbone}-seed{seed}"
PRETRAIN_FILES = {"model": "model.pt", "mlflow": "model.mlflow.json", "heldout": "heldout.parquet"}
PRETRAIN_MODEL, PRETRAIN_MLFLOW, PRETRAIN_HELDOUT = (f"{PRETRAIN}/{name}" for name in PRETRAIN_FILES.values())
SINGLE_PRETRAIN = "results/{scale}/{experiment}/pretrain/single/{task}/{size}-{backbone}-seed{seed}"
SINGLE_PRETRAIN_FILES = {name: f"{SINGLE_PRETRAIN}/{file}" for name, file in PRETRAIN_FILES.items()}
PRETRAIN_CODE = ("models", "rl", "train", "data/windows", "data/dataset", "envs", "tracking")

# Stage 3: one run per (held-out task, method, model, seed); `model` is "<size>-<backbone>" for the
# world-action methods, ONLINE_MODEL for online DQN (stable-baselines3's MinAtar network) and
# PEER_MODEL for the d3rlpy peers. Each method's init decides the rule that trains it.
FINETUNE = "results/{scale}/{experiment}/finetune/{task}/{method}/{model}-seed{seed}"
FINETUNE_FILES = {"last": "last.pt", "best": "best.pt", "curve": "curve.parquet", "mlflow": "model.mlflow.json"}
ONLINE_FILES = {"last": "last.pt", "curve": "curve.parquet", "mlflow": "model.mlflow.json"}
PEER_FILES = ONLINE_FILES  # a peer writes what online DQN writes: its last weights, its curve, its record
ONLINE_MODEL, PEER_MODEL = "sb3", "d3rlpy"
OWN_MODELS = {"online": ONLINE_MODEL, "peer": PEER_MODEL}  # inits whose network is not our world-action model
FINETUNE_CODE = PRETRAIN_CODE
ONLINE_CODE = ("data/behaviour", "envs", "train/online", "tracking")
PEER_CODE = ("peers", "train/peer", "data/windows", "data/dataset", "tracking")
TRAINING_RULES = {"pretrained": "finetune", "scratch": "finetune", "online": "train_online", "peer": "train_peer"}
TRAINING_FILES = {"finetune": FINETUNE_FILES, "train_online": ONLINE_FILES, "train_peer": PEER_FILES}  # by rule
# How the report labels a method by its init: our world-action model, an offline peer, online DQN.
METHOD_KINDS = {"pretrained": "ours", "scratch": "ours", "online": "online", "peer": "peer"}

# Stage 4: episodes of every trained model (fine-tuned ones on held-out tasks; the pretrained one,
# as method MULTIGAME, on its source tasks) and the world model's open-loop prediction error.
EVALUATE = "results/{scale}/{experiment}/evaluate/{task}/{method}/{model}-seed{seed}.parquet"


def memory_probe_file(errors: str) -> str:
    """The memory probe's rows beside a world-model error file (or pattern): X.parquet -> X.probe.parquet."""
    return errors.removesuffix(".parquet") + ".probe.parquet"


def evaluate_lineage(rows: str) -> str:
    """The lineage file written beside an evaluation's rows (X.parquet -> X.lineage.json)."""
    return rows.removesuffix(".parquet") + ".lineage.json"


EVALUATE_LINEAGE = evaluate_lineage(EVALUATE)
MULTIGAME, SINGLEGAME = "multigame", "singlegame"
WORLD_MODEL_ERROR = "results/{scale}/{experiment}/evaluate/world_model/{size}-{backbone}-seed{seed}.parquet"
MEMORY_PROBE = memory_probe_file(WORLD_MODEL_ERROR)
CONTEXT_COSTS = "results/{scale}/{experiment}/evaluate/context_costs.parquet"  # several backbones: cost vs K
EVALUATE_CODE = ("evaluate", "rl/planning", "models", "envs", "data/windows", "data/behaviour", "peers")

# Stage 5: the report — the scores (Parquet), figures (SVG), tables (CSV) and one HTML page.
REPORT = "results/{scale}/{experiment}/report"
REPORT_TEMPLATE = "workflow/report/report.html.j2"
SCORES_FILES = {"episodes": "scores/episodes.parquet", "aggregate_parquet": "scores/aggregate.parquet",
                "per_task_parquet": "scores/per_task.parquet", "improvement_parquet": "scores/improvement.parquet"}
FIGURES = ("iqm", "per_seed", "curves", "world_model")  # + "scaling" when several model sizes run
TABLES = ("aggregate", "improvement", "claims", "per_task", "runs", "datasets", "cost", "jobs", "lineage",
          "training_speed", "world_model", "episodes")

# Every rule's benchmark file (Snakemake's `benchmark:`); the report reads them for the pipeline's cost.
BENCHMARKS = {
    "generate_dataset": "benchmarks/generate_dataset/{scale}/{suite}/{task}/{policy}/seed{seed}.tsv",
    "pretrain": "benchmarks/pretrain/{scale}/{experiment}/{size}-{backbone}-seed{seed}.tsv",
    "pretrain_single": "benchmarks/pretrain/{scale}/{experiment}/single/{task}/{size}-{backbone}-seed{seed}.tsv",
    "finetune": "benchmarks/finetune/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.tsv",
    "train_online": "benchmarks/finetune/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.tsv",
    "train_peer": "benchmarks/finetune/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.tsv",
    "evaluate": "benchmarks/evaluate/{scale}/{experiment}/{task}/{method}/{model}-seed{seed}.tsv",
    "world_model_error": "benchmarks/world_model_error/{scale}/{experiment}/{size}-{backbone}-seed{seed}.tsv",
    "context_costs": "benchmarks/context_costs/{scale}/{experiment}.tsv",
}


def run_tasks(cfg: DictConfig) -> list[str]:
    """The tasks the experiment runs: its source and held-out tasks, in the order of `tasks` (which
    may define more, e.g. a suite's whole catalogue)."""
    split = set(cfg.source_tasks) | set(cfg.heldout_tasks)
    return [task for task in cfg.tasks if task in split]


def dataset_dirs(cfg: DictConfig, tasks: list[str] | None = None) -> list[str]:
    """Every dataset directory the experiment needs (every task it runs unless `tasks` is given)."""
    dirs = []
    for task in tasks if tasks is not None else run_tasks(cfg):
        dataset = task_dataset(cfg, task)
        for policy in dataset.policies:
            for seed in dataset.seeds:
                dirs.append(DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=policy, seed=seed))
    return dirs


def dataset_spec(cfg: DictConfig, task: str, policy: str, seed: int) -> dict[str, Any]:
    """Everything one dataset job needs, and nothing else (its Snakemake params): a change to
    another task's or another policy's settings leaves this spec, and so this dataset, alone. A
    task whose data comes from Minari has its source instead of the policy's settings."""
    dataset = task_dataset(cfg, task)
    job = {"suite": cfg.suite, "task": task, "policy": policy, "seed": int(seed), **task_env(cfg, task),
           "shard_rows": dataset.shard_rows}
    if dataset.source is not None:
        return {**job, "source": dataset.source}
    return {**job, "settings": to_plain(dataset[policy])}


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


def task_env(cfg: DictConfig, task: str) -> dict[str, Any]:
    """How to build a task's environment (`wmrl.envs.make_task_env`): env id, its kwargs, the
    episode step limit and, where set, its wrappers and observation keys (left out when empty,
    so that adding the options changed no existing task's specs)."""
    t = cfg.tasks[task]
    optional = {key: to_plain(t[key]) for key in ("wrappers", "obs_keys") if t[key]}
    return {"env": t.env, "env_kwargs": to_plain(t.env_kwargs), "max_episode_steps": t.max_episode_steps, **optional}


def check_envs(cfg: DictConfig, cache: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Every task's environment built and its spaces read, before any job starts: its obs and
    action specs, or one ConfigError naming each task that fails and what is supported, or the
    tasks that one model cannot share (mixed observation kinds or shapes, continuous actions).
    Specs checked before with the same settings, env code and packages are read from `cache` (a
    JSON file), so a no-op rerun neither imports gymnasium nor builds an Atari emulator per task."""
    salt = {"code": code_hash("envs"), "versions": {p: _version(p) for p in ENV_PACKAGES}}
    keys = {task: config_hash({"env": task_env(cfg, task), **salt}) for task in run_tasks(cfg)}
    known = _read_json(Path(cache)) if cache else {}
    specs, failures = {task: known[key] for task, key in keys.items() if key in known}, []
    if len(specs) < len(keys):
        from wmrl.envs import describe_env

        for task in keys.keys() - specs.keys():
            try:
                specs[task] = describe_env(task_env(cfg, task))
            except ValueError as error:
                failures.append(f"task {task!r} ({cfg.tasks[task].env}): {error}")
        if failures:
            from wmrl.envs import SUPPORTED

            raise ConfigError(f"experiment {cfg.experiment!r} has environments that cannot be used:\n  "
                              + "\n  ".join(sorted(failures))
                              + f"\nsupported observations: {SUPPORTED}; actions: Discrete (from 0) or a 1-D Box")
        if cache:
            _write_json(Path(cache), {**known, **{keys[task]: spec for task, spec in specs.items()}})
    _check_one_model(cfg, {task: specs[task] for task in keys})
    return {task: specs[task] for task in keys}


def _check_one_model(cfg: DictConfig, specs: dict[str, dict[str, Any]]) -> None:
    """One world-action model reads every task of the experiment: one observation kind, one grid
    size (channels may differ: they are shared by name) or one frame shape, discrete actions."""
    def shape(obs: dict[str, Any]) -> tuple[int, ...]:  # what must match: a grid's cells, a frame, no vector width
        return {"grid": tuple(obs["shape"][:-1]), "image": tuple(obs["shape"])}.get(obs["kind"], ())

    layouts = {task: (spec["obs"]["kind"], shape(spec["obs"])) for task, spec in specs.items()}
    problems = []
    if len(set(layouts.values())) > 1:
        problems.append("one model reads every task, but their observations differ: " + ", ".join(
            f"{task} {kind}{list(size) if size else ''}" for task, (kind, size) in layouts.items()))
    continuous = [task for task, spec in specs.items() if spec["action"]["kind"] != "discrete"]
    if continuous:
        problems.append(f"the world-action model needs discrete actions; continuous: {', '.join(continuous)}")
    if problems:
        raise ConfigError(f"experiment {cfg.experiment!r}: " + "; ".join(problems))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # never checked, or a torn write: check again


def _write_json(path: Path, entries: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n")
    os.replace(partial, path)


def suite(cfg: DictConfig) -> dict[str, dict[str, Any]]:
    """Every task's environment the experiment runs, in task-embedding order (the model's shape
    depends on all of them)."""
    return {task: task_env(cfg, task) for task in run_tasks(cfg)}


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


def _tracked(cfg: DictConfig, rule: str, pattern: str, wildcards: dict[str, Any]) -> dict[str, Any]:
    """How a job is tracked in MLflow: its experiment, run name and tags (rule and wildcards)."""
    wildcards = {"scale": cfg.scale, "experiment": cfg.experiment, **wildcards}
    return {"mlflow_experiment": experiment_name(cfg.experiment, cfg.scale),
            "run_name": pattern.format(**wildcards).removeprefix("results/"),
            "tags": {"rule": rule, **{k: str(v) for k, v in wildcards.items()}}}


def _job(cfg: DictConfig, rule: str, pattern: str, wildcards: dict[str, Any], stage: str, alias: str
         ) -> dict[str, Any]:
    """The bookkeeping every training job carries: work dir, MLflow names and tags, registered model."""
    tracked = _tracked(cfg, rule, pattern, wildcards)
    return {"work_dir": f"work/{tracked['run_name']}", **tracked,
            "registered_model": f"wmrl-{cfg.experiment}-{stage}", "alias": f"{cfg.scale}-{alias}"}


def pretrain_spec(cfg: DictConfig, size: str, backbone: str, seed: int, game: str | None = None) -> dict[str, Any]:
    """Everything one pretraining job needs (its Snakemake params): the multi-game model, or with
    `game` the single-game model of that source game (its per-game share of the steps)."""
    p = to_plain(cfg.pretrain)
    settings = {k: v for k, v in p.items()
                if k not in ("sizes", "sizes_run", "backbones", "seeds", "model", "single_game")}
    datasets = pretrain_datasets(cfg)
    wildcards = {"size": size, "backbone": backbone, "seed": int(seed)}
    if game is None:
        job = _job(cfg, "pretrain", PRETRAIN, wildcards, "pretrain", f"{size}-{backbone}-seed{seed}")
    else:
        settings["steps"] = p["steps"] // len(datasets)
        datasets = {game: datasets[game]}
        job = _job(cfg, "pretrain_single", SINGLE_PRETRAIN, {"task": game, **wildcards}, "pretrain",
                   f"single-{game}-{size}-{backbone}-seed{seed}")
    return {
        "seed": int(seed), "tasks": list(datasets), "heldout_tasks": list(cfg.heldout_tasks),
        "suite": suite(cfg), "datasets": datasets, "pretrain": settings,
        "model": model_spec(cfg, size, backbone), **job,
    }


# --------------------------------------------------------------------------- stage 3


def training_rule(cfg: DictConfig, method: str) -> str:
    """The rule that trains `method`: finetune (our world-action model), train_online or train_peer."""
    return TRAINING_RULES[cfg.finetune.methods[method].init]


def method_models(cfg: DictConfig, method: str) -> list[str]:
    """The `model` labels a method runs with: every pretrained size x backbone, ONLINE_MODEL or PEER_MODEL."""
    init = cfg.finetune.methods[method].init
    if init in OWN_MODELS:
        return [OWN_MODELS[init]]
    return [f"{size}-{backbone}" for size in cfg.pretrain.sizes_run for backbone in cfg.pretrain.backbones]


def finetune_runs(cfg: DictConfig) -> list[dict[str, Any]]:
    """The wildcards of every fine-tuning run: held-out task x method x model x seed."""
    return [{"scale": cfg.scale, "experiment": cfg.experiment, "task": task, "method": method, "model": model,
             "seed": seed}
            for task in cfg.heldout_tasks for method in cfg.finetune.methods_run
            for model in method_models(cfg, method) for seed in cfg.finetune.seeds]


def fewshot_dataset(cfg: DictConfig, task: str) -> str:
    data = cfg.finetune.data
    return DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=data.policy, seed=data.seed)


def finetune_inputs(cfg: DictConfig, task: str, method: str, model: str) -> dict[str, str]:
    """A fine-tuning run's inputs: the few-shot source dataset and, if it starts from one, the
    pretrained model (the same seed's pretraining is not required: seed 0's model is fine-tuned)."""
    inputs = {"dataset": fewshot_dataset(cfg, task)} if cfg.finetune.methods[method].init != "online" else {}
    if cfg.finetune.methods[method].init == "pretrained":
        size, backbone = model.split("-")
        inputs["pretrained"] = PRETRAIN_MODEL.format(scale=cfg.scale, experiment=cfg.experiment, size=size,
                                                     backbone=backbone, seed=cfg.pretrain.seeds[0])
    return inputs


def finetune_spec(cfg: DictConfig, task: str, method: str, model: str, seed: int) -> dict[str, Any]:
    """Everything one fine-tuning job needs (its Snakemake params)."""
    f = to_plain(cfg.finetune)
    chosen = f["methods"][method]
    wildcards = {"task": task, "method": method, "model": model, "seed": int(seed)}
    job = _job(cfg, training_rule(cfg, method), FINETUNE, wildcards, "finetune", f"{task}-{method}-{model}-seed{seed}")
    env = task_env(cfg, task)
    if chosen["init"] == "online":
        settings = {**f["online"], "steps": f["data"]["transitions"]}
        return {"seed": int(seed), "task": task, "method": method, **env, "settings": settings, **job}
    if chosen["init"] == "peer":  # our few-shot training episodes, our gradient steps, d3rlpy's algorithm
        return {"seed": int(seed), "task": task, "method": method, "heldout_tasks": list(cfg.heldout_tasks),
                "peer": chosen["peer"], "settings": chosen["settings"], "data": f["data"],
                "finetune": {key: f[key] for key in ("steps", "validate_every", "holdout_fraction")
                             + ("window",) * (chosen["peer"] == "discrete_dt")},  # a DT reads our windows' steps
                "inputs": finetune_inputs(cfg, task, method, model), **job}
    size, backbone = model.split("-")
    settings = {k: v for k, v in f.items() if k not in ("data", "seeds", "methods_run", "methods", "online")}
    if chosen["learning_rate"] is not None:
        settings["learning_rate"] = chosen["learning_rate"]
    return {
        "seed": int(seed), "task": task, "method": method, "init": chosen["init"],
        "heldout_tasks": list(cfg.heldout_tasks), "suite": suite(cfg), "data": f["data"],
        "channel_layout": cfg.pretrain.channel_layout, "positions": cfg.pretrain.window,
        "model": {**model_spec(cfg, size, backbone), **chosen["model"]},
        "loss": {**to_plain(cfg.pretrain.loss), **chosen["loss"]},
        "decision": chosen["decision"] if chosen["objective"] == "dt" else None,
        "finetune": settings, "inputs": finetune_inputs(cfg, task, method, model), **job,
    }


# --------------------------------------------------------------------------- stage 4


def evaluate_runs(cfg: DictConfig) -> list[str]:
    """Every evaluation file: each fine-tuning run, and the pretrained models on their source tasks."""
    runs = [EVALUATE.format(**run) for run in finetune_runs(cfg)]
    pretrained = [MULTIGAME] * cfg.evaluate.source_tasks + [SINGLEGAME] * cfg.pretrain.single_game
    runs += [EVALUATE.format(scale=cfg.scale, experiment=cfg.experiment, task=task, method=method,
                             model=f"{size}-{backbone}", seed=seed)
             for method in pretrained for task in cfg.source_tasks for size in cfg.pretrain.sizes_run
             for backbone in cfg.pretrain.backbones for seed in cfg.pretrain.seeds]
    return runs


def world_model_errors(cfg: DictConfig, pattern: str = WORLD_MODEL_ERROR) -> list[str]:
    """The world-model evaluation's files (the errors, or with MEMORY_PROBE the probe's) of every pretrained model."""
    p = cfg.pretrain
    return [pattern.format(scale=cfg.scale, experiment=cfg.experiment, size=size, backbone=backbone, seed=seed)
            for size in p.sizes_run for backbone in p.backbones for seed in p.seeds]


def face_off(cfg: DictConfig) -> bool:
    """Whether the experiment compares backbones (the report's Backbones section, the cost job)."""
    return len(cfg.pretrain.backbones) > 1


def context_costs_spec(cfg: DictConfig) -> dict[str, Any]:
    """Each backbone at the first size the experiment trains, timed at every `evaluate.context_windows` K."""
    return {"models": {backbone: model_spec(cfg, cfg.pretrain.sizes_run[0], backbone)
                       for backbone in cfg.pretrain.backbones},
            "windows": list(cfg.evaluate.context_windows), "threads": 2}


def evaluate_inputs(cfg: DictConfig, task: str, method: str, model: str, seed: int) -> dict[str, str]:
    """The checkpoints an evaluation reads (name -> file) and the datasets its score normalization reads."""
    wildcards = {"scale": cfg.scale, "experiment": cfg.experiment, "task": task, "method": method,
                 "model": model, "seed": seed}
    if method in (MULTIGAME, SINGLEGAME):
        size, backbone = model.split("-")
        pattern = PRETRAIN_MODEL if method == MULTIGAME else SINGLE_PRETRAIN_FILES["model"]
        return {"final": pattern.format(scale=cfg.scale, experiment=cfg.experiment, task=task, size=size,
                                        backbone=backbone, seed=seed)}
    files = TRAINING_FILES[training_rule(cfg, method)]
    return {name: f"{FINETUNE.format(**wildcards)}/{files[name]}" for name in ("last", "best") if name in files}


def model_record(cfg: DictConfig, task: str, method: str, model: str, seed: int) -> str:
    """The lineage file (``model.mlflow.json``) of the model an evaluation plays."""
    checkpoint = next(iter(evaluate_inputs(cfg, task, method, model, seed).values()))
    return f"{checkpoint.rsplit('/', 1)[0]}/{PRETRAIN_FILES['mlflow']}"


def score_datasets(cfg: DictConfig, task: str) -> dict[str, str]:
    """The datasets whose cards give the random and reference scores config leaves null."""
    score, seeds = cfg.tasks[task].score, task_dataset(cfg, task).seeds
    needed = {"random": score.random is None, "dqn": score.reference is None}
    return {policy: DATASET.format(scale=cfg.scale, suite=cfg.suite, task=task, policy=policy, seed=seeds[0])
            for policy, wanted in needed.items() if wanted}


def evaluate_spec(cfg: DictConfig, task: str, method: str, model: str, seed: int) -> dict[str, Any]:
    """Everything one evaluation job needs (its Snakemake params): evaluation settings only."""
    e = to_plain(cfg.evaluate)
    wildcards = {"task": task, "method": method, "model": model, "seed": int(seed)}
    if method in (MULTIGAME, SINGLEGAME):
        kind, loss, window = "world_model", to_plain(cfg.pretrain.loss), cfg.pretrain.window
    else:
        chosen = cfg.finetune.methods[method]
        kind = chosen.init if chosen.init in OWN_MODELS else "decision" if chosen.objective == "dt" else "world_model"
        loss = {**to_plain(cfg.pretrain.loss), **to_plain(chosen.loss)}
        window = cfg.finetune.window
    plans = kind == "world_model" and loss["next_obs"] > 0 and loss["reward"] > 0  # needs a trained world model
    conditioned = method not in (MULTIGAME, SINGLEGAME) and return_conditioned(chosen)
    return {
        "experiment": cfg.experiment, "scale": cfg.scale, "task": task, "method": method, "model": model,
        "seed": int(seed), "kind": kind, **task_env(cfg, task), "episodes": e["episodes"],
        "max_episode_steps": e["max_episode_steps"] or cfg.tasks[task].max_episode_steps,
        "env_seed": e["env_seed"] + 1000 * int(seed), "context": window, "gamma": loss["gamma"],
        "planning": e["planning"] if plans else None, "score": to_plain(cfg.tasks[task].score),
        **({"target_return": to_plain(cfg.tasks[task].target_return or cfg.evaluate.target_return),
            "actions": e["decision_actions"]} if conditioned else {}),
        "inputs": {"checkpoints": evaluate_inputs(cfg, task, method, model, seed),
                   "datasets": score_datasets(cfg, task), "record": model_record(cfg, task, method, model, seed)},
        **_tracked(cfg, "evaluate", EVALUATE.removesuffix(".parquet"), wildcards),
    }


def return_conditioned(method: DictConfig) -> bool:
    """Whether a method acts on a target return: our Decision Transformers and d3rlpy's."""
    return method.objective == "dt" or (method.init == "peer" and method.peer == "discrete_dt")


def world_model_spec(cfg: DictConfig, size: str, backbone: str, seed: int) -> dict[str, Any]:
    e = cfg.evaluate
    model = PRETRAIN_MODEL.format(scale=cfg.scale, experiment=cfg.experiment, size=size, backbone=backbone, seed=seed)
    return {"model": model, "tasks": list(cfg.source_tasks), "datasets": pretrain_datasets(cfg),
            "holdout_fraction": cfg.pretrain.holdout_fraction, "horizon": e.world_model_horizon,
            "windows": e.world_model_windows, "probe_delays": list(e.memory_probe_delays), "seed": int(seed),
            "size": size, "backbone": backbone}


def methods_pattern(cfg: DictConfig, rule: str) -> str:
    """A wildcard regex matching the methods of the config that `rule` trains (see training_rule)."""
    names = [name for name in cfg.finetune.methods if training_rule(cfg, name) == rule]
    return "|".join(names) or "(?!)"


# --------------------------------------------------------------------------- stage 5


def report_layout(sizes: int, backbones: int = 1, probe: bool = False) -> dict[str, str]:
    """The report job's outputs by name, relative to its directory: html, the scores, each figure
    (the scaling plot only when several model sizes run; the Backbones section's when several
    backbones do, the memory probe's when it runs), each table's CSV."""
    several = ("backbone_errors", "context_costs") + ("memory_probe",) * probe if backbones > 1 else ()
    figures = FIGURES + ("scaling",) * (sizes > 1) + several
    tables = TABLES + ("backbone_claims",) * (backbones > 1) + several
    return {"html": "report.html", **SCORES_FILES, **{name: f"figures/{name}.svg" for name in figures},
            **{f"{name}_csv": f"tables/{name}.csv" for name in tables}}


def report_files(cfg: DictConfig) -> dict[str, str]:
    directory = REPORT.format(scale=cfg.scale, experiment=cfg.experiment)
    layout = report_layout(len(cfg.pretrain.sizes_run), len(cfg.pretrain.backbones),
                           bool(cfg.evaluate.memory_probe_delays))
    return {name: f"{directory}/{file}" for name, file in layout.items()}


def _wildcards(pattern: str, path: str) -> dict[str, str]:
    """The wildcard values that `pattern` formats into `path` (e.g. a job's output)."""
    regex = re.sub(r"\\{(\w+)\\}", r"(?P<\1>[^/]+?)", re.escape(pattern))
    found = re.fullmatch(regex, path)
    if found is None:
        raise ValueError(f"{path} does not match {pattern}")
    return found.groupdict()


def benchmark_files(cfg: DictConfig) -> dict[str, list[str]]:
    """The benchmark file of every job of the experiment but the report's own, by rule."""
    p = cfg.pretrain
    models = [{"size": size, "backbone": backbone, "seed": seed}
              for size in p.sizes_run for backbone in p.backbones for seed in p.seeds]
    jobs = {
        "generate_dataset": [_wildcards(DATASET, d) for d in dataset_dirs(cfg)],
        "pretrain": models,
        "pretrain_single": [{"task": task, **m} for task in cfg.source_tasks for m in models] if p.single_game else [],
        **{rule: [run for run in finetune_runs(cfg) if training_rule(cfg, run["method"]) == rule]
           for rule in TRAINING_FILES},
        "evaluate": [_wildcards(EVALUATE, e) for e in evaluate_runs(cfg)],
        "world_model_error": models,
        "context_costs": [{}] if face_off(cfg) else [],
    }
    base = {"scale": cfg.scale, "experiment": cfg.experiment}
    return {rule: [BENCHMARKS[rule].format(**{**base, **job}) for job in wildcards]
            for rule, wildcards in jobs.items() if wildcards}


def report_spec(cfg: DictConfig, root: str = ".") -> dict[str, Any]:
    """Everything the report job needs (its Snakemake params): its inputs, the question it answers,
    the bootstrap settings, and what the experiment defines but does not run. `root`: the
    workflow's directory, which holds the HTML template."""
    f, p = cfg.finetune, cfg.pretrain
    roles = {d: "generated, not read downstream" for d in dataset_dirs(cfg)}
    for task in run_tasks(cfg):
        roles |= {d: "score reference" for d in score_datasets(cfg, task).values()}
    roles |= {d: "pretraining (source)" for dirs in pretrain_datasets(cfg).values() for d in dirs}
    roles |= {fewshot_dataset(cfg, task): "few-shot (held-out)" for task in cfg.heldout_tasks}
    curves = [{"file": f"{FINETUNE.format(**run)}/{FINETUNE_FILES['curve']}", **run,
               "online": f.methods[run["method"]].init == "online", "steps": f.data.transitions}
              for run in finetune_runs(cfg)]
    not_run = [f"method {name} (defined in finetune.methods, not in methods_run)" for name in f.methods
               if name not in f.methods_run]
    not_run += [f"model size {size} (defined in pretrain.sizes, not in sizes_run)" for size in p.sizes
                if size not in p.sizes_run]
    not_run += [f"{name}: no planning (it trains no world model)" for name in f.methods_run
                if evaluate_spec(cfg, cfg.heldout_tasks[0], name, method_models(cfg, name)[0], 0)["planning"] is None]
    not_run += [f"{name}: no 'best' checkpoint (online training has no offline validation)"
                for name in f.methods_run if f.methods[name].init == "online"]
    not_run += [f"{name}: no 'best' checkpoint (a peer trains on the training episodes alone and is read at its "
                f"last step)" for name in f.methods_run if f.methods[name].init == "peer"]
    not_run += [] if p.single_game else ["single-game pretraining (pretrain.single_game is false)"]
    not_run += [] if cfg.evaluate.source_tasks else ["the pretrained model on its source tasks "
                                                     "(evaluate.source_tasks is false)"]
    return {
        "experiment": cfg.experiment, "scale": cfg.scale, **to_plain(cfg.report),
        "config_hash": config_hash(to_plain(cfg)), "episodes": cfg.evaluate.episodes, "sizes": list(p.sizes_run),
        "backbones": list(p.backbones), "probe_delays": list(cfg.evaluate.memory_probe_delays),
        "match_parameters": p.match_parameters,
        "transitions": f.data.transitions, "not_run": not_run, "methods": method_labels(cfg),
        "decision": {"actions": cfg.evaluate.decision_actions,  # how return-conditioned methods are evaluated
                     "target_return": {task: to_plain(cfg.tasks[task].target_return or cfg.evaluate.target_return)
                                       for task in cfg.heldout_tasks}}
        if any(return_conditioned(f.methods[name]) for name in f.methods_run) else None,
        "episode_caps": {task: cfg.evaluate.max_episode_steps or cfg.tasks[task].max_episode_steps
                         for task in run_tasks(cfg)},
        "benchmarks": benchmark_files(cfg),
        "inputs": {"evaluations": evaluate_runs(cfg), "lineage": [evaluate_lineage(e) for e in evaluate_runs(cfg)],
                   "curves": curves, "world_model": world_model_errors(cfg), "datasets": roles,
                   "memory_probe": world_model_errors(cfg, MEMORY_PROBE) if face_off(cfg) else [],
                   "context_costs": [CONTEXT_COSTS.format(scale=cfg.scale, experiment=cfg.experiment)]
                   if face_off(cfg) else [],
                   "template": f"{root}/{REPORT_TEMPLATE}"},
    }


def method_labels(cfg: DictConfig) -> dict[str, dict[str, str]]:
    """How the report names every evaluated method: its kind (ours | peer | online), a label that
    says what a peer or a baseline is, e.g. "d3rlpy_cql (peer: d3rlpy 2.8.1 DiscreteCQL)", and its
    recipe: where it starts, what it trains, with which head and adapters."""
    labels = {name: {"kind": "ours", "label": name, "recipe": "pretrained, not fine-tuned"}
              for name in (MULTIGAME, SINGLEGAME)}
    for name in cfg.finetune.methods_run:
        method = cfg.finetune.methods[name]
        kind, label, recipe = METHOD_KINDS[method.init], name, method_recipe(cfg, name)
        if method.init == "peer":
            label = f"{name} (peer: d3rlpy {version('d3rlpy')} {PEER_ALGORITHMS[method.peer].d3rlpy_class})"
        elif method.init == "online":
            label = f"{name} (online: stable-baselines3 {version('stable-baselines3')} DQN)"
        labels[name] = {"kind": kind, "label": label, "recipe": recipe}
    return labels


def method_recipe(cfg: DictConfig, name: str) -> str:
    """One line of what a method does, e.g. "pretrained · dt · fourier head (N=2) · LoRA r4 on qkv, proj"."""
    method = cfg.finetune.methods[name]
    if method.init in ("online", "peer"):
        return "online DQN in the real environment" if method.init == "online" else f"d3rlpy {method.peer}"
    if method.objective == "joint":
        loss = {**to_plain(cfg.pretrain.loss), **to_plain(method.loss)}
        parts = [f"{key} {loss[key]:g}" for key in ("next_obs", "reward", "termination", "td", "cql_alpha")]
        value_loss = method.model.get("value_loss", cfg.pretrain.model.value_loss)
        return f"{method.init} · joint: " + ", ".join(parts) + f" · {value_loss} heads"
    d = method.decision
    head = f"fourier head (N={d.frequencies})" if d.action_head == "fourier" else "linear head"
    recipe = [method.init, "dt", head] + [f"{key} {d[key]:g}" for key in ("next_obs", "reward") if d[key]]
    if d.lora is not None:
        recipe.append(f"LoRA r{d.lora.rank} on {', '.join(d.lora.target_modules)}")
    return " · ".join(recipe)


def report_inputs(spec: dict[str, Any]) -> dict[str, Any]:
    """The report job's input files, by kind (everything in its `report_spec`'s "inputs")."""
    inputs = spec["inputs"]
    return {**{k: v for k, v in inputs.items() if k not in ("curves", "datasets")},
            "curves": [run["file"] for run in inputs["curves"]], "datasets": list(inputs["datasets"])}



# --------------------------------------------------------------------------- in-context RL (issue 13)
# An experiment that sets `icrl` runs these stages instead: histories -> DPT pretraining (backbone x
# seed) -> evaluation on held-out tasks (each DPT model, and the baselines once) -> report.

ICRL_HISTORIES = "data/{scale}/icrl/{experiment}/seed{seed}"
ICRL_PRETRAIN = "results/{scale}/{experiment}/icrl/pretrain/{backbone}-seed{seed}"
ICRL_PRETRAIN_FILES = {"model": "model.pt", "mlflow": "model.mlflow.json"}
ICRL_PRETRAIN_MODEL, ICRL_PRETRAIN_MLFLOW = (f"{ICRL_PRETRAIN}/{name}" for name in ICRL_PRETRAIN_FILES.values())
ICRL_EVALUATE = "results/{scale}/{experiment}/icrl/evaluate/{run}.parquet"  # run: baselines | <backbone>-seed<s>
ICRL_BASELINES = "baselines"
ICRL_HISTORIES_CODE = ("icrl/tasks", "icrl/histories", "data/dataset")
ICRL_PRETRAIN_CODE = ("models", "train/dpt", "train/loop", "train/module", "icrl/histories", "tracking")
ICRL_EVALUATE_CODE = ("icrl/tasks", "icrl/baselines", "icrl/histories", "icrl/evaluate", "models", "train/dpt")
ICRL_REPORT_CODE = ("icrl/report", "evaluate/statistics")
ICRL_BENCHMARKS = {
    "icrl_histories": "benchmarks/icrl_histories/{scale}/{experiment}/seed{seed}.tsv",
    "icrl_pretrain": "benchmarks/icrl_pretrain/{scale}/{experiment}/{backbone}-seed{seed}.tsv",
    "icrl_evaluate": "benchmarks/icrl_evaluate/{scale}/{experiment}/{run}.tsv",
}
# The report's outputs by family, relative to REPORT: figures (SVG) and tables (CSV) by name.
ICRL_FIGURES = {"bandit": ("online_regret", "offline_suboptimality"), "darkroom": ("returns",)}
ICRL_TABLES = {"bandit": ("online_final", "offline_final", "improvement", "claims", "cost"),
               "darkroom": ("returns_final", "claims", "cost")}


def _icrl_base(cfg: DictConfig) -> dict[str, Any]:
    return {"scale": cfg.scale, "experiment": cfg.experiment}


def icrl_settings(cfg: DictConfig) -> dict[str, Any]:
    """The task-defining part of the ICRL section (what every ICRL job shares)."""
    icrl = to_plain(cfg.icrl)
    return {key: icrl[key] for key in ("family", "arms", "horizon", "noise_variance", "train_tasks", "heldout_seed",
                                       "task_seed", "heldout_goals", "histories_per_task")}


def icrl_histories_dirs(cfg: DictConfig) -> list[str]:
    return [ICRL_HISTORIES.format(**_icrl_base(cfg), seed=seed) for seed in cfg.icrl.data_seeds]


def icrl_histories_spec(cfg: DictConfig, seed: int) -> dict[str, Any]:
    """Everything one history-dataset job needs (its Snakemake params)."""
    return {"icrl": icrl_settings(cfg), "seed": int(seed)}


def icrl_dataset(cfg: DictConfig, seed: int) -> str:
    """The history dataset pretraining seed `seed` reads: the data seeds in turn."""
    seeds = list(cfg.icrl.pretrain.seeds)
    data_seeds = list(cfg.icrl.data_seeds)
    return ICRL_HISTORIES.format(**_icrl_base(cfg), seed=data_seeds[seeds.index(int(seed)) % len(data_seeds)])


def icrl_models(cfg: DictConfig) -> list[str]:
    p = cfg.icrl.pretrain
    return [ICRL_PRETRAIN_MODEL.format(**_icrl_base(cfg), backbone=b, seed=s) for b in p.backbones for s in p.seeds]


def icrl_pretrain_spec(cfg: DictConfig, backbone: str, seed: int) -> dict[str, Any]:
    """Everything one DPT pretraining job needs (`wmrl.train.dpt.train_dpt`'s spec)."""
    p = to_plain(cfg.icrl.pretrain)
    settings = {**p["model"], "backbone": backbone, "trainer": p["trainer"],
                **{key: p[key] for key in ("steps", "validate_every", "checkpoint_every", "grad_clip",
                                           "holdout_fraction")}}
    wildcards = {"backbone": backbone, "seed": int(seed)}
    tracked = _tracked(cfg, "icrl_pretrain", ICRL_PRETRAIN, wildcards)
    return {"dataset": icrl_dataset(cfg, seed), "seed": int(seed), "dpt": settings,
            "work_dir": f"work/{tracked['run_name']}", **tracked}


def icrl_runs(cfg: DictConfig) -> list[str]:
    """The evaluation runs: the baselines once, each DPT model (<backbone>-seed<s>)."""
    p = cfg.icrl.pretrain
    return [ICRL_BASELINES] + [f"{b}-seed{s}" for b in p.backbones for s in p.seeds]


def icrl_evaluations(cfg: DictConfig) -> list[str]:
    return [ICRL_EVALUATE.format(**_icrl_base(cfg), run=run) for run in icrl_runs(cfg)]


def icrl_evaluate_inputs(cfg: DictConfig, run: str) -> dict[str, str]:
    if run == ICRL_BASELINES:
        return {}
    backbone, seed = run.split("-seed")
    return {name: pattern.format(**_icrl_base(cfg), backbone=backbone, seed=seed)
            for name, pattern in (("model", ICRL_PRETRAIN_MODEL), ("record", ICRL_PRETRAIN_MLFLOW))}


def icrl_evaluate_spec(cfg: DictConfig, run: str) -> dict[str, Any]:
    """Everything one evaluation job needs (`wmrl.icrl.evaluate.evaluate_icrl`'s spec)."""
    job = {"icrl": {**icrl_settings(cfg), "evaluate": to_plain(cfg.icrl.evaluate)}}
    if run == ICRL_BASELINES:
        return {**job, "method": ICRL_BASELINES}
    backbone, seed = run.split("-seed")
    return {**job, "method": f"dpt_{backbone}", "model_seed": int(seed),
            "model": icrl_evaluate_inputs(cfg, run)["model"]}


def icrl_report_files(cfg: DictConfig) -> dict[str, str]:
    """The report job's outputs by name: html, the rows, each figure, each table's CSV."""
    directory = REPORT.format(**_icrl_base(cfg))
    family = cfg.icrl.family
    return {"html": f"{directory}/report.html", "rows": f"{directory}/scores/rows.parquet",
            **{name: f"{directory}/figures/{name}.svg" for name in ICRL_FIGURES[family]},
            **{f"{name}_csv": f"{directory}/tables/{name}.csv" for name in ICRL_TABLES[family]}}


def icrl_benchmark_files(cfg: DictConfig) -> dict[str, list[str]]:
    base, p = _icrl_base(cfg), cfg.icrl.pretrain
    return {"icrl_histories": [ICRL_BENCHMARKS["icrl_histories"].format(**base, seed=s) for s in cfg.icrl.data_seeds],
            "icrl_pretrain": [ICRL_BENCHMARKS["icrl_pretrain"].format(**base, backbone=b, seed=s)
                              for b in p.backbones for s in p.seeds],
            "icrl_evaluate": [ICRL_BENCHMARKS["icrl_evaluate"].format(**base, run=r) for r in icrl_runs(cfg)]}


def icrl_report_spec(cfg: DictConfig) -> dict[str, Any]:
    """Everything the ICRL report needs (its Snakemake params)."""
    icrl = to_plain(cfg.icrl)
    return {"experiment": cfg.experiment, "scale": cfg.scale, "question": cfg.report.question,
            "bootstrap_repetitions": cfg.report.bootstrap_repetitions, "confidence": cfg.report.confidence,
            "config_hash": config_hash(to_plain(cfg)), "icrl": icrl,
            "methods": [f"dpt_{b}" for b in icrl["pretrain"]["backbones"]],
            "benchmarks": icrl_benchmark_files(cfg),
            "inputs": {"evaluations": icrl_evaluations(cfg),
                       "records": [ICRL_PRETRAIN_MLFLOW.format(**_icrl_base(cfg), backbone=b, seed=s)
                                   for b in icrl["pretrain"]["backbones"] for s in icrl["pretrain"]["seeds"]]}}


def stage_targets(cfg: DictConfig) -> dict[str, list[str]]:
    """The files of the Snakefile's target rules: `all`, and the stages up to 1 (`datasets`), 2
    (`pretrained`) and 4 (`evaluated`), for the world-model DAG or, with `icrl` set, the ICRL one."""
    if cfg.icrl is not None:
        datasets, models, evaluations = icrl_histories_dirs(cfg), icrl_models(cfg), icrl_evaluations(cfg)
        return {"all": datasets + models + evaluations + list(icrl_report_files(cfg).values()),
                "datasets": datasets, "pretrained": models, "evaluated": evaluations}
    datasets, models, errors = dataset_dirs(cfg), pretrain_models(cfg), world_model_errors(cfg)
    return {"all": datasets + models + errors + list(report_files(cfg).values()),
            "datasets": datasets, "pretrained": models, "evaluated": evaluate_runs(cfg) + errors}
