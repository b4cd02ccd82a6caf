"""The one typed configuration schema, and how the layers compose into it.

A configuration is built from layers, later layers win:

1. the defaults of the dataclasses below,
2. ``config/config.yaml`` (picks the experiment and the scale),
3. ``config/experiments/<experiment>.yaml`` (what is run: suite, tasks, split), after the
   experiment files it ``extends``,
4. ``config/scales/<scale>.yaml`` (how big: step counts, sizes; its ``icrl.<family>`` sizes apply
   only to an experiment that sets ``icrl``),
5. the user's ``--configfile`` / ``--config`` values (Snakemake's ``config`` dict).

Every layer is checked against the schema as it is merged, so an unknown key or a value of the
wrong type fails at once, naming the file it came from, the key path and what is allowed there.
A task may override any field of the top-level ``dataset`` section in ``tasks.<name>.dataset``;
the override is validated against the same schema.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

PACKAGE_DIR = Path(__file__).resolve().parent
POLICIES = ("random", "dqn")
BACKBONES = ("transformer", "gtrxl", "gru", "ssm")
INITS = ("pretrained", "scratch", "online", "peer")
OBJECTIVES = ("joint", "dt")  # what a pretrained/scratch method trains: wmrl.rl.objectives | wmrl.rl.rcsl
ACTION_HEADS = ("linear", "fourier")
VALUE_LOSSES = ("hl_gauss", "two_hot", "mse")  # wmrl.models.scalar_heads
TARGET_RETURNS = ("best", "absolute")
ACTION_CHOICES = ("greedy", "sampled")
CHANNEL_LAYOUTS = ("union", "pad")  # how grid channels of different games share model inputs
ACCELERATORS = ("cpu", "gpu", "auto")
STRATEGIES = ("auto", "ddp")


class ConfigError(ValueError):
    """A configuration layer does not fit the schema; the message names the key path."""


@dataclass(frozen=True)
class PeerAlgorithm:
    """A d3rlpy algorithm a peer method may name (`finetune.methods.<name>.peer`)."""

    d3rlpy_class: str  # d3rlpy.algos.<d3rlpy_class>, configured by d3rlpy.algos.<d3rlpy_class>Config
    settings: dict[str, type]  # the config's fields `settings` may override, with their types


# The scalar fields of d3rlpy 2.8.1's configs (the encoder is chosen per observation kind by
# wmrl.peers.d3rlpy). Static, so that composing the config never imports d3rlpy;
# tests/test_peers.py checks them against d3rlpy's dataclasses.
PEER_ALGORITHMS = {
    "discrete_cql": PeerAlgorithm("DiscreteCQL", {"learning_rate": float, "batch_size": int, "gamma": float,
                                                  "n_critics": int, "target_update_interval": int, "alpha": float}),
    "discrete_bc": PeerAlgorithm("DiscreteBC", {"learning_rate": float, "batch_size": int, "beta": float}),
    # max_timestep is set from the training episodes (the longest + 1), context_size is finetune.window
    "discrete_dt": PeerAlgorithm("DiscreteDecisionTransformer", {
        "learning_rate": float, "batch_size": int, "num_heads": int, "num_layers": int, "attn_dropout": float,
        "resid_dropout": float, "embed_dropout": float, "warmup_tokens": int}),
}

# --------------------------------------------------------------------------- schema


@dataclass
class RandomPolicyConfig:
    """Uniform random behaviour policy."""

    steps: int = 10_000  # environment steps (= transitions) to record


@dataclass
class DQNPolicyConfig:
    """Online DQN behaviour agent (stable-baselines3); every transition it experiences is recorded.

    Defaults follow the MinAtar paper's DQN (Young & Tian 2019) as measured in
    ``shared/notes/minatar-dqn.md``: Adam 2.5e-4, replay 100k, batch 32, target update every 1k
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
class DatasetConfig:
    """Offline behaviour datasets, one per (task, policy, seed); see docs/architecture.md, "Data contracts"."""

    policies: list[str] = field(default_factory=lambda: list(POLICIES))
    seeds: list[int] = field(default_factory=lambda: [0])
    shard_rows: int = 100_000  # target rows per Parquet shard (episodes are never split)
    random: RandomPolicyConfig = field(default_factory=RandomPolicyConfig)
    dqn: DQNPolicyConfig = field(default_factory=DQNPolicyConfig)
    # "minari:<id>": the data is that local Minari dataset (MINARI_DATASETS_PATH), imported, not
    # generated; each (policy, seed) dataset of the task is then the same import (the policy and seed
    # settings only name it; `policies: [dqn]` imports it once) and the task must set score.random
    # and score.reference, which no behaviour policy of ours can give
    source: Optional[str] = None


