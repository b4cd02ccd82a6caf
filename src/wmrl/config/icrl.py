"""The in-context RL section (`icrl`): DPT and AD pretrained on many tasks' histories, evaluated
on held-out tasks, and the torch-free entry of each method (`ICRL_METHODS`). An experiment that
sets it runs the ICRL DAG (wmrl.dag.icrl) instead of the world-model one. (Not in wmrl.icrl:
importing that package registers Gymnasium environments, and the Snakefile builds its DAG
without gymnasium.)"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from wmrl.models.config import BACKBONES
from wmrl.train.config import TrainerConfig, check_trainer
from wmrl.typed import ConfigError

ICRL_FAMILIES = ("bandit", "darkroom")


@dataclass(frozen=True)
class IcrlMethodEntry:
    """What the DAG (torch-free) knows of an in-context RL method; its code is wmrl.icrl.methods."""

    data: str  # the kind of histories it learns from (wmrl.icrl.histories)
    families: tuple[str, ...]  # the task families it plays
    source: Optional[str] = None  # the baseline it distils, played on the held-out tasks beside it
    sections: tuple[str, ...] = ()  # its own `icrl` sections, given to the jobs of its data and models only
    settings: Callable[[DictConfig], dict] = lambda icrl: {}  # its pretraining job's settings beyond the model's


ICRL_METHODS = {
    "dpt": IcrlMethodEntry("contexts", ("bandit", "darkroom")),  # a query and a context of transitions
    "ad": IcrlMethodEntry("learning", ("darkroom",), source="ad_source", sections=("ad",),  # a learner's episodes
                          settings=lambda icrl: {"context_steps": int(icrl.ad.context_episodes * icrl.episode_steps)}),
}


@dataclass
class IcrlModelConfig:
    """Every method's model width and optimizer (`wmrl.models.dpt.DPTConfig`, `wmrl.models.ad.ADConfig`;
    DPT's sizes by default); the backbone comes from `icrl.pretrain.backbones`."""

    dim: int = 32
    layers: int = 4
    heads: int = 1
    state_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 64


@dataclass
class IcrlPretrainConfig:
    """Supervised pretraining (one job per method x backbone x seed), through `wmrl.train.loop.fit`."""

    backbones: list[str] = field(default_factory=lambda: ["transformer"])  # transformer | ssm (S4-ICRL) | gru
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 2_000
    schedule: str = "constant"  # learning rate: constant (DPT) | cosine (decayed to 0 over `steps`)
    validate_every: int = 500
    checkpoint_every: int = 500
    grad_clip: float = 1.0
    holdout_fraction: float = 0.05  # the last training tasks' histories: validation only
    model: IcrlModelConfig = field(default_factory=IcrlModelConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)


@dataclass
class IcrlEvaluateConfig:
    """Evaluation on held-out tasks: every method on the same tasks and seeds (`wmrl.icrl.evaluate`)."""

    tasks: int = 100  # held-out tasks played (Dark Room: at most `icrl.heldout_goals`)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # evaluation seeds per task
    episodes: int = 40  # Dark Room: in-context episodes per held-out goal
    ucb_c: float = 1.0  # UCB's and LCB's bonus coefficient


@dataclass
class IcrlADConfig:
    """Algorithm Distillation's learning histories (`wmrl.icrl.learning`, AD-ε noise distillation)
    and context: `histories_per_task` histories of `episodes` consecutive Dark Room episodes per
    training goal, exploration decaying to 0 by episode `decay` x `episodes`; the model reads the
    last `context_episodes` x `episode_steps` steps."""

    episodes: int = 40
    decay: float = 0.7
    histories_per_task: int = 50
    context_episodes: int = 4


@dataclass
class IcrlConfig:
    """In-context RL: DPT and AD (`methods`) pretrained on many tasks' histories, evaluated on
    held-out tasks against the baselines and the oracle. An experiment that sets this section runs
    the ICRL DAG (histories -> pretrain -> evaluate -> report) instead of the world-model one."""

    family: str = "bandit"  # bandit | darkroom
    methods: list[str] = field(default_factory=lambda: ["dpt"])  # dpt | ad (Dark Room only)
    control: Optional[str] = None  # bandit: the DPT model (dpt_<backbone>) judged as the positive control
    arms: int = 5  # bandit: K
    horizon: int = 500  # bandit: pulls per task (= DPT's context H); Dark Room: DPT's context (transitions)
    size: int = 10  # Dark Room: the room's side (size x size cells, each a goal)
    episode_steps: int = 100  # Dark Room: steps per episode
    noise_std: float = 0.3  # bandit: the reward noise's standard deviation (DPT's code: 0.3)
    train_tasks: int = 100_000  # bandit: training tasks (arm means drawn with task_seed)
    heldout_seed: int = 2_000_003  # bandit: held-out tasks' means are drawn with this seed instead (probes: 1_000_003)
    task_seed: int = 0  # bandit: the training tasks' seed; Dark Room: the goal split's seed
    heldout_goals: int = 20  # Dark Room: goals held out of the 100 (DPT: 80 train / 20 held out)
    histories_per_task: int = 1  # pretraining histories per training task
    data_seeds: list[int] = field(default_factory=lambda: [0])  # one history dataset per seed
    ad: IcrlADConfig = field(default_factory=IcrlADConfig)
    pretrain: IcrlPretrainConfig = field(default_factory=IcrlPretrainConfig)
    evaluate: IcrlEvaluateConfig = field(default_factory=IcrlEvaluateConfig)


