"""The joint world-model + Q-learning objective of JOWA (Cheng et al. 2024), on windows of K steps.

For every real transition t of a window (mask m_t = 1), with s, a, r, d the observation, action,
reward and termination flag:

* next observation   L_obs  = per-cell Bernoulli cross-entropy of p(s_{t+1} | s_<=t, a_<=t)
* reward             L_rew  = CE(HL-Gauss(symlog r_t), reward logits)
* termination        L_term = Bernoulli cross-entropy of d_t
* TD (double DQN, van Hasselt et al. 2016, distributional by HL-Gauss, Farebrother et al. 2024)
      y_t    = r_t + gamma (1 - d_t) Qbar(s_{t+1}, argmax_a Q(s_{t+1}, a))
      L_td   = CE(HL-Gauss(symlog y_t), Q logits of (s_t, a_t)),
  Qbar the target network (a periodically copied twin of the model);
* value              L_v    = CE(HL-Gauss(symlog(r_t + gamma (1 - d_t) Vbar(s_{t+1}))), V logits of s_t),
  the behaviour policy's state value, a leaf estimate for planning;
* conservative Q (CQL(H), Kumar et al. 2020, discrete form)
      L_cql  = logsumexp_a Q(s_t, a) - Q(s_t, a_t),
  which pushes down the values of actions the data never took. In the discrete case this is
  exactly -log softmax_a(Q(s_t, a))[a_t], behaviour cloning read through the Q-values, so the
  weight alpha is also the knob for supervision on the data's actions.

L = w_obs L_obs + w_rew L_rew + w_term L_term + w_td (L_td + L_v) + alpha L_cql, each a mean over
real transitions. Actions a task does not have (tasks with fewer actions than the model's
widest task) take no part in the argmax or the logsumexp. With `td_to_backbone = False` the value
heads read detached features, so the backbone learns from the world-model losses alone. With
`model.value_loss` two_hot or mse, every CE(HL-Gauss(y), .) above is that head's loss instead
(wmrl.models.scalar_heads).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wmrl.models.scalar_heads import symlog
from wmrl.models.world_model import WorldActionModel, next_obs_loss
from wmrl.rl.config import LossConfig


def joint_loss(model: WorldActionModel, target: WorldActionModel, batch: dict[str, torch.Tensor],
               weights: LossConfig) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The joint loss of a batch of windows and its parts (detached, for logging). Only the terms
    with a weight are computed: without world-model weights the decoders do not run, without a TD
    weight neither does the target network."""
    obs, actions, task = batch["obs"], batch["actions"], batch["task"]
    reward, terminated, mask = batch["reward"], batch["terminated"].float(), batch["mask"].float()
    world = {"next_obs": weights.next_obs, "reward": weights.reward, "termination": weights.termination}
    out = model(obs, actions, task, detach_q=not weights.td_to_backbone, answers=any(world.values()))

    def masked_mean(per_step: torch.Tensor) -> torch.Tensor:
        return (per_step * mask).sum() / mask.sum().clamp(min=1.0)

    scalar, parts, loss = model.scalar, {}, torch.zeros(())
    if any(world.values()):
        parts["next_obs"] = masked_mean(next_obs_loss(out["next_obs"], obs[:, 1:], model.shape.obs_kind))
        parts["reward"] = masked_mean(scalar.loss(out["reward"], symlog(reward)))
        parts["termination"] = masked_mean(F.binary_cross_entropy_with_logits(out["termination"], terminated,
                                                                              reduction="none"))
        loss = loss + sum(weight * parts[name] for name, weight in world.items())
    taken = actions.unsqueeze(-1)
    q_logits = out["q"][:, :-1]  # (B, K, A, outputs): Q(s_t, .) for t < K
    if weights.td:
        with torch.no_grad():
            bootstrap = target(obs, actions, task, answers=False)
            best_next = model.q_values(out["q"][:, 1:], task).argmax(-1, keepdim=True)  # online argmax (double DQN)
            q_next = target.decode_scalar(bootstrap["q"][:, 1:]).gather(-1, best_next).squeeze(-1)
            v_next = target.decode_scalar(bootstrap["value"][:, 1:])
            q_target = reward + weights.gamma * (1.0 - terminated) * q_next
            v_target = reward + weights.gamma * (1.0 - terminated) * v_next
        taken_logits = q_logits.gather(2, taken.unsqueeze(-1).expand(-1, -1, 1, scalar.outputs)).squeeze(2)
        parts["td"] = masked_mean(scalar.loss(taken_logits, symlog(q_target)))
        parts["value"] = masked_mean(scalar.loss(out["value"][:, :-1], symlog(v_target)))
        loss = loss + weights.td * (parts["td"] + parts["value"])
    if weights.cql_alpha:
        q_all = model.q_values(q_logits, task)  # actions the task does not have are -inf: out of the logsumexp
        parts["cql"] = masked_mean(torch.logsumexp(q_all, -1) - q_all.gather(-1, taken).squeeze(-1))
        loss = loss + weights.cql_alpha * parts["cql"]
    return loss, {name: value.detach() for name, value in parts.items()}
