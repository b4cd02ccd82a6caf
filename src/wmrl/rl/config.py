"""The joint objective's weights, free of torch (the math is in `wmrl.rl.objectives`)."""

from __future__ import annotations

from dataclasses import dataclass


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