@dataclass
class ModelConfig:
    """The world-action model's architecture (see wmrl.models.world_model)."""

    backbone: str = "transformer"  # transformer | gtrxl (gated transformer) | gru | ssm
    dim: int = 128  # token width
    layers: int = 2
    heads: int = 4  # attention heads (transformer)
    state_size: int = 16  # SSM state per channel of a head
    # how the reward, value and Q heads learn their scalars (wmrl.models.scalar_heads): hl_gauss |
    # two_hot (classification over `bins` bins of the symlog support) | mse (regression on symlog targets)
    value_loss: str = "hl_gauss"
    bins: int = 51  # histogram bins of the reward, value and Q heads
    support: float = 6.0  # histogram support [-support, support] in symlog space (|x| up to ~400)


@dataclass
class SizeConfig:
    """One model size of the scaling curve: overrides of `pretrain.model`."""

    dim: int = 128
    layers: int = 2
    heads: int = 4


@dataclass
class LossConfig:
    """Weights of the joint objective (math in wmrl.rl.objectives)."""

    next_obs: float = 1.0
    reward: float = 1.0
    termination: float = 1.0
    td: float = 1.0
    # CQL regularizer weight (Kumar et al. 2020). HL-Gauss makes the TD term stiff (a cross-entropy:
    # a target off by d in symlog space costs ~ d^2 / (2 sigma^2), sigma = 0.75 bin width), so alpha
    # must be larger than with a Huber TD loss: at 0.1 the Q-values of all actions stay equal
    cql_alpha: float = 1.0
    gamma: float = 0.99
    td_to_backbone: bool = True  # False: TD/CQL gradients stop at the backbone's features


@dataclass
class TrainerConfig:
    """Where a training job runs (Lightning Trainer arguments). The section's `batch_size` is the
    global batch: with W = devices x num_nodes processes, each takes its 1/W share of every step's
    windows, so a DDP run trains on the same windows per step as one process. On SLURM, a job with
    W > 1 needs W tasks (the profile's `tasks`) for Lightning to take the processes from SLURM."""

    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: int = 1  # processes per node: GPUs, or CPU processes (gloo)
    num_nodes: int = 1
    strategy: str = "auto"  # auto (one process) | ddp (DistributedDataParallel: nccl on GPUs, gloo on CPU)
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed on GPUs


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
    """The fine-tuning data: one contiguous slice of a held-out task's behaviour data (whole
    episodes from its start, the last one cut at exactly `transitions`)."""

    policy: str = "dqn"  # which behaviour dataset the slice is taken from
    seed: int = 0  # ... and which of its seeds
    transitions: int = 5_000
    start: float = 1.0  # where in the replay it begins: 0 = its first steps, 1 = as late as it fits


@dataclass
class LoraConfig:
    """Low-rank adapters (LoRA, Hu et al. 2022) through the `peft` library: every linear layer of the
    backbone named in `target_modules` computes W x + (alpha / rank) B A x with A (rank x in), B
    (out x rank, zero at the start) trained and W frozen; so is everything else, but the modules in
    `trainable`. The adapters are merged into W when the model is saved."""

    rank: int = 4
    alpha: float = 8.0
    target_modules: list[str] = field(default_factory=lambda: ["qkv", "proj"])  # the transformer's attention
    # trained in full: the new parts, and (LaMo's choice: it trains its input embeddings) the encoder,
    # which has never seen the held-out game's frames (frozen, laptop breakout stayed at -0.04)
    trainable: list[str] = field(default_factory=lambda: ["encoder", "return_embedding", "action_head"])


@dataclass
class DecisionConfig:
    """A return-conditioned (Decision Transformer) method's model and loss (math in wmrl.rl.rcsl)."""

    action_head: str = "linear"  # linear | fourier (Gillman et al. 2024)
    frequencies: int = 2  # fourier: frequencies N of the density, at most half the model's actions (Nyquist)
    fourier_regularizer: float = 1e-4  # fourier: weight of the smoothness penalty sum_k k^2 |c_k|^2
    next_obs: float = 0.0  # MO-DT auxiliary weights: predict the next observation ...
    reward: float = 0.0  # ... and the reward (the return-to-go's step R_{t+1} = R_t - r_t)
    lora: Optional[LoraConfig] = None  # null: every parameter is trained


