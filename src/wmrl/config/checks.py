"""Checks of a composed configuration that need more than one key: the task split, policy names,
per-task overrides, the methods (each by its kind: wmrl.methods), the report's claims. Each raises
one ConfigError naming the key path and what is allowed."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from wmrl.config.icrl import check_icrl
from wmrl.config.schema import ACTION_CHOICES, POLICIES, TARGET_RETURNS, task_dataset
from wmrl.methods import kind_of
from wmrl.models.config import BACKBONES, CHANNEL_LAYOUTS, check_model
from wmrl.train.config import check_trainer
from wmrl.typed import ConfigError


def check(cfg: DictConfig) -> None:
    """Every check of the experiment; an ICRL experiment (`icrl` set) has no world-model tasks: its
    own section is checked instead."""
    if cfg.icrl is not None:
        check_icrl(cfg)
        return
    check_tasks(cfg)
    check_pretrain(cfg)
    check_finetune(cfg)
    check_evaluate(cfg)
    check_report(cfg)


def check_tasks(cfg: DictConfig) -> None:
    """The suite and its tasks, each task's policies and data source, the source/held-out split."""
    if OmegaConf.is_missing(cfg, "suite"):
        raise ConfigError(f"config error: 'suite' is missing (experiment {cfg.experiment!r} should name it)")
    if not cfg.tasks:
        raise ConfigError(f"config error: experiment {cfg.experiment!r} defines no tasks")
    for name, task in cfg.tasks.items():
        if OmegaConf.is_missing(task, "env"):
            raise ConfigError(f"config error: 'tasks.{name}.env' is missing (e.g. minatar:breakout or CartPole-v1)")
        dataset = task_dataset(cfg, name)
        policies = dataset.policies
        bad = [p for p in policies if p not in POLICIES]
        if bad:
            raise ConfigError(f"config error: 'tasks.{name}' policies {bad} unknown; allowed: {', '.join(POLICIES)}")
        _check_source(name, task, dataset.source)
        for policy in policies:
            learner = dataset[policy]
            if "n_steps" in learner and learner.steps > learner.n_steps and learner.steps % learner.n_steps:
                raise ConfigError(f"config error: 'tasks.{name}.dataset.{policy}.steps' ({learner.steps}) must be a "
                                  f"multiple of its n_steps ({learner.n_steps}): PPO learns from whole rollouts, so "
                                  "it would record more transitions than asked")
        for score, policy in (("random", "random"), ("reference", "dqn")):
            if task.score[score] is None and policy not in policies:
                raise ConfigError(f"config error: 'tasks.{name}.score.{score}' is null, so it would come from the "
                                  f"task's {policy} data, which is not generated: set it, or generate {policy} data")
    for key in ("source_tasks", "heldout_tasks"):
        unknown = [t for t in cfg[key] if t not in cfg.tasks]
        if unknown:
            raise ConfigError(f"config error: '{key}' names tasks not in 'tasks': {unknown}; tasks: {list(cfg.tasks)}")
    leaked = set(cfg.source_tasks) & set(cfg.heldout_tasks)
    if leaked:
        raise ConfigError(f"config error: held-out tasks {sorted(leaked)} are also source tasks")


def _check_source(name: str, task: DictConfig, source: str | None) -> None:
    """A task's data from Minari: a well-formed source, and scores that do not come from its data."""
    if source is None:
        return
    if not source.startswith("minari:") or source == "minari:":
        raise ConfigError(f"config error: 'tasks.{name}.dataset.source' must be minari:<Minari dataset id>, "
                          f"got {source!r}")
    unset = [key for key in ("random", "reference") if task.score[key] is None]
    if unset:
        raise ConfigError(f"config error: 'tasks.{name}.score' must set {' and '.join(unset)}: the task's data "
                          f"comes from {source}, not from the behaviour policies whose scores stand in for them")


