"""The world-action model: one causal sequence backbone that is at once a world model and a
Q-function, as in JOWA (Cheng et al. 2024, "Scaling Offline Model-Based RL via Jointly-Optimized
World-Action Model Pretraining").

A window of K steps of one episode becomes 2K + 1 tokens

    o_0 a_0 o_1 a_1 ... o_{K-1} a_{K-1} o_K

where an observation token is the observation's encoding plus a learned task embedding, and an
action token is a learned action embedding. Read at an observation token o_t, the features give
Q(s_t, .) and V(s_t); read at an action token a_t (having seen s_t and a_t) they predict the
environment's answer: the next observation s_{t+1}, the reward r_t and whether the episode
terminated. Rewards, values and Q-values are HL-Gauss histograms over symlog-transformed scalars.

Observations of different tasks meet in one input layout: grids (MinAtar) map each task's
channels into the suite's channel list (`channel_layout`), flat vectors are zero-padded to the
widest task.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wmrl.config import ModelConfig
from wmrl.models.backbones import make_backbone
from wmrl.models.hl_gauss import HLGauss, symexp


@dataclass(frozen=True)
class ModelShape:
    """What the data fixes about the model: observation layout, actions, tasks, window length."""

    obs_kind: str  # "grid" or "vector"
    obs_shape: tuple[int, ...]  # grid: (H, W, C_union); vector: (D_max,)
    actions: int
    tasks: int
    window: int  # K steps per training window


class GridEncoder(nn.Module):
    """(…, H, W, C) binary grids -> (…, dim): two 3x3 convolutions and a linear layer."""

    def __init__(self, shape: tuple[int, int, int], dim: int, channels: int = 32):
        super().__init__()
        h, w, c = shape
        self.net = nn.Sequential(
            nn.Conv2d(c, channels, 3, padding=1), nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(channels * h * w, dim),
        )

    def forward(self, obs):
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float()
        return self.net(x).reshape(*lead, -1)


class VectorEncoder(nn.Module):
    def __init__(self, width: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, obs):
        return self.net(obs.float())


class WorldActionModel(nn.Module):
    def __init__(self, shape: ModelShape, spec: ModelConfig):
        super().__init__()
        self.shape, self.spec = shape, spec
        dim = spec.dim
        if shape.obs_kind == "grid":
            self.encoder = GridEncoder(shape.obs_shape, dim)
        elif shape.obs_kind == "vector":
            self.encoder = VectorEncoder(shape.obs_shape[0], dim)
        else:
            raise ValueError(f"no encoder for {shape.obs_kind!r} observations")
        self.task_embedding = nn.Embedding(shape.tasks, dim)
        self.action_embedding = nn.Embedding(shape.actions, dim)
        self.backbone = make_backbone(spec.backbone, dim, spec.layers, spec.heads, 2 * shape.window + 1,
                                      spec.gated, spec.state_size)
        self.norm = nn.LayerNorm(dim)
        obs_size = int(torch.tensor(shape.obs_shape).prod())
        self.hl = HLGauss(-spec.support, spec.support, spec.bins)
        # heads read at action tokens: the environment's answer to (s_t, a_t)
        self.next_obs_head = nn.Linear(dim, obs_size)
        self.reward_head = nn.Linear(dim, spec.bins)
        self.termination_head = nn.Linear(dim, 1)
        # heads read at observation tokens: values of s_t
        self.q_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, shape.actions * spec.bins))
        self.value_head = nn.Linear(dim, spec.bins)

    def tokens(self, obs: torch.Tensor, actions: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Interleave K+1 observation and K action embeddings into (B, 2K+1, dim)."""
        obs_tokens = self.encoder(obs) + self.task_embedding(task).unsqueeze(1)
        action_tokens = self.action_embedding(actions)
        b, k1, d = obs_tokens.shape
        tokens = obs_tokens.new_zeros(b, 2 * k1 - 1, d)
        tokens[:, 0::2] = obs_tokens
        tokens[:, 1::2] = action_tokens
        return tokens

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, task: torch.Tensor,
                detach_q: bool = False) -> dict[str, torch.Tensor]:
        """obs (B, K+1, *obs_shape), actions (B, K) int, task (B,) int -> every head's logits.

        `detach_q` stops the Q and value heads' gradients at the backbone's features."""
        features = self.norm(self.backbone(self.tokens(obs, actions, task)))
        at_obs, at_action = features[:, 0::2], features[:, 1::2]
        value_features = at_obs.detach() if detach_q else at_obs
        b, k1 = at_obs.shape[:2]
        return {
            "next_obs": self.next_obs_head(at_action),  # (B, K, prod(obs_shape))
            "reward": self.reward_head(at_action),  # (B, K, bins)
            "termination": self.termination_head(at_action).squeeze(-1),  # (B, K)
            "q": self.q_head(value_features).view(b, k1, self.shape.actions, self.spec.bins),  # (B, K+1, A, bins)
            "value": self.value_head(value_features),  # (B, K+1, bins)
        }

    def decode_scalar(self, logits: torch.Tensor) -> torch.Tensor:
        """The scalar a reward, value or Q head predicts (the histogram's mean, symlog undone)."""
        return symexp(self.hl.decode(logits))

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def next_obs_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-step next-observation loss: mean per-cell Bernoulli cross-entropy for binary grids,
    mean squared error (a unit-variance Gaussian's negative log-likelihood up to a constant)
    for vectors. logits (B, K, prod(shape)), target (B, K, *shape) -> (B, K)."""
    target = target.reshape(*logits.shape).float()
    if kind == "grid":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
    return (logits - target).pow(2).mean(-1)