@dataclass
class MethodConfig:
    """A fine-tuning method. `pretrained`/`scratch` fine-tune the world-action model with its joint
    loss (from the pretrained weights or a random init); `online` is stable-baselines3 DQN trained
    in the real environment for as many steps as the few-shot data has transitions; `peer` is a
    d3rlpy algorithm (`peer`, with `settings` overriding its d3rlpy config) trained on the same
    few-shot training episodes for the same `finetune.steps` gradient steps (wmrl.peers.d3rlpy)."""

    init: str = "scratch"  # pretrained | scratch | online | peer
    objective: str = "joint"  # pretrained | scratch: joint (TD + world model) | dt (return-conditioned)
    loss: dict[str, Any] = field(default_factory=dict)  # objective joint: overrides of `pretrain.loss`
    decision: DecisionConfig = field(default_factory=DecisionConfig)  # objective dt
    learning_rate: Optional[float] = None  # pretrained | scratch: overrides `finetune.learning_rate`
    # init scratch: overrides of `pretrain.model` (e.g. value_loss: mse); a pretrained model keeps its own
    model: dict[str, Any] = field(default_factory=dict)
    peer: Optional[str] = None  # init peer: the d3rlpy algorithm, discrete_cql | discrete_bc | discrete_dt
    settings: dict[str, Any] = field(default_factory=dict)  # init peer: overrides of its d3rlpy config


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
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    methods_run: list[str] = field(default_factory=lambda: ["pretrained", "scratch", "bc", "dqn_online", "d3rlpy_cql",
                                                            "d3rlpy_bc"])
    methods: dict[str, MethodConfig] = field(default_factory=lambda: {
        # few-shot data of one good behaviour policy: strongly conservative (alpha 10), close to
        # behaviour cloning where TD cannot tell the actions apart
        "pretrained": MethodConfig(init="pretrained", loss={"cql_alpha": 10.0}),
        "scratch": MethodConfig(init="scratch", loss={"cql_alpha": 10.0}),
        # behaviour cloning: the CQL term alone is cross-entropy of softmax(Q) on the data's actions
        "bc": MethodConfig(init="scratch", loss={"next_obs": 0.0, "reward": 0.0, "termination": 0.0, "td": 0.0,
                                                 "cql_alpha": 1.0}),
        "dqn_online": MethodConfig(init="online"),
        # d3rlpy peers; DiscreteCQL with the best setting measured on laptop breakout (its defaults,
        # lr 6.25e-5 and a target copy every 8,000 steps, leave the target random for short runs)
        "d3rlpy_cql": MethodConfig(init="peer", peer="discrete_cql", settings={
            "learning_rate": 2.5e-4, "alpha": 1.0, "target_update_interval": 100, "batch_size": 32}),
        "d3rlpy_bc": MethodConfig(init="peer", peer="discrete_bc", settings={"learning_rate": 1e-3, "batch_size": 100}),
        # return-conditioned fine-tuning (Decision Transformer) from scratch and from the pretrained model
        # (LaMo's initialization), in full, through LoRA adapters (LaMo, PASTA), with MO-DT's auxiliary
        # predictions, with a Fourier action head; and d3rlpy's DT on the same windows (16 x 8 steps)
        "dt_scratch": MethodConfig(init="scratch", objective="dt"),
        "dt_pretrained": MethodConfig(init="pretrained", objective="dt"),
        "dt_pretrained_lora": MethodConfig(init="pretrained", objective="dt",
                                           decision=DecisionConfig(lora=LoraConfig())),
        # PASTA's budget (< 10k trained parameters): adapters and the new parts alone, the encoder frozen
        "dt_pretrained_lora_heads": MethodConfig(init="pretrained", objective="dt", decision=DecisionConfig(
            lora=LoraConfig(trainable=["return_embedding", "action_head"]))),
        "dt_pretrained_modt": MethodConfig(init="pretrained", objective="dt",
                                           decision=DecisionConfig(next_obs=1.0, reward=1.0)),
        "dt_pretrained_fourier": MethodConfig(init="pretrained", objective="dt",
                                              decision=DecisionConfig(action_head="fourier")),
        "d3rlpy_dt": MethodConfig(init="peer", peer="discrete_dt", settings={
            "learning_rate": 1e-3, "batch_size": 16, "num_layers": 2, "num_heads": 4}),
    })
    online: DQNPolicyConfig = field(default_factory=lambda: DQNPolicyConfig(
        learning_starts=500, buffer_size=5_000, target_update_interval=250, exploration_steps=2_500,
        train_freq=1, eval_episodes=0))


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


@dataclass
class ClaimConfig:
    """A claim the report tests, stated before the run: `method` beats `baseline` (read like the
    headline: same checkpoint and planning setting, the same verdict rule)."""

    claim: str = "???"
    method: str = "???"
    baseline: str = "???"
    model: Optional[str] = None  # e.g. "small-transformer": both at that model (default: each one's best)


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


ICRL_FAMILIES = ("bandit", "darkroom")
ICRL_BACKBONES = BACKBONES


@dataclass
class IcrlModelConfig:
    """The Decision-Pretrained Transformer's width and optimizer (`wmrl.models.dpt.DPTConfig`; DPT's
    sizes by default); the backbone comes from `icrl.pretrain.backbones`."""

    dim: int = 32
    layers: int = 4
    heads: int = 1
    state_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 64


