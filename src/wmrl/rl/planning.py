"""Planning at evaluation: beam search through the world-action model (JOWA, Cheng et al. 2024,
section 3.3), scored by predicted rewards and the Q-value at the leaves.

From the current context, a candidate "take a at depth d of beam b" scores

    S(b, a) = R_b + gamma^d * alive_b * Q(s_b, a),     R_b = sum_{i<d} gamma^i * alive * r_i,

the imagined n-step return of the beam so far plus the discounted Q-value of the next action.
Each depth keeps the `width` best candidates over all beams of an environment, lets the world
model answer them (predicted reward r, termination and next observation: the most likely grid),
and expands again; at the last depth the first action of the best candidate is taken. Horizon 1
is the greedy policy argmax_a Q(s, a). Actions the task does not have score -inf and are never
chosen. The same width and horizon serve every task: nothing is tuned on evaluation episodes.
"""

from __future__ import annotations

import torch

from wmrl.models.world_model import WorldActionModel


@torch.no_grad()
def beam_search(model: WorldActionModel, context: torch.Tensor, obs: torch.Tensor, task: torch.Tensor, width: int,
                horizon: int, gamma: float, obs_mask: torch.Tensor) -> torch.Tensor:
    """The planned action (B,) for contexts of tokens (B, 2n+1, dim) ending with an observation
    (`model.tokens`), that last observation `obs` (B, *obs_shape) and task (B,); `obs_mask`
    (*obs_shape) zeroes the parts of predicted observations the task does not have."""
    if horizon < 1 or width < 1:
        raise ValueError(f"beam search needs horizon >= 1 and width >= 1, got {horizon} and {width}")
    envs, n_actions = len(task), model.shape.actions
    features, state = model.start(context)
    q = model.q_values(model.value_heads(features)["q"], task).unsqueeze(1)  # (B, beams=1, A)
    ret = torch.zeros(envs, 1)
    alive = torch.ones(envs, 1, dtype=torch.bool)
    first = torch.zeros(envs, 1, dtype=torch.long)
    for depth in range(horizon - 1):
        kept_score, kept = candidate_scores(ret, alive, q, gamma**depth).topk(min(width, q.shape[1] * n_actions), 1)
        parent, action = kept // n_actions, kept % n_actions  # (B, k)
        beams = kept.shape[1]
        rows = (torch.arange(envs).unsqueeze(1) * q.shape[1] + parent).flatten()
        state = model.backbone.select_state(state, rows)
        beam_task = task.repeat_interleave(beams)
        features, state = model.advance(model.action_embedding(action.flatten()), state)
        answer = model.answer_heads(features, obs[rows], action.flatten())
        reward = model.decode_scalar(answer["reward"]).view(envs, beams)
        ended = (answer["termination"] > 0).view(envs, beams)
        obs = model.predicted_obs(answer["next_obs"]) * obs_mask  # (B * beams, *obs_shape)
        features, state = model.advance(model.obs_tokens(obs, beam_task), state)
        q = model.q_values(model.value_heads(features)["q"], beam_task).view(envs, beams, n_actions)
        was_alive = alive.gather(1, parent)
        # a candidate scored -inf (an action the task lacks) stays out of every later choice
        ret = torch.where(torch.isfinite(kept_score), ret.gather(1, parent) + gamma**depth * was_alive * reward,
                          float("-inf"))
        alive = was_alive & ~ended
        first = action if depth == 0 else first.gather(1, parent)
    best = candidate_scores(ret, alive, q, gamma ** (horizon - 1)).argmax(1, keepdim=True)
    return (best % n_actions if horizon == 1 else first.gather(1, best // n_actions)).squeeze(1)


def candidate_scores(ret: torch.Tensor, alive: torch.Tensor, q: torch.Tensor, discount: float) -> torch.Tensor:
    """S = R + discount * Q for every (beam, action) of every env, flattened to (B, beams * A);
    a beam whose episode ended scores its return R for any action."""
    return torch.where(alive.unsqueeze(-1), ret.unsqueeze(-1) + discount * q, ret.unsqueeze(-1)).flatten(1)
