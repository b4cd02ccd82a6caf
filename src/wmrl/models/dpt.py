"""Decision-Pretrained Transformer (DPT; Lee et al. 2023, "Supervised Pretraining Can Learn
In-Context Reinforcement Learning") on our backbones.

A history of one task is a query state s_q and a context of T transitions (s_i, a_i, r_i, s'_i),
i = 1..T, with states in 0..S-1 and actions in 0..A-1. It becomes T + 1 tokens

    q  x_1  x_2 ... x_T,    q = W_q phi(s_q),
                            x_i = W_x [phi(s_i), onehot(a_i, A), r_i, phi(s'_i)],

with phi(s) the state's features (`state_features`): one-hot of S for bandits (S = 1), the
coordinates (x, y) of the cell in a Dark Room, as DPT's own Dark Room observes its states (with
one-hot cells a held-out goal's cell is never seen rewarded in training, and the model cannot
locate it),

(two linear embeddings: the query's own, and the transitions'), a causal backbone
(`wmrl.models.backbones`: transformer, gru or ssm; the transformer gives q position 0 and x_i
position i), a final LayerNorm and a linear head. The logits read at token j (having seen q and
x_1..x_j, j = 0..T) are the model's distribution over the optimal action a*(s_q) of the task:

    p_j(a | s_q, x_1..x_j) = softmax(head(features_j))_a.

The loss (`dpt_loss`) is the cross-entropy to a* at every context length, averaged:

    L = (1 / B) sum_b (1 / (T + 1)) sum_{j=0}^{T} -log p_j(a*_b | s_q^b, x^b_1..x^b_j).

Because the backbone is causal, one pass over a length-H history trains all H + 1 context lengths.
Two deliberate differences from DPT's code (`net.py`): it sums the cross-entropy over batch and
positions (`reduction="sum"`), we average (the same gradient direction; AdamW is invariant to the
loss's scale but for its epsilon, and the mean keeps the learning rate and the logged loss
comparable across batch sizes and horizons); and it trains positions 1..H only (`preds[:, 1:]`)
though online deployment reads position 0 at its first step, whereas we also train position 0,
whose target is then the prior over the optimal action (e.g. uniform for bandits).

Deployment: offline, a fixed dataset is the context and the model acts greedily on the last
position's logits; online, the model's own transitions become the context and it samples from
p_T (`deploy_online` for bandits, `deploy_darkroom` for Dark Room). For a fixed query (bandits,
S = 1) `start` / `observe` extend the context one transition at a time through the backbone's
`step` (key/value cache or recurrent state: O(T) per step for the transformer, O(1) for
gru/ssm); a query that changes (an MDP's current state) is placed before the context, so each new
query needs `forward` over the whole context again.
Measured on one CPU thread at DPT's size, H = 500, A = 5, one bandit: `deploy_online` (stepping)
takes 0.17 s (transformer), 0.06 s (gru), 0.19 s (ssm); recomputing `forward` on the growing
context at every step takes 0.74 s, 4.1 s and about 2 s.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from wmrl.icrl.tasks import darkroom_step
from wmrl.models.backbones import make_backbone


@dataclass
class DPTConfig:
    """A Decision-Pretrained Transformer's architecture and optimizer (DPT's settings by default:
    GPT-2 style, width 32, 4 layers, 1 head, no dropout; AdamW with weight decay 1e-4, batch 64,
    learning rate 1e-4 for bandits, 1e-3 range for Dark Room). Loss math in the module doc."""

    backbone: str = "transformer"  # transformer | gtrxl | ssm | gru
    dim: int = 32  # token width
    layers: int = 4
    heads: int = 1  # attention heads (transformer)
    state_size: int = 16  # SSM state per channel
    learning_rate: float = 1e-4
    weight_decay: float = 1e-4
    batch_size: int = 64


def state_width(states: int, grid: int) -> int:
    """The width of `state_features`: 2 coordinates in a grid, else one entry per state."""
    return 2 if grid else states


def state_features(states: torch.Tensor, count: int, grid: int) -> torch.Tensor:
    """States (any shape) as features (..., width): in a `grid` x `grid` room the coordinates
    (x, y) of state index x * grid + y, as DPT's Dark Room observes them; else one-hot of `count`."""
    if grid:
        x, y = torch.div(states.long(), grid, rounding_mode="floor"), states.long() % grid
        return torch.stack([x, y], -1).float()
    return F.one_hot(states.long(), count).float()