@dataclass
class IcrlPretrainConfig:
    """Supervised pretraining of DPT (one job per backbone x seed), through `wmrl.train.loop.fit`."""

    backbones: list[str] = field(default_factory=lambda: ["transformer"])  # transformer | ssm (S4-ICRL) | gru
    seeds: list[int] = field(default_factory=lambda: [0])
    steps: int = 2_000
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
class IcrlConfig:
    """In-context RL (issue 13): DPT pretrained on many tasks' histories, evaluated on held-out tasks
    against the bandit baselines and the oracle. An experiment that sets this section runs the ICRL
    DAG (histories -> pretrain -> evaluate -> report) instead of the world-model one."""

    family: str = "bandit"  # bandit | darkroom
    arms: int = 5  # bandit: K
    horizon: int = 500  # bandit: pulls per task (= DPT's context H); Dark Room: steps per episode and context
    noise_variance: float = 0.3  # bandit: reward variance (DPT's code uses 0.3 as the standard deviation)
    train_tasks: int = 100_000  # bandit: training tasks (arm means drawn with task_seed)
    heldout_seed: int = 1_000_003  # bandit: held-out tasks' means are drawn with this seed instead
    task_seed: int = 0  # bandit: the training tasks' seed; Dark Room: the goal split's seed
    heldout_goals: int = 20  # Dark Room: goals held out of the 100 (DPT: 80 train / 20 held out)
    histories_per_task: int = 1  # pretraining histories per training task
    data_seeds: list[int] = field(default_factory=lambda: [0])  # one history dataset per seed
    pretrain: IcrlPretrainConfig = field(default_factory=IcrlPretrainConfig)
    evaluate: IcrlEvaluateConfig = field(default_factory=IcrlEvaluateConfig)


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


# --------------------------------------------------------------------------- composition


def compose(overrides: dict[str, Any] | None = None, root: Path | str = ".") -> DictConfig:
    """Compose and validate the configuration; `overrides` is Snakemake's ``config`` dict. Layers,
    each over the last: the schema's defaults, config/config.yaml, the experiment (and those it
    extends), the scale, the experiment's own `scales.<scale>` section, the user's overrides. A scale
    file may name the experiment it runs unless the user names one (`paper`: jowa_atari)."""
    root = Path(root)
    overrides = dict(overrides or {})
    cfg = OmegaConf.structured(Config)
    cfg = _merge(cfg, _load_yaml(root / "config" / "config.yaml"), "config/config.yaml")
    # The user's choice of experiment and scale decides which overlay files are read.
    for key in ("experiment", "scale"):
        if key in overrides:
            cfg = _merge(cfg, {key: overrides[key]}, "--config")
    scale = _load_yaml(_overlay(root, "scale", cfg.scale))
    default_experiment = scale.pop("experiment", None)
    if default_experiment is not None and "experiment" not in overrides:
        cfg = _merge(cfg, {"experiment": default_experiment}, f"config/scales/{cfg.scale}.yaml")
    per_scale = []  # an experiment's own settings at some scales (`scales: {laptop: {...}}`), over the scale file
    for name, layer in _experiment_layers(root, cfg.experiment):
        per_scale.append((name, (layer.pop("scales", None) or {}).get(cfg.scale, {})))
        cfg = _merge(cfg, layer, f"config/experiments/{name}.yaml")
    icrl_sizes = scale.pop("icrl", None) or {}  # {family: sizes}: only for an experiment that sets `icrl`
    cfg = _merge(cfg, scale, f"config/scales/{cfg.scale}.yaml")
    for name, layer in per_scale:
        cfg = _merge(cfg, layer, f"config/experiments/{name}.yaml (scales.{cfg.scale})")
    if cfg.icrl is not None:
        unknown = [family for family in icrl_sizes if family not in ICRL_FAMILIES]
        if unknown:
            raise ConfigError(f"config error in config/scales/{cfg.scale}.yaml: 'icrl' holds sizes per family "
                              f"({', '.join(ICRL_FAMILIES)}), got {unknown}")
        cfg = _merge(cfg, {"icrl": icrl_sizes.get(cfg.icrl.family, {})}, f"config/scales/{cfg.scale}.yaml",
                     prefix="")
    cfg = _merge(cfg, overrides, "--configfile/--config")
    for name, task in cfg.tasks.items():  # each task's dataset section, resolved once: DAG helpers read it often
        task.dataset = to_plain(_merge(OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg.dataset),
                                       task.dataset, f"tasks.{name}.dataset", prefix=f"tasks.{name}.dataset"))
    _check_semantics(cfg)
    return cfg


