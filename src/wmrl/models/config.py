"""The architecture settings of our models, free of torch: the world-action model's
(`ModelConfig`), a return-conditioned method's (`DecisionConfig`, `LoraConfig`), and the names
`wmrl.models` implements. Composed into the pipeline's schema by `wmrl.config`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from omegaconf import DictConfig

from wmrl.typed import ConfigError

BACKBONES = ("transformer", "gtrxl", "gru", "ssm")  # wmrl.models.backbones
VALUE_LOSSES = ("hl_gauss", "two_hot", "mse")  # wmrl.models.scalar_heads
ACTION_HEADS = ("linear", "fourier")  # wmrl.models.decision_transformer
CHANNEL_LAYOUTS = ("union", "pad")  # how grid channels of different games share the model's inputs (data.windows)


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


def check_model(model: DictConfig, where: str) -> None:
    """What the schema cannot see of a model section (`where`: its key path)."""
    if model.value_loss not in VALUE_LOSSES:
        raise ConfigError(f"config error: '{where}.value_loss' must be one of {', '.join(VALUE_LOSSES)}, "
                          f"got {model.value_loss!r}")