def check_pretrain(cfg: DictConfig) -> None:
    """The sizes and backbones trained, the model, the channel layout, the source tasks' data."""
    pretrain = cfg.pretrain
    for size in pretrain.sizes_run:
        if size not in pretrain.sizes:
            raise ConfigError(f"config error: 'pretrain.sizes_run' names {size!r}; sizes: {list(pretrain.sizes)}")
    for backbone in pretrain.backbones:
        if backbone not in BACKBONES:
            raise ConfigError(f"config error: 'pretrain.backbones' names {backbone!r}; "
                              f"allowed: {', '.join(BACKBONES)}")
    check_model(pretrain.model, "pretrain.model")
    if pretrain.channel_layout not in CHANNEL_LAYOUTS:
        raise ConfigError(f"config error: 'pretrain.channel_layout' must be one of {', '.join(CHANNEL_LAYOUTS)}, "
                          f"got {pretrain.channel_layout!r}")
    for task in cfg.source_tasks:
        missing = [p for p in pretrain.policies if p not in task_dataset(cfg, task).policies]
        if missing:
            raise ConfigError(f"config error: 'pretrain.policies' {missing} are not generated for source task {task!r}")
    check_trainer(pretrain, "pretrain")


def check_finetune(cfg: DictConfig) -> None:
    """The methods run (each checked by its kind), the window, the few-shot slice of every held-out task."""
    finetune = cfg.finetune
    check_trainer(finetune, "finetune")
    for name in finetune.methods_run:
        if name not in finetune.methods:
            raise ConfigError(f"config error: 'finetune.methods_run' names {name!r}; methods: {list(finetune.methods)}")
    for name, method in finetune.methods.items():
        kind_of(method).check(cfg, name, method, name in finetune.methods_run)
    if finetune.window > cfg.pretrain.window:
        raise ConfigError(f"config error: 'finetune.window' ({finetune.window}) exceeds 'pretrain.window' "
                          f"({cfg.pretrain.window}), the model's positions")
    if not 0.0 <= finetune.data.start <= 1.0:
        raise ConfigError(f"config error: 'finetune.data.start' must be in [0, 1], got {finetune.data.start}")
    sizes, seeds = list(finetune.data.sizes), finetune.data.seeds_per_size
    if not sizes or min(sizes) < 1 or sizes != sorted(set(sizes)):
        raise ConfigError(f"config error: 'finetune.data.sizes' must be ascending positive transition counts, got "
                          f"{sizes}")
    if seeds is not None and (len(seeds) != len(sizes) or min(seeds) < 1):
        raise ConfigError(f"config error: 'finetune.data.seeds_per_size' must give a seed count (>= 1) for each of "
                          f"'finetune.data.sizes' {sizes}, got {list(seeds)}")
    stray = [name for name in finetune.curve_methods or [] if name not in finetune.methods]
    if stray:
        raise ConfigError(f"config error: 'finetune.curve_methods' names {stray}, which are not methods; "
                          f"finetune.methods: {list(finetune.methods)}")
    for task in cfg.heldout_tasks:
        check_slices(cfg, task, "held-out task")
    if finetune.control is not None:
        check_control(cfg)


def check_slices(cfg: DictConfig, task: str, role: str) -> None:
    """The dataset the fine-tuning slices of `task` are cut from is generated and long enough."""
    data = cfg.finetune.data
    dataset = task_dataset(cfg, task)
    if data.policy not in dataset.policies or data.seed not in dataset.seeds:
        raise ConfigError(f"config error: 'finetune.data' asks for the {data.policy!r} dataset of seed {data.seed} of "
                          f"{role} {task!r}, which is not generated (policies {list(dataset.policies)}, seeds "
                          f"{list(dataset.seeds)})")
    if dataset.source is None and max(data.sizes) > dataset[data.policy].steps:
        raise ConfigError(f"config error: 'finetune.data.sizes' ({max(data.sizes)} transitions) exceeds the "
                          f"{dataset[data.policy].steps} steps of {task!r}'s {data.policy} data")