def _experiment_layers(root: Path, name: str) -> list[tuple[str, dict[str, Any]]]:
    """An experiment file and the ones it `extends` (a key of its own: the experiment it builds on),
    the base first: a file restates only what differs from its base (lists replace, not append)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    while name is not None:
        if name in [seen for seen, _ in layers]:
            raise ConfigError(f"config error: experiments extend each other in a cycle: "
                              f"{' -> '.join([seen for seen, _ in layers] + [name])}")
        layer = _load_yaml(_overlay(root, "experiment", name))
        layers.append((name, layer))
        name = layer.pop("extends", None)
    return layers[::-1]


def _overlay(root: Path, key: str, name: str) -> Path:
    """The overlay file of an experiment or a scale; an unknown name fails, listing the known ones."""
    path = root / "config" / {"experiment": "experiments", "scale": "scales"}[key] / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"config error: unknown {key} {name!r} (no {path}); known: {', '.join(known)}")
    return path


def task_dataset(cfg: DictConfig, task: str) -> DictConfig:
    """The `dataset` section as it applies to `task`: the global one with the task's overrides
    (resolved by `compose`)."""
    return cfg.tasks[task].dataset


def to_plain(node: Any) -> Any:
    """A config node as plain Python containers (for JSON params and MLflow)."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def code_hash(*subpackages: str) -> str:
    """Hash of the source of the given `wmrl` subpackages ("envs") and modules ("data/writer"):
    a rule's rerun trigger."""
    digest = hashlib.sha256()
    for name in sorted(subpackages):
        path = PACKAGE_DIR / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for file in files:
            digest.update(str(file.relative_to(PACKAGE_DIR)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------- validation


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # yaml syntax errors come in several types
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded


def _merge(cfg: DictConfig, layer: Any, source: str, prefix: str = "") -> DictConfig:
    try:
        return OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc, source, prefix)) from None


