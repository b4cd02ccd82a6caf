"""Algorithm Distillation (AD; Laskin et al. 2022, "In-context Reinforcement Learning with Algorithm
Distillation") on our backbones.

AD trains a causal sequence model to predict a learner's actions from its learning history: the
steps of one learner on one task over many consecutive episodes (`wmrl.icrl.learning`). Because
the learner improves across episodes, predicting its next action from the steps before asks the
model to imitate the improvement itself; deployed on a new task with its own steps as context and
no weight updates, it improves from episode to episode in context.

A history is a sequence of steps t = 1..L with states s_t in 0..S-1, actions a_t in 0..A-1 and
rewards r_t. Each step is one token

    x_t = W [phi(s_t), onehot(a_{t-1}, A + 1), r_{t-1}],   a_0 = A ("none"), r_0 = 0,

(phi: the state's features, `wmrl.models.dpt.state_features`: a Dark Room cell's coordinates),

across episode boundaries as well: nothing marks a boundary but the state returning to the start,
and the first step of an episode carries the last action and reward of the one before. A causal
backbone (`wmrl.models.backbones`: transformer, gru or ssm), a final LayerNorm and a linear head
give at token t, having seen s_1..s_t and the actions and rewards before t, the distribution of
the learner's action there:

    p_t(a | s_1..s_t, a_1..a_{t-1}, r_1..r_{t-1}) = softmax(head(features_t))_a.

The model reads windows of T <= `context_steps` consecutive steps cut from the histories at random
starts (`wmrl.icrl.arrays.LearningArrays.windows`; the transformer's positions count from the
window's start), and the loss (`ad_loss`) is the cross-entropy to the learner's action at every
position, averaged:

    L = (1 / (B T)) sum_b sum_{t=1}^{T} -log p_t(a^b_t | window b up to t).

Deployment (`deploy_darkroom`): every task is played in parallel for K episodes; at each step the
context is the last `context_steps` steps of the task's whole in-context history (a sliding window
across episodes), `forward` is recomputed on that window, and the action is sampled from the last
position's softmax. Episode k + 1 starts at state 0 with the last action and reward of episode k in
its first token, as in the training histories.

What differs from the paper: the learning histories come from AD-ε noise distillation (Zisman et
al. 2023: the oracle with an exploration ε decaying across episodes) rather than from the
A3C/DQN learners the paper distills, so the improvement imitated is that schedule's; the room is
small (5 x 5 by default, episodes of 20 steps) so that it trains in minutes on a CPU; and the
sliding window recomputes `forward` at every step instead of caching (simple, O(T) tokens per
step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wmrl.icrl.tasks import MOVES, darkroom_step
from wmrl.models.backbones import make_backbone
from wmrl.models.dpt import DPTConfig, state_features, state_width


@dataclass
class ADConfig(DPTConfig):
    """An AD model's architecture and optimizer: DPT's (GPT-2 style, width 32, 4 layers, 1 head;
    AdamW), and `context_steps`, the longest window of steps it reads."""

    context_steps: int = 80


class AlgorithmDistillation(nn.Module):
    """p(a_t | the steps before t and s_t) at every step of a window (see the module doc)."""

    def __init__(self, states: int, actions: int, config: ADConfig | None = None, grid: int = 0):
        super().__init__()
        self.config = config = config or ADConfig()
        self.states, self.actions, self.grid = states, actions, grid
        # the state's features, the previous action or none, the previous reward
        self.embedding = nn.Linear(state_width(states, grid) + actions + 2, config.dim)
        self.backbone = make_backbone(config.backbone, config.dim, config.layers, config.heads, config.context_steps,
                                      config.state_size)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, actions)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def tokens(self, states: torch.Tensor, prev_actions: torch.Tensor, prev_rewards: torch.Tensor) -> torch.Tensor:
        """(B, T) each -> (B, T, dim); prev_actions in 0..A, A meaning none."""
        x = torch.cat([state_features(states, self.states, self.grid),
                       F.one_hot(prev_actions.long(), self.actions + 1).float(), prev_rewards.float().unsqueeze(-1)],
                      -1)
        return self.embedding(x)

    def forward(self, states: torch.Tensor, prev_actions: torch.Tensor, prev_rewards: torch.Tensor) -> torch.Tensor:
        """states, prev_actions, prev_rewards (B, T) with T <= context_steps -> logits (B, T, A); row t
        has seen steps 0..t and predicts the action of step t."""
        if states.shape[1] > self.config.context_steps:
            raise ValueError(f"a window of {states.shape[1]} steps exceeds the model's context of "
                             f"{self.config.context_steps} steps")
        return self.head(self.norm(self.backbone(self.tokens(states, prev_actions, prev_rewards))))


def ad_loss(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, T, A) to the learner's actions (B, T), the mean over every position."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), actions.long().reshape(-1))


@torch.no_grad()
def deploy_darkroom(model: AlgorithmDistillation, goals: Sequence[tuple[int, int]], episodes: int,
                    episode_steps: int, size: int, generator: torch.Generator | None = None) -> np.ndarray:
    """Play every goal of `goals` in a `size` x `size` Dark Room for `episodes` episodes of
    `episode_steps` steps, all goals at once, sampling each action from the model with the last
    `context_steps` steps of the goal's history as context (module doc). Returns the return of
    each episode, (len(goals), episodes)."""
    if (model.states, model.actions) != (size * size, len(MOVES)):
        raise ValueError(f"a model of {model.states} states and {model.actions} actions cannot play a {size}x{size} "
                         f"Dark Room ({size * size} states, {len(MOVES)} actions)")
    goal_state = torch.tensor([x * size + y for x, y in goals])
    count, length, context = len(goals), episodes * episode_steps, model.config.context_steps
    states = torch.zeros(count, length, dtype=torch.long)
    prev_actions = torch.full((count, length + 1), model.actions, dtype=torch.long)  # step 0's: none
    prev_rewards = torch.zeros(count, length + 1)
    returns = np.zeros((count, episodes))
    for k in range(episodes):
        state = torch.zeros(count, dtype=torch.long)  # every episode starts at (0, 0)
        for t in range(k * episode_steps, (k + 1) * episode_steps):
            states[:, t] = state
            start = max(0, t + 1 - context)
            logits = model(states[:, start:t + 1], prev_actions[:, start:t + 1], prev_rewards[:, start:t + 1])[:, -1]
            action = torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)
            state = torch.from_numpy(darkroom_step(state.numpy(), action.numpy(), size))
            reward = (state == goal_state).float()
            prev_actions[:, t + 1], prev_rewards[:, t + 1] = action, reward
            returns[:, k] += reward.numpy()
    return returns
