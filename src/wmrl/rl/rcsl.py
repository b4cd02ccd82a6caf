"""Return-conditioned supervised learning: the Decision Transformer's objective (Chen et al. 2021),
with MO-DT's auxiliary predictions, on windows of K steps.

For every real transition t of a window (mask m_t = 1), with R_t the return-to-go of the data
(undiscounted, within the episode as the data holds it: `wmrl.data.windows.returns_to_go`):

* action      L_a    = -log pi(a_t | R_<=t, o_<=t, a_<t)   (the policy read at o_t)
* next obs    L_obs  = the world model's next-observation loss of o_{t+1}, read at a_t
* reward      L_rew  = CE(HL-Gauss(symlog r_t), reward logits at a_t); with R_t in the context this
                       is the return's step, R_{t+1} = R_t - r_t
* Fourier     L_F    = sum_k k^2 |c_k / c_0|^2 of the Fourier head's density (Gillman et al. 2024)

L = L_a + w_obs L_obs + w_rew L_rew + w_F L_F, each a mean over real transitions. At evaluation
the agent is given a target return R_0 and sets R_{t+1} = R_t - r_t with the rewards it receives.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wmrl.models.config import DecisionConfig
from wmrl.models.decision_transformer import DecisionTransformer, FourierHead
from wmrl.models.scalar_heads import symlog
from wmrl.models.world_model import next_obs_loss


def decision_loss(model: DecisionTransformer, batch: dict[str, torch.Tensor], weights: DecisionConfig
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss of a batch of windows and its parts (detached, for logging)."""
    obs, actions, task, mask = batch["obs"], batch["actions"], batch["task"], batch["mask"].float()
    out = model(obs, actions, batch["return_to_go"], task)

    def masked_mean(per_step: torch.Tensor) -> torch.Tensor:
        return (per_step * mask).sum() / mask.sum().clamp(min=1.0)

    logits = out["policy"]
    parts = {"action": masked_mean(F.cross_entropy(logits.flatten(0, 1), actions.flatten(), reduction="none")
                                   .view_as(mask))}
    loss = parts["action"]
    if weights.next_obs:
        parts["next_obs"] = masked_mean(next_obs_loss(out["next_obs"], obs[:, 1:], model.shape.obs_kind))
        loss = loss + weights.next_obs * parts["next_obs"]
    if weights.reward:
        parts["reward"] = masked_mean(model.scalar.loss(out["reward"], symlog(batch["reward"])))
        loss = loss + weights.reward * parts["reward"]
    if isinstance(model.action_head, FourierHead) and weights.fourier_regularizer:
        parts["fourier"] = masked_mean(model.action_head.smoothness(out["features"]))
        loss = loss + weights.fourier_regularizer * parts["fourier"]
    return loss, {name: value.detach() for name, value in parts.items()}
