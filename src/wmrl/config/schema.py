"""The pipeline's typed schema: one dataclass per section, composed by wmrl.config.compose.

The components' own settings live beside their code and are composed in here: the model's
(wmrl.models.config), the joint loss's (wmrl.rl.config), each method kind's (wmrl.methods), the
in-context RL section's (wmrl.config.icrl).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import DictConfig

from wmrl.config.icrl import IcrlConfig
from wmrl.models.config import ModelConfig
from wmrl.rl.config import LossConfig
from wmrl.train.config import TrainerConfig

POLICIES = ("random", "dqn", "ppo", "recurrent_ppo")
TARGET_RETURNS = ("best", "absolute")
ACTION_CHOICES = ("greedy", "sampled")


@dataclass
class RandomPolicyConfig:
    """Uniform random behaviour policy."""

    steps: int = 10_000  # environment steps (= transitions) to record


@dataclass
class DQNPolicyConfig:
    """Online DQN behaviour agent (stable-baselines3); every transition it experiences is recorded.

    Defaults follow the MinAtar paper's DQN (Young & Tian 2019): Adam 2.5e-4, replay 100k, batch 32,
    target update every 1k
    steps, epsilon 1.0 -> 0.1 over the first 50k steps, one update every 4 steps.
    """

    steps: int = 100_000  # environment steps of online learning = transitions recorded
    learning_rate: float = 2.5e-4
    buffer_size: int = 100_000
    batch_size: int = 32
    learning_starts: int = 5_000
    train_freq: int = 4  # environment steps per gradient step
    target_update_interval: int = 1_000
    gamma: float = 0.99
    exploration_initial_eps: float = 1.0
    exploration_final_eps: float = 0.1
    exploration_steps: int = 50_000  # epsilon decays linearly over these first steps
    conv_channels: int = 16  # grid observations: Conv2d(C, conv_channels, 3) trunk
    hidden: int = 128  # width of the hidden layer after the trunk
    eval_episodes: int = 20  # episodes of the final policy for the behaviour reference score
    eval_epsilon: float = 0.0  # epsilon of that evaluation (0: greedy)


@dataclass
class PPOPolicyConfig:
    """Online PPO agent (stable-baselines3, one environment): the online peer `ppo_online`.

    Defaults are stable-baselines3's but for the rollout, the minibatch and the width: runs are as
    long as the few-shot data has transitions (250 to 5,000), where SB3's 2,048-step rollouts would
    give two or three updates; 250 steps in minibatches of 50 divide every such size.
    """

    learning_rate: float = 3e-4
    # environment steps per rollout (a shorter run is one rollout of all its steps); a run learns
    # from whole rollouts alone, so at most n_steps - 1 of its steps go unused
    n_steps: int = 250
    batch_size: int = 50  # minibatch: one gradient step each, n_epochs passes over every rollout
    n_epochs: int = 10
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_range: float = 0.2
    ent_coef: float = 0.0
    hidden: int = 128  # grids: the MinAtar trunk's width, as DQN's; vectors: the MLP's [hidden, hidden] (SB3: 64)
    conv_channels: int = 16  # grid observations: Conv2d(C, conv_channels, 3) trunk, as DQN's


@dataclass
class PPOBehaviourConfig(PPOPolicyConfig):
    """Online PPO behaviour agent (stable-baselines3, one environment): every transition of its
    whole learning history is recorded, as DQN's is. The online peer's settings but for the length
    and these, near RL Zoo's MiniGrid PPO at one environment (Raffin 2020: 8 envs x 128 steps per
    rollout, minibatches of 64, 10 epochs, entropy 0.01, width 64): rollouts of 500 steps, 4 epochs,
    minibatches of 50 that divide them, entropy 0.01 (sparse goals need the exploration), width 64,
    and a learning rate of 1e-4: at 3e-4 (SB3's) the 8x8 room was learnt by 10k steps and lost by
    100k (its last 20 episodes all timed out, so the few-shot data taught nothing); at 1e-4 all four
    MiniGrid rooms were learnt and held (final policies 0.95-0.97)."""

    steps: int = 100_000  # environment steps of online learning = transitions recorded (a multiple of n_steps)
    learning_rate: float = 1e-4
    n_steps: int = 500
    batch_size: int = 50
    n_epochs: int = 4
    ent_coef: float = 0.01
    hidden: int = 64
    eval_episodes: int = 20  # episodes of the final policy for its score on the card
    # ... its actions sampled, as it acted while recording (true), or its argmax (false); a
    # policy-gradient agent's argmax can loop where its samples do not (a probe on DoorKey-5x5
    # after 80k steps: greedy 0.67, sampled 0.96)
    eval_sampled: bool = True


@dataclass
class RecurrentPPOBehaviourConfig(PPOBehaviourConfig):
    """Recurrent PPO behaviour agent (sb3-contrib's RecurrentPPO: an LSTM on the trunk's features,
    then the trunk's MLP for vectors, then the heads; trained on sequences of whole rollouts): for
    tasks whose answer lies in earlier observations, which a memoryless agent cannot act on (POPGym)."""

    learning_rate: float = 3e-4  # SB3's, as POPGym's figures in README were measured
    n_steps: int = 250
    batch_size: int = 125
    lstm_hidden: int = 64


@dataclass
class DatasetConfig:
    """Offline behaviour datasets, one per (task, policy, seed); see docs/architecture.md, "Data contracts"."""

    policies: list[str] = field(default_factory=lambda: ["random", "dqn"])  # of POLICIES
    seeds: list[int] = field(default_factory=lambda: [0])
    shard_rows: int = 100_000  # target rows per Parquet shard (episodes are never split)
    random: RandomPolicyConfig = field(default_factory=RandomPolicyConfig)
    dqn: DQNPolicyConfig = field(default_factory=DQNPolicyConfig)
    ppo: PPOBehaviourConfig = field(default_factory=PPOBehaviourConfig)
    recurrent_ppo: RecurrentPPOBehaviourConfig = field(default_factory=RecurrentPPOBehaviourConfig)
    # "minari:<id>": the data is that local Minari dataset (MINARI_DATASETS_PATH), imported, not
    # generated; each (policy, seed) dataset of the task is then the same import (the policy and seed
    # settings only name it; `policies: [dqn]` imports it once) and the task must set score.random
    # and score.reference, which no behaviour policy of ours can give
    source: Optional[str] = None


@dataclass
class SizeConfig:
    """One model size of the scaling curve: overrides of `pretrain.model`."""

    dim: int = 128
    layers: int = 2
    heads: int = 4


@dataclass
class PretrainConfig:
    """Stage 2: multi-task world-action model pretraining on the source tasks' datasets."""

    policies: list[str] = field(default_factory=lambda: ["dqn"])  # behaviour datasets used
    channel_layout: str = "union"  # union: channels shared by name across games; pad: zero-pad
    window: int = 16  # K steps per training window (2K + 1 tokens)
    batch_size: int = 32
    steps: int = 2_000  # gradient steps
    learning_rate: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    target_update: int = 250  # gradient steps between copies into the target network
    holdout_fraction: float = 0.05  # last episodes of each dataset, never trained on
    heldout_windows: int = 256  # held-out windows per task for the metrics file
    # null: hold each task's training episodes in memory; N: stream them from Parquet, about N rows
    # of whole episodes per task at a time, a new chunk every `stream_refresh` gradient steps
    stream_rows: Optional[int] = None
    stream_refresh: int = 1_000
    validate_every: int = 500  # gradient steps between held-out validations (logged to MLflow)
    checkpoint_every: int = 250  # gradient steps between resumable checkpoints under work/
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    sizes_run: list[str] = field(default_factory=lambda: ["medium"])  # which `sizes` to train
    # also pretrain one model per source game on that game's data alone, for steps / (source games)
    # gradient steps (the multi-game model's per-game share), evaluated on its game (method singlegame)
    single_game: bool = False
    backbones: list[str] = field(default_factory=lambda: ["transformer"])
    # each backbone at the width where it has the plain transformer's backbone parameter count at
    # that size (wmrl.models.backbones.matched_width), instead of the size's own width
    match_parameters: bool = False
    seeds: list[int] = field(default_factory=lambda: [0])
    sizes: dict[str, SizeConfig] = field(default_factory=lambda: {
        "small": SizeConfig(dim=64, layers=2, heads=4),
        "medium": SizeConfig(dim=128, layers=2, heads=4),
        "large": SizeConfig(dim=192, layers=4, heads=6),
    })
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)


@dataclass
class FewShotConfig:
    """The fine-tuning data: nested slices of a task's behaviour data, one per size. The largest
    is one contiguous slice (whole episodes from an episode start, the last one cut at exactly that
    many transitions) beginning at `start`; every smaller size is its first transitions, so that
    the sizes differ in amount alone (wmrl.data.windows.slice_episodes)."""

    policy: str = "dqn"  # which behaviour dataset the slices are taken from
    seed: int = 0  # ... and which of its seeds
    sizes: list[int] = field(default_factory=lambda: [5_000])  # transitions of each fine-tuning set, ascending
    start: float = 1.0  # where the largest begins: 0 = the replay's first steps, 1 = as late as it fits
    # how many seeds (0, 1, ...) run at each size, e.g. [8, 5, 3]: small sets need more, their runs
    # vary more (null: finetune.seeds at every size)
    seeds_per_size: Optional[list[int]] = None


@dataclass
class ControlConfig:
    """The positive control for transfer: `method` against `baseline` fine-tuned on a *source*
    task's episodes that pretraining never saw (its slices are held back from that task's
    pretraining data), at every size — known dynamics, new episodes: where pretraining must help.
    It passes when `method` beats `baseline` at the smallest size with the CI of the IQM difference
    above 0; the report's verdicts read it (wmrl.report.tables.control_result)."""

    task: str = "???"  # a source task
    method: str = "pretrained"
    baseline: str = "scratch"


@dataclass
class FinetuneConfig:
    """Stage 3: RL fine-tuning on each held-out task, every method on the same few-shot data and
    the same number of gradient steps."""

    data: FewShotConfig = field(default_factory=FewShotConfig)
    steps: int = 1_000  # gradient steps
    window: int = 8  # K steps per window (at most pretrain.window: the model's positions)
    batch_size: int = 32
    learning_rate: float = 1e-3  # 1e-4 left bc at 0.22 normalized on laptop breakout after 500 steps
    weight_decay: float = 0.01
    warmup_steps: int = 50
    grad_clip: float = 1.0
    target_update: int = 100
    holdout_fraction: float = 0.1  # last episodes of the slice: the validation set of the best checkpoint
    heldout_windows: int = 256  # validation windows drawn from them
    validate_every: int = 100  # gradient steps between validations (the fine-tuning curve)
    checkpoint_every: int = 100
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # at every size, unless data.seeds_per_size says
    methods_run: list[str] = field(default_factory=lambda: ["pretrained", "scratch", "bc", "dqn_online", "d3rlpy_cql",
                                                            "d3rlpy_bc"])
    # every method by name (config/methods.yaml holds the catalogue; an experiment adds its own): its
    # `kind` (wmrl.methods.KINDS) and that kind's settings, checked when the layers are composed
    methods: dict[str, Any] = field(default_factory=dict)
    # the methods of methods_run that run at every size of data.sizes; the others run at the largest
    # only (null: all of them at every size)
    curve_methods: Optional[list[str]] = None
    control: Optional[ControlConfig] = None  # the positive control for transfer (null: none)
    online: DQNPolicyConfig = field(default_factory=lambda: DQNPolicyConfig(
        learning_starts=500, buffer_size=5_000, target_update_interval=250, exploration_steps=2_500,
        train_freq=1, eval_episodes=0))
    ppo: PPOPolicyConfig = field(default_factory=PPOPolicyConfig)  # the online kind's PPO (algorithm: ppo)


@dataclass
class PlanningConfig:
    """Beam search through the world model at evaluation (JOWA, Cheng et al. 2024, section 3.3)."""

    width: int = 2  # beams kept per depth
    horizon: int = 2  # depths expanded; 1 is the greedy policy


@dataclass
class TargetReturnConfig:
    """The return a return-conditioned agent is asked for: `value` x the best episode return of its
    training episodes ("best"), or `value` itself ("absolute")."""

    mode: str = "best"  # best | absolute
    value: float = 1.0


@dataclass
class EvaluateConfig:
    """Stage 4: real-environment episodes of every trained model."""

    episodes: int = 20  # per trained model (seed), run side by side
    max_episode_steps: Optional[int] = None  # cut evaluation episodes here (null: the task's own limit)
    env_seed: int = 1_000_000  # episode i of seed s uses env seed env_seed + 1000 s + i (never a data seed)
    planning: PlanningConfig = field(default_factory=PlanningConfig)
    target_return: TargetReturnConfig = field(default_factory=TargetReturnConfig)  # per task: tasks.<t>.target_return
    decision_actions: str = "greedy"  # return-conditioned agents: greedy (argmax) | sampled (from the policy)
    source_tasks: bool = True  # also evaluate the pretrained model, not fine-tuned, on its source tasks
    world_model_horizon: int = 8  # open-loop prediction error for 1..horizon steps ahead
    world_model_windows: int = 64  # held-out windows per task for that error
    # memory probe (wmrl.evaluate.memory): recall of the episode's first observation from the features d
    # steps later, for each d here (at most pretrain.window); tasks with one-hot observations only
    memory_probe_delays: list[int] = field(default_factory=list)
    # an experiment of several backbones times their training and acting steps at these contexts K
    context_windows: list[int] = field(default_factory=lambda: [16, 64, 256])


@dataclass
class CompareConfig:
    """The comparison the report's headline answers: `method` against `baseline` (names in
    finetune.methods_run), both read at the same checkpoint and planning setting."""

    method: str = "pretrained"
    baseline: str = "scratch"
    checkpoint: str = "last"  # last | best
    planning: str = "none"  # "none", or the evaluation rows' label, e.g. "beam w2 h2"
    transitions: Optional[int] = None  # the data size (of finetune.data.sizes) it is judged at; null: the smallest


@dataclass
class ClaimConfig:
    """A claim the report tests, stated before the run: `method` beats `baseline` (read like the
    headline: same checkpoint and planning setting, the same verdict rule)."""

    claim: str = "???"
    method: str = "???"
    baseline: str = "???"
    model: Optional[str] = None  # e.g. "small-transformer": both at that model (default: each one's best)


@dataclass
class TargetConfig:
    """A positive control by score: every seed of `method` must reach a mean evaluation return of
    `mean_return` (e.g. the imagination agent on CartPole, 475), fixed before the question's runs."""

    method: str = "???"
    mean_return: float = "???"  # type: ignore[assignment]


@dataclass
class ReportConfig:
    """Stage 5: aggregates over runs (stratified bootstrap CIs) and the report's headline."""

    bootstrap_repetitions: int = 2_000
    confidence: float = 0.95
    question: str = "Does pretraining help fine-tuning on held-out tasks?"  # the headline answers it
    compare: CompareConfig = field(default_factory=CompareConfig)
    # methods run as remedies to try (named before the run): the honesty section lists what each
    # gave beside `compare.method`; the headline never changes to one of them
    variants: list[str] = field(default_factory=list)
    claims: list[ClaimConfig] = field(default_factory=list)  # further comparisons, each with its verdict
    target: Optional[TargetConfig] = None  # a return a method must reach on every seed (a positive control)


@dataclass
class ScoreConfig:
    """Normalized score = (return - random) / (reference - random). A value left null is taken from
    this experiment's datasets: the random policy's mean episode return, the DQN behaviour
    agent's final greedy score (its card's reference_score)."""

    random: Optional[float] = None
    reference: Optional[float] = None
    source: str = "behaviour agent"  # where the numbers come from, printed in the report


@dataclass
class WrapperConfig:
    """A Gymnasium wrapper applied to a task's env: its class by import path and its kwargs."""

    path: str = "???"  # "module:Class" or "module.Class", e.g. "gymnasium.wrappers:TimeAwareObservation"
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class TaskConfig:
    """One task: an environment and, optionally, per-task dataset overrides."""

    env: str = "???"  # "minatar:<game>", "atari:<Game>", a Gymnasium id ("CartPole-v1") or
    # "<module>:<EnvId>", which imports the module that registers it ("minigrid:MiniGrid-Empty-5x5-v0")
    env_kwargs: dict[str, Any] = field(default_factory=dict)  # passed to the env constructor
    max_episode_steps: Optional[int] = None  # truncate episodes after this many steps
    wrappers: list[WrapperConfig] = field(default_factory=list)  # applied in order, after the time limit
    obs_keys: list[str] = field(default_factory=list)  # the parts of a Dict/Tuple observation the models see
    # (empty: every part with a model form; see wmrl.envs.observations)
    dataset: dict[str, Any] = field(default_factory=dict)  # overrides of the `dataset` section (compose
    # replaces them with the whole section as it applies to this task: see task_dataset)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    target_return: Optional[TargetReturnConfig] = None  # null: evaluate.target_return


@dataclass
class Config:
    """The whole configuration of one pipeline run."""

    scale: str = "laptop"  # config/scales/<scale>.yaml
    experiment: str = "minatar_transfer"  # config/experiments/<experiment>.yaml
    suite: str = "???"  # name of the task suite; datasets live under data/<scale>/<suite>/
    tasks: dict[str, TaskConfig] = field(default_factory=dict)
    source_tasks: list[str] = field(default_factory=list)  # pretraining tasks
    heldout_tasks: list[str] = field(default_factory=list)  # never in pretraining data
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    icrl: Optional[IcrlConfig] = None  # set: the experiment is in-context RL (see IcrlConfig)


def task_dataset(cfg: DictConfig, task: str) -> DictConfig:
    """The `dataset` section as it applies to `task`: the global one with the task's overrides
    (resolved by `compose`)."""
    return cfg.tasks[task].dataset