def _explain(exc: OmegaConfBaseException, source: str, prefix: str) -> str:
    """Turn an OmegaConf merge error into one line naming the key path and what is allowed."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    path = f"{prefix}.{key}" if prefix else str(key)
    parent_type = getattr(exc, "object_type", None)
    head = f"config error in {source}: "
    if "not in" in str(exc) and dataclasses.is_dataclass(parent_type):
        allowed = ", ".join(f.name for f in dataclasses.fields(parent_type))
        leaf = str(getattr(exc, "key", ""))
        parent = path[: -len(leaf) - 1] if path.endswith("." + leaf) else ""
        hint = " (nested overrides go in a --configfile, not --config a.b=...)" if "." in leaf else ""
        return f"{head}unknown key '{path}'; allowed keys under '{parent or '<top level>'}': {allowed}{hint}"
    expected = _expected_type(parent_type, str(getattr(exc, "key", "")))
    value = getattr(exc, "value", None)
    if expected:
        return f"{head}'{path}' must be {expected}, got {value!r} ({type(value).__name__})"
    return f"{head}'{path}': {str(exc).splitlines()[0]}"


def _expected_type(parent_type: Any, key: str) -> str | None:
    if dataclasses.is_dataclass(parent_type):
        for f in dataclasses.fields(parent_type):
            if f.name == key:
                return str(f.type)
    return None


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


def _check_semantics(cfg: DictConfig) -> None:
    """Checks that need more than one key: the split, policy names, per-task overrides. An ICRL
    experiment (`icrl` set) has no world-model tasks: its own section is checked instead."""
    if cfg.icrl is not None:
        _check_icrl(cfg)
        return
    if OmegaConf.is_missing(cfg, "suite"):
        raise ConfigError(f"config error: 'suite' is missing (experiment {cfg.experiment!r} should name it)")
    if not cfg.tasks:
        raise ConfigError(f"config error: experiment {cfg.experiment!r} defines no tasks")
    for name, task in cfg.tasks.items():
        if OmegaConf.is_missing(task, "env"):
            raise ConfigError(f"config error: 'tasks.{name}.env' is missing (e.g. minatar:breakout or CartPole-v1)")
        bad = [p for p in task_dataset(cfg, name).policies if p not in POLICIES]
        if bad:
            raise ConfigError(f"config error: 'tasks.{name}' policies {bad} unknown; allowed: {', '.join(POLICIES)}")
        _check_source(name, task, task_dataset(cfg, name).source)
    for key in ("source_tasks", "heldout_tasks"):
        unknown = [t for t in cfg[key] if t not in cfg.tasks]
        if unknown:
            raise ConfigError(f"config error: '{key}' names tasks not in 'tasks': {unknown}; tasks: {list(cfg.tasks)}")
    leaked = set(cfg.source_tasks) & set(cfg.heldout_tasks)
    if leaked:
        raise ConfigError(f"config error: held-out tasks {sorted(leaked)} are also source tasks")
    pretrain = cfg.pretrain
    for size in pretrain.sizes_run:
        if size not in pretrain.sizes:
            raise ConfigError(f"config error: 'pretrain.sizes_run' names {size!r}; sizes: {list(pretrain.sizes)}")
    for backbone in pretrain.backbones:
        if backbone not in BACKBONES:
            raise ConfigError(f"config error: 'pretrain.backbones' names {backbone!r}; "
                              f"allowed: {', '.join(BACKBONES)}")
    _check_model(pretrain.model, "pretrain.model")
    if pretrain.channel_layout not in CHANNEL_LAYOUTS:
        raise ConfigError(f"config error: 'pretrain.channel_layout' must be one of {', '.join(CHANNEL_LAYOUTS)}, "
                          f"got {pretrain.channel_layout!r}")
    for task in cfg.source_tasks:
        missing = [p for p in pretrain.policies if p not in task_dataset(cfg, task).policies]
        if missing:
            raise ConfigError(f"config error: 'pretrain.policies' {missing} are not generated for source task {task!r}")
    finetune = cfg.finetune
    for section in ("pretrain", "finetune"):
        _check_trainer(cfg[section], section)
    for name in finetune.methods_run:
        if name not in finetune.methods:
            raise ConfigError(f"config error: 'finetune.methods_run' names {name!r}; methods: {list(finetune.methods)}")
    for name, method in finetune.methods.items():
        if method.init not in INITS:
            raise ConfigError(f"config error: 'finetune.methods.{name}.init' must be one of {', '.join(INITS)}, "
                              f"got {method.init!r}")
        _merge(OmegaConf.structured(LossConfig), method.loss, f"finetune.methods.{name}.loss",
               prefix=f"finetune.methods.{name}.loss")
        if method.model and method.init != "scratch":
            raise ConfigError(f"config error: 'finetune.methods.{name}.model' applies to init scratch only (a "
                              f"pretrained model keeps the architecture it was pretrained with), not to init {method.init}")
        where = f"finetune.methods.{name}.model"
        model = OmegaConf.merge(OmegaConf.structured(ModelConfig), pretrain.model)  # a root: keys name themselves
        _check_model(_merge(model, method.model, where, prefix=where), where)
        if method.learning_rate is not None and method.init not in ("pretrained", "scratch"):
            raise ConfigError(f"config error: 'finetune.methods.{name}.learning_rate' applies to init pretrained "
                              f"or scratch, not to init {method.init}")
        _check_peer(name, method, finetune, name in finetune.methods_run)
        _check_decision(name, method)
    if finetune.window > pretrain.window:
        raise ConfigError(f"config error: 'finetune.window' ({finetune.window}) exceeds 'pretrain.window' "
                          f"({pretrain.window}), the model's positions")
    if not 0.0 <= finetune.data.start <= 1.0:
        raise ConfigError(f"config error: 'finetune.data.start' must be in [0, 1], got {finetune.data.start}")
    for task in cfg.heldout_tasks:
        dataset = task_dataset(cfg, task)
        if finetune.data.policy not in dataset.policies or finetune.data.seed not in dataset.seeds:
            raise ConfigError(f"config error: 'finetune.data' asks for the {finetune.data.policy!r} dataset of seed "
                              f"{finetune.data.seed} of held-out task {task!r}, which is not generated "
                              f"(policies {list(dataset.policies)}, seeds {list(dataset.seeds)})")
        if dataset.source is None and finetune.data.transitions > dataset[finetune.data.policy].steps:
            raise ConfigError(f"config error: 'finetune.data.transitions' ({finetune.data.transitions}) exceeds the "
                              f"{dataset[finetune.data.policy].steps} steps of {task!r}'s {finetune.data.policy} data")
    for name, task in cfg.tasks.items():
        policies = task_dataset(cfg, name).policies
        for score, policy in (("random", "random"), ("reference", "dqn")):
            if task.score[score] is None and policy not in policies:
                raise ConfigError(f"config error: 'tasks.{name}.score.{score}' is null, so it would come from the "
                                  f"task's {policy} data, which is not generated: set it, or generate {policy} data")
    compare = cfg.report.compare
    for key in ("method", "baseline"):
        if compare[key] not in finetune.methods_run:
            raise ConfigError(f"config error: 'report.compare.{key}' names {compare[key]!r}, which is not run; "
                              f"finetune.methods_run: {list(finetune.methods_run)}")
    models = [f"{size}-{backbone}" for size in pretrain.sizes_run for backbone in pretrain.backbones]
    for index, claim in enumerate(cfg.report.claims):
        for key in ("method", "baseline"):
            if claim[key] not in finetune.methods_run:
                raise ConfigError(f"config error: 'report.claims[{index}].{key}' names {claim[key]!r}, which is not "
                                  f"run; finetune.methods_run: {list(finetune.methods_run)}")
        if claim.model is not None and claim.model not in models:
            raise ConfigError(f"config error: 'report.claims[{index}].model' names {claim.model!r}, which is not "
                              f"trained; models: {models}")
    for name in cfg.report.variants:
        if name not in finetune.methods_run:
            raise ConfigError(f"config error: 'report.variants' names {name!r}, which is not run; "
                              f"finetune.methods_run: {list(finetune.methods_run)}")
    for name, target in [("evaluate", cfg.evaluate.target_return)] + [
            (f"tasks.{task}", cfg.tasks[task].target_return) for task in cfg.tasks]:
        if target is not None and target.mode not in TARGET_RETURNS:
            raise ConfigError(f"config error: '{name}.target_return.mode' must be one of {', '.join(TARGET_RETURNS)}, "
                              f"got {target.mode!r}")
    if cfg.evaluate.decision_actions not in ACTION_CHOICES:
        raise ConfigError(f"config error: 'evaluate.decision_actions' must be one of {', '.join(ACTION_CHOICES)}, "
                          f"got {cfg.evaluate.decision_actions!r}")
    if compare.checkpoint not in ("last", "best"):
        raise ConfigError(f"config error: 'report.compare.checkpoint' must be last or best, got {compare.checkpoint!r}")
    for name, reach in (("world_model_horizon", cfg.evaluate.world_model_horizon),
                        ("memory_probe_delays", max(cfg.evaluate.memory_probe_delays, default=0))):
        if reach > pretrain.window:
            raise ConfigError(f"config error: 'evaluate.{name}' reaches {reach} steps, beyond 'pretrain.window' "
                              f"({pretrain.window}), the pretrained model's positions")
    if min(list(cfg.evaluate.memory_probe_delays) + list(cfg.evaluate.context_windows) + [1]) < 1:
        raise ConfigError("config error: 'evaluate.memory_probe_delays' and 'evaluate.context_windows' must be >= 1")
    if cfg.evaluate.planning.horizon >= finetune.window:
        raise ConfigError(f"config error: 'evaluate.planning.horizon' must be below 'finetune.window' "
                          f"({finetune.window}): the plan extends the model's context")


def _check_model(model: DictConfig, where: str) -> None:
    if model.value_loss not in VALUE_LOSSES:
        raise ConfigError(f"config error: '{where}.value_loss' must be one of {', '.join(VALUE_LOSSES)}, "
                          f"got {model.value_loss!r}")


def _check_icrl(cfg: DictConfig) -> None:
    """The ICRL section: one ConfigError naming every problem found."""
    icrl, problems = cfg.icrl, []
    if icrl.family not in ICRL_FAMILIES:
        problems.append(f"'icrl.family' must be one of {', '.join(ICRL_FAMILIES)}, got {icrl.family!r}")
    bad = [b for b in icrl.pretrain.backbones if b not in ICRL_BACKBONES]
    if bad or not icrl.pretrain.backbones:
        problems.append(f"'icrl.pretrain.backbones' must name some of {', '.join(ICRL_BACKBONES)}, got "
                        f"{list(icrl.pretrain.backbones)}")
    for key, value, least in (("arms", icrl.arms, 2), ("horizon", icrl.horizon, 1),
                              ("train_tasks", icrl.train_tasks, 1), ("histories_per_task", icrl.histories_per_task, 1),
                              ("pretrain.steps", icrl.pretrain.steps, 1), ("evaluate.tasks", icrl.evaluate.tasks, 1),
                              ("evaluate.episodes", icrl.evaluate.episodes, 1),
                              ("pretrain.model.batch_size", icrl.pretrain.model.batch_size, 1)):
        if value < least:
            problems.append(f"'icrl.{key}' must be at least {least}, got {value}")
    if icrl.noise_variance <= 0:
        problems.append(f"'icrl.noise_variance' must be positive, got {icrl.noise_variance}")
    if icrl.family == "bandit" and icrl.heldout_seed == icrl.task_seed:
        problems.append("'icrl.heldout_seed' must differ from 'icrl.task_seed': held-out bandits would be the "
                        "training ones")
    if icrl.family == "darkroom":
        if not 1 <= icrl.heldout_goals < 100:
            problems.append(f"'icrl.heldout_goals' must be in 1..99 (of the 100 goals), got {icrl.heldout_goals}")
        elif icrl.evaluate.tasks > icrl.heldout_goals:
            problems.append(f"'icrl.evaluate.tasks' ({icrl.evaluate.tasks}) exceeds the {icrl.heldout_goals} "
                            f"held-out goals")
    if not icrl.evaluate.seeds or not icrl.pretrain.seeds or not icrl.data_seeds:
        problems.append("'icrl.evaluate.seeds', 'icrl.pretrain.seeds' and 'icrl.data_seeds' must not be empty")
    if not 0.0 <= icrl.pretrain.holdout_fraction < 1.0:
        problems.append(f"'icrl.pretrain.holdout_fraction' must be in [0, 1), got {icrl.pretrain.holdout_fraction}")
    if problems:
        raise ConfigError(f"config error in experiment {cfg.experiment!r}: " + "; ".join(problems))
    _check_trainer(OmegaConf.create({"trainer": icrl.pretrain.trainer,
                                     "batch_size": icrl.pretrain.model.batch_size}), "icrl.pretrain")


def _check_decision(name: str, method: DictConfig) -> None:
    """A return-conditioned method fine-tunes our model (init pretrained or scratch), sets no joint
    loss weights and names a known action head."""
    key = f"finetune.methods.{name}"
    if method.objective not in OBJECTIVES:
        raise ConfigError(f"config error: '{key}.objective' must be one of {', '.join(OBJECTIVES)}, "
                          f"got {method.objective!r}")
    decision = method.decision
    if method.objective != "dt":
        if decision != OmegaConf.structured(DecisionConfig):
            raise ConfigError(f"config error: '{key}.decision' applies to objective dt, not {method.objective}")
        return
    if method.init not in ("pretrained", "scratch"):
        raise ConfigError(f"config error: '{key}.objective' dt fine-tunes our model (init pretrained or scratch), "
                          f"not init {method.init}; a d3rlpy Decision Transformer is init peer, peer discrete_dt")
    if method.loss:
        raise ConfigError(f"config error: '{key}.loss' weights the joint objective; objective dt takes "
                          f"'{key}.decision' (next_obs, reward)")
    if decision.action_head not in ACTION_HEADS:
        raise ConfigError(f"config error: '{key}.decision.action_head' must be one of {', '.join(ACTION_HEADS)}, "
                          f"got {decision.action_head!r}")
    if decision.frequencies < 1:
        raise ConfigError(f"config error: '{key}.decision.frequencies' must be at least 1, got {decision.frequencies}")
    if decision.lora is not None and decision.lora.rank < 1:
        raise ConfigError(f"config error: '{key}.decision.lora.rank' must be at least 1, got {decision.lora.rank}")


def _check_peer(name: str, method: DictConfig, finetune: DictConfig, run: bool) -> None:
    """A peer method names a known algorithm and only settings of its d3rlpy config; the other
    methods carry no peer fields. A peer that runs trains exactly `finetune.steps` steps in epochs
    of `validate_every` steps (its curve's points), so those must divide them."""
    key = f"finetune.methods.{name}"
    if method.init != "peer":
        if method.peer is not None or method.settings:
            raise ConfigError(f"config error: '{key}.peer' and '{key}.settings' apply to init peer only, "
                              f"not to init {method.init}")
        return
    if method.peer not in PEER_ALGORITHMS:
        raise ConfigError(f"config error: '{key}.peer' must be one of {', '.join(PEER_ALGORITHMS)}, "
                          f"got {method.peer!r}")
    if method.loss:
        raise ConfigError(f"config error: '{key}.loss' does not apply to a peer (its loss is d3rlpy's); "
                          f"set '{key}.settings'")
    allowed = PEER_ALGORITHMS[method.peer].settings
    for setting, value in method.settings.items():
        if setting not in allowed:
            raise ConfigError(f"config error: unknown key '{key}.settings.{setting}'; allowed keys for peer "
                              f"{method.peer}: {', '.join(allowed)}")
        kind = allowed[setting]
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            raise ConfigError(f"config error: '{key}.settings.{setting}' must be {kind.__name__}, got {value!r} "
                              f"({type(value).__name__})")
    epoch = min(finetune.validate_every, finetune.steps)
    if run and (epoch < 1 or finetune.steps % epoch):
        raise ConfigError(f"config error: peer {name} trains 'finetune.steps' ({finetune.steps}) in epochs of "
                          f"'finetune.validate_every' ({finetune.validate_every}) steps, which must divide them")


def _check_trainer(section: DictConfig, name: str) -> None:
    trainer = section.trainer
    for key, allowed in (("accelerator", ACCELERATORS), ("strategy", STRATEGIES)):
        if trainer[key] not in allowed:
            raise ConfigError(f"config error: '{name}.trainer.{key}' must be one of {', '.join(allowed)}, "
                              f"got {trainer[key]!r}")
    processes = trainer.devices * trainer.num_nodes
    if processes < 1:
        raise ConfigError(f"config error: '{name}.trainer' devices x num_nodes must be at least 1, got {processes}")
    if processes > 1 and trainer.strategy != "ddp":
        raise ConfigError(f"config error: '{name}.trainer' runs {processes} processes: set strategy: ddp")
    if section.batch_size % processes:
        raise ConfigError(f"config error: '{name}.batch_size' ({section.batch_size}) must divide evenly among "
                          f"the {processes} processes of '{name}.trainer' (devices x num_nodes)")