def check_control(cfg: DictConfig) -> None:
    """The transfer control fine-tunes a source task on data pretraining never saw, with methods that run."""
    control, finetune = cfg.finetune.control, cfg.finetune
    if control.task not in cfg.source_tasks:
        raise ConfigError(f"config error: 'finetune.control.task' is {control.task!r}, which is not a source task; "
                          f"the control fine-tunes on a game pretraining knows (source_tasks: "
                          f"{list(cfg.source_tasks)})")
    for key in ("method", "baseline"):
        name = control[key]
        if name not in finetune.methods or "dataset" not in kind_of(finetune.methods[name]).inputs(
                finetune.methods[name]):
            raise ConfigError(f"config error: 'finetune.control.{key}' names {name!r}; it must be a method of "
                              f"finetune.methods that trains on the few-shot data")
    check_slices(cfg, control.task, "the control's source task")


def check_evaluate(cfg: DictConfig) -> None:
    """Target returns, action choice, and what the pretrained model's positions can reach."""
    evaluate = cfg.evaluate
    for name, target in [("evaluate", evaluate.target_return)] + [
            (f"tasks.{task}", cfg.tasks[task].target_return) for task in cfg.tasks]:
        if target is not None and target.mode not in TARGET_RETURNS:
            raise ConfigError(f"config error: '{name}.target_return.mode' must be one of {', '.join(TARGET_RETURNS)}, "
                              f"got {target.mode!r}")
    if evaluate.decision_actions not in ACTION_CHOICES:
        raise ConfigError(f"config error: 'evaluate.decision_actions' must be one of {', '.join(ACTION_CHOICES)}, "
                          f"got {evaluate.decision_actions!r}")
    for name, reach in (("world_model_horizon", evaluate.world_model_horizon),
                        ("memory_probe_delays", max(evaluate.memory_probe_delays, default=0))):
        if reach > cfg.pretrain.window:
            raise ConfigError(f"config error: 'evaluate.{name}' reaches {reach} steps, beyond 'pretrain.window' "
                              f"({cfg.pretrain.window}), the pretrained model's positions")
    if min(list(evaluate.memory_probe_delays) + list(evaluate.context_windows) + [1]) < 1:
        raise ConfigError("config error: 'evaluate.memory_probe_delays' and 'evaluate.context_windows' must be >= 1")
    if evaluate.planning.horizon >= cfg.finetune.window:
        raise ConfigError(f"config error: 'evaluate.planning.horizon' must be below 'finetune.window' "
                          f"({cfg.finetune.window}): the plan extends the model's context")


def check_report(cfg: DictConfig) -> None:
    """The headline comparison, the claims, the variants and the target name methods (and models) that run."""
    run, compare = cfg.finetune.methods_run, cfg.report.compare
    for key in ("method", "baseline"):
        if compare[key] not in run:
            raise ConfigError(f"config error: 'report.compare.{key}' names {compare[key]!r}, which is not run; "
                              f"finetune.methods_run: {list(run)}")
    if compare.transitions is not None and compare.transitions not in cfg.finetune.data.sizes:
        raise ConfigError(f"config error: 'report.compare.transitions' is {compare.transitions}, not one of "
                          f"'finetune.data.sizes' {list(cfg.finetune.data.sizes)}")
    if compare.checkpoint not in ("last", "best"):
        raise ConfigError(f"config error: 'report.compare.checkpoint' must be last or best, got {compare.checkpoint!r}")
    models = [f"{size}-{backbone}" for size in cfg.pretrain.sizes_run for backbone in cfg.pretrain.backbones]
    for index, claim in enumerate(cfg.report.claims):
        for key in ("method", "baseline"):
            if claim[key] not in run:
                raise ConfigError(f"config error: 'report.claims[{index}].{key}' names {claim[key]!r}, which is not "
                                  f"run; finetune.methods_run: {list(run)}")
        if claim.model is not None and claim.model not in models:
            raise ConfigError(f"config error: 'report.claims[{index}].model' names {claim.model!r}, which is not "
                              f"trained; models: {models}")
    for name in cfg.report.variants:
        if name not in run:
            raise ConfigError(f"config error: 'report.variants' names {name!r}, which is not run; "
                              f"finetune.methods_run: {list(run)}")
    target = cfg.report.target
    if target is not None and target.method not in run:
        raise ConfigError(f"config error: 'report.target.method' names {target.method!r}, which is not run; "
                          f"finetune.methods_run: {list(run)}")
