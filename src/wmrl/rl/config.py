"""The joint objective's weights, free of torch (the math is in `wmrl.rl.objectives`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


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
class ImagineConfig:
    """The imagination agent's actor-critic (math in wmrl.rl.imagination; DreamerV3's defaults
    where they carry over)."""

    # imagined steps per context (H); null: pretrain.window - 1 (15 at laptop, DreamerV3's rollout length)
    horizon: Optional[int] = None
    starts: int = 128  # rollouts per update (B), from replayed observations (DreamerV3: 16 x 64)
    # DreamerV3: 0.997. On CartPole (the positive control), with 45-step rollouts, 0.99 reached 500 by
    # 14k environment steps where 0.997 had reached 424 (seed 0, one probe each)
    gamma: float = 0.99
    lam: float = 0.95
    entropy: float = 3.0e-4  # eta
    actor_lr: float = 3.0e-4
    critic_lr: float = 3.0e-4
    critic_ema: float = 0.02  # the slow critic moves this far towards the critic every update
    scale_ema: float = 0.01  # the return scale S moves this far towards the batch's range every update
    hidden: int = 128  # the actor's and critic's width (DreamerV3's smallest: 256)
    # the critic's two-hot bins over symlog returns in [-support, support] (DreamerV3: 255 in [-20, 20];
    # returns here stay within symlog 10, and 63 bins make the critic 4x cheaper on CPU)
    bins: int = 63
    support: float = 10.0
    grad_clip: float = 100.0
    # contexts of H steps chained per imagined rollout (the context restarts from the latest imagined
    # observation, as the acting agent's does every H steps): rollouts of H x contexts steps. With one
    # (15 steps) the critic never learnt that CartPole's drift to the track's edge ends the episode
    # (its value 308 at 41 steps from the end) and no seed reached 475; with 3 (45 steps) it does
    contexts: int = 3