def check_icrl(cfg: DictConfig) -> None:
    """The ICRL section: one ConfigError naming every problem found."""
    icrl, problems = cfg.icrl, []
    if icrl.family not in ICRL_FAMILIES:
        problems.append(f"'icrl.family' must be one of {', '.join(ICRL_FAMILIES)}, got {icrl.family!r}")
    bad = [b for b in icrl.pretrain.backbones if b not in BACKBONES]
    if bad or not icrl.pretrain.backbones:
        problems.append(f"'icrl.pretrain.backbones' must name some of {', '.join(BACKBONES)}, got "
                        f"{list(icrl.pretrain.backbones)}")
    for key, value, least in (("arms", icrl.arms, 2), ("horizon", icrl.horizon, 1),
                              ("train_tasks", icrl.train_tasks, 1), ("histories_per_task", icrl.histories_per_task, 1),
                              ("pretrain.steps", icrl.pretrain.steps, 1), ("evaluate.tasks", icrl.evaluate.tasks, 1),
                              ("evaluate.episodes", icrl.evaluate.episodes, 1),
                              ("pretrain.model.batch_size", icrl.pretrain.model.batch_size, 1)):
        if value < least:
            problems.append(f"'icrl.{key}' must be at least {least}, got {value}")
    wrong = [m for m in icrl.methods if m not in ICRL_METHODS or icrl.family not in ICRL_METHODS[m].families]
    if wrong or not icrl.methods:
        playing = [m for m, entry in ICRL_METHODS.items() if icrl.family in entry.families]
        problems.append(f"'icrl.methods' must name some of {playing} for family {icrl.family!r}, "
                        f"got {list(icrl.methods)}")
    if "ad" in icrl.methods and icrl.family == "darkroom":
        ad = icrl.ad
        if ad.episodes < 2 or not 0 < ad.decay <= 1 or ad.histories_per_task < 1:
            problems.append(f"'icrl.ad' needs episodes >= 2, decay in (0, 1] and histories_per_task >= 1, got "
                            f"{ad.episodes}, {ad.decay} and {ad.histories_per_task}")
        elif not 1 <= ad.context_episodes <= ad.episodes or icrl.evaluate.episodes > ad.episodes:
            problems.append(f"'icrl.ad.context_episodes' ({ad.context_episodes}) and 'icrl.evaluate.episodes' "
                            f"({icrl.evaluate.episodes}) must be within 'icrl.ad.episodes' ({ad.episodes}): AD's "
                            f"context and its source learner's curve come from histories that long")
        elif ad.decay * ad.episodes > ad.episodes - ad.context_episodes:
            problems.append(f"'icrl.ad.decay' x 'episodes' ({ad.decay * ad.episodes:g}) must be at most 'episodes' - "
                            f"'context_episodes' ({ad.episodes - ad.context_episodes}): AD's context curve reads the "
                            f"last {ad.context_episodes} episodes, where the learner must no longer explore")
    models = [f"dpt_{b}" for b in icrl.pretrain.backbones]
    if icrl.control is not None and (icrl.family != "bandit" or icrl.control not in models):
        problems.append(f"'icrl.control' must name one of the bandit experiment's models {models}, got "
                        f"{icrl.control!r} ({icrl.family})")
    if icrl.pretrain.schedule not in ("constant", "cosine"):
        problems.append(f"'icrl.pretrain.schedule' must be constant or cosine, got {icrl.pretrain.schedule!r}")
    if icrl.noise_std <= 0:
        problems.append(f"'icrl.noise_std' must be positive, got {icrl.noise_std}")
    if icrl.family == "bandit" and icrl.heldout_seed == icrl.task_seed:
        problems.append("'icrl.heldout_seed' must differ from 'icrl.task_seed': held-out bandits would be the "
                        "training ones")
    if icrl.family == "darkroom":
        cells = icrl.size ** 2
        if icrl.size < 2 or icrl.episode_steps < 1:
            problems.append(f"'icrl.size' must be at least 2 and 'icrl.episode_steps' at least 1, got {icrl.size} "
                            f"and {icrl.episode_steps}")
        elif not 1 <= icrl.heldout_goals < cells:
            problems.append(f"'icrl.heldout_goals' must be in 1..{cells - 1} (of the {cells} goals), got "
                            f"{icrl.heldout_goals}")
        elif icrl.evaluate.tasks > icrl.heldout_goals:
            problems.append(f"'icrl.evaluate.tasks' ({icrl.evaluate.tasks}) exceeds the {icrl.heldout_goals} "
                            f"held-out goals")
    if not icrl.evaluate.seeds or not icrl.pretrain.seeds or not icrl.data_seeds:
        problems.append("'icrl.evaluate.seeds', 'icrl.pretrain.seeds' and 'icrl.data_seeds' must not be empty")
    if not 0.0 <= icrl.pretrain.holdout_fraction < 1.0:
        problems.append(f"'icrl.pretrain.holdout_fraction' must be in [0, 1), got {icrl.pretrain.holdout_fraction}")
    if problems:
        raise ConfigError(f"config error in experiment {cfg.experiment!r}: " + "; ".join(problems))
    check_trainer(OmegaConf.create({"trainer": icrl.pretrain.trainer,
                                     "batch_size": icrl.pretrain.model.batch_size}), "icrl.pretrain")