class DecisionPretrainedTransformer(nn.Module):
    """p(a* | s_q, context) at every context length (see the module doc)."""

    def __init__(self, states: int, actions: int, horizon: int, config: DPTConfig | None = None, grid: int = 0):
        super().__init__()
        self.config = config = config or DPTConfig()
        self.states, self.actions, self.horizon, self.grid = states, actions, horizon, grid
        width = state_width(states, grid)
        self.query_embedding = nn.Linear(width, config.dim)
        self.transition_embedding = nn.Linear(2 * width + actions + 1, config.dim)
        self.backbone = make_backbone(config.backbone, config.dim, config.layers, config.heads, horizon + 1,
                                      config.state_size)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, actions)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def query_tokens(self, query_state: torch.Tensor) -> torch.Tensor:
        """(B,) -> (B, dim)."""
        return self.query_embedding(state_features(query_state, self.states, self.grid))

    def transition_tokens(self, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                          next_states: torch.Tensor) -> torch.Tensor:
        """(B, T) each -> (B, T, dim); also (B,) -> (B, dim)."""
        x = torch.cat([state_features(states, self.states, self.grid), F.one_hot(actions.long(), self.actions).float(),
                       rewards.float().unsqueeze(-1), state_features(next_states, self.states, self.grid)], -1)
        return self.transition_embedding(x)

    def forward(self, query_state: torch.Tensor, states: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                next_states: torch.Tensor) -> torch.Tensor:
        """query_state (B,), states/actions/rewards/next_states (B, T) with 0 <= T <= horizon ->
        logits (B, T + 1, A); row j has seen the query and the first j transitions."""
        if states.shape[1] > self.horizon:
            raise ValueError(f"a context of {states.shape[1]} transitions exceeds the model's horizon {self.horizon}")
        tokens = torch.cat([self.query_tokens(query_state).unsqueeze(1),
                            self.transition_tokens(states, actions, rewards, next_states)], 1)
        return self.head(self.norm(self.backbone(tokens)))

    # ------------------------------------------------------------------ acting one transition at a time

    def start(self, query_state: torch.Tensor) -> tuple[torch.Tensor, Any]:
        """An empty context for queries (B,): the logits at position 0 (B, A) and the state to extend."""
        state = self.backbone.init_state(len(query_state), query_state.device)
        features, state = self.backbone.step(self.query_tokens(query_state), state)
        return self.head(self.norm(features)), {"backbone": state, "length": 0}

    def observe(self, state: Any, s: torch.Tensor, a: torch.Tensor, r: torch.Tensor, s_next: torch.Tensor
                ) -> tuple[torch.Tensor, Any]:
        """Append one transition (B,) each to the context: the logits at the new last position (B, A)."""
        if state["length"] >= self.horizon:
            raise ValueError(f"the context is full ({self.horizon} transitions)")
        features, backbone = self.backbone.step(self.transition_tokens(s, a, r, s_next), state["backbone"])
        return self.head(self.norm(features)), {"backbone": backbone, "length": state["length"] + 1}


def dpt_loss(logits: torch.Tensor, optimal_action: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of logits (B, T + 1, A) to optimal_action (B,) at every position: the mean over
    the batch of the mean over positions (module doc)."""
    target = optimal_action.long().unsqueeze(1).expand(-1, logits.shape[1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1))


def choose(logits: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Actions (B,) from logits (B, A): the argmax (offline deployment) or a sample (online)."""
    if greedy:
        return logits.argmax(-1)
    return torch.multinomial(torch.softmax(logits, -1), 1, generator=generator).squeeze(-1)


@torch.no_grad()
def deploy_online(model: DecisionPretrainedTransformer, query_state: torch.Tensor, step, steps: int,
                  greedy: bool = False, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Online deployment with a fixed query (bandits): `steps` times, choose an action from the
    current logits (sampled unless `greedy`), call `step(actions (B,)) -> (states, rewards,
    next_states)` (B,) each, and append the transition to the context. Returns the actions and
    rewards (B, steps)."""
    logits, state = model.start(query_state)
    actions, rewards = [], []
    for _ in range(steps):
        a = choose(logits, greedy, generator)
        s, r, s_next = step(a)
        actions.append(a)
        rewards.append(torch.as_tensor(r, dtype=torch.float32))
        logits, state = model.observe(state, s, a, r, s_next)
    return {"actions": torch.stack(actions, 1), "rewards": torch.stack(rewards, 1)}


@torch.no_grad()
def deploy_darkroom(model: DecisionPretrainedTransformer, goals: Sequence[tuple[int, int]], episodes: int,
                    episode_steps: int, size: int, generator: torch.Generator | None = None) -> np.ndarray:
    """Play every goal of `goals` in a `size` x `size` Dark Room for `episodes` episodes of
    `episode_steps` steps, all goals at once, DPT sampling its action at each step with the current
    state as query and, as context, the last `model.horizon` transitions of its previous episodes
    (empty in the first; fixed within an episode, as in DPT's online evaluation). Returns the
    return of each episode, (len(goals), episodes)."""
    if model.states != size * size:
        raise ValueError(f"a model of {model.states} states cannot play a {size}x{size} Dark Room")
    goal_state = torch.as_tensor([x * size + y for x, y in goals])
    count = len(goals)
    past = torch.zeros((count, 0, 4))  # (s, a, r, s') of the previous episodes
    returns = np.zeros((count, episodes))
    for episode in range(episodes):
        context = past[:, -model.horizon:]
        state = torch.zeros(count, dtype=torch.long)
        steps = []
        for _ in range(episode_steps):
            logits = model(state, context[..., 0].long(), context[..., 1].long(), context[..., 2],
                           context[..., 3].long())[:, -1]
            action = choose(logits, greedy=False, generator=generator)
            following = torch.as_tensor(darkroom_step(state.numpy(), action.numpy(), size))
            reward = (following == goal_state).float()
            steps.append(torch.stack([state.float(), action.float(), reward, following.float()], -1))
            returns[:, episode] += reward.numpy()
            state = following
        past = torch.cat([past, torch.stack(steps, 1)], 1)[:, -model.horizon:]
    return returns
