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
widest task, images (Atari's 84x84 grayscale frames) share their shape. The next observation is
predicted directly in that layout: per-cell Bernoulli logits for grids, values for vectors, pixel
intensities in [0, 1] for images (JOWA tokenizes frames with a VQ-VAE instead; a direct pixel
regression keeps the model one file and one training stage). The decoders predict the *change*:
their output is added to "nothing changes" — o_t itself for vectors and frames, and for grids
logits +-c_k on the cells of o_t (c_k a learnt confidence per channel k) — so copying the frame,
most of what a next frame is, costs nothing. For grids the change comes from convolutions over
o_t, steered by the action token's features: objects move by local rules (a ball along its
trail, the player by the action) that a linear read-out of one token would have to relearn for
every cell.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wmrl.models.backbones import make_backbone
from wmrl.models.config import ModelConfig
from wmrl.models.scalar_heads import make_scalar_head, symexp


@dataclass(frozen=True)
class ModelShape:
    """What the data fixes about the model: observation layout, actions, tasks, window length."""

    obs_kind: str  # "grid", "vector" or "image"
    obs_shape: tuple[int, ...]  # grid: (H, W, C_union); vector: (D_max,); image: (H, W, C)
    actions: int  # action embeddings and Q outputs: the most actions any task has
    tasks: int
    window: int  # K steps per training window
    task_actions: tuple[int, ...] = ()  # per task: its actions are 0..n-1 (empty: all tasks have `actions`)


class GridEncoder(nn.Module):
    """(…, H, W, C) binary grids -> (…, dim): two 3x3 convolutions and a linear layer. (The MinAtar
    DQN trunk, one unpadded 16-channel convolution, makes a step 1.5x faster but fine-tuning on
    laptop breakout reached 0.35 instead of 0.75 normalized in 1,000 steps.)"""

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


class ImageEncoder(nn.Module):
    """(…, H, W, C) uint8-valued frames -> (…, dim) on intensities scaled to [0, 1]: the Nature DQN
    trunk (Mnih et al. 2015) on frames of 36 pixels a side or more, two 3x3 convolutions on smaller
    ones (its 8x8 stride-4 filter leaves nothing of a 7x7 view), then a linear layer."""

    NATURE_MIN_SIDE = 36  # 8x8/4, 4x4/2 and 3x3/1 filters leave one cell of a 36x36 frame

    def __init__(self, shape: tuple[int, int, int], dim: int):
        super().__init__()
        h, w, c = shape
        if min(h, w) >= self.NATURE_MIN_SIDE:
            trunk = nn.Sequential(
                nn.Conv2d(c, 32, 8, stride=4), nn.ReLU(),
                nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten(),
            )
        else:
            trunk = nn.Sequential(
                nn.Conv2d(c, 32, 3, padding=1), nn.ReLU(),
                nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.Flatten(),
            )
        width = trunk(torch.zeros(1, c, h, w)).shape[1]
        self.net = nn.Sequential(trunk, nn.Linear(width, dim))

    def forward(self, obs):
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).permute(0, 3, 1, 2).float() / 255.0
        return self.net(x).reshape(*lead, -1)


class VectorEncoder(nn.Module):
    def __init__(self, width: int, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(width, dim), nn.GELU(), nn.Linear(dim, dim))

    def forward(self, obs):
        return self.net(obs.float())


class GridDecoder(nn.Module):
    """Next-grid logits (…, H*W*C) from the action token's features (…, dim) and the grid o_t the
    action was taken in (…, H, W, C): "nothing changes" (+-c_k on o_t's cells) plus the change,
    two 3x3 convolutions over o_t whose hidden channels are scaled and shifted (FiLM) by the
    features and by the action (…,) itself, which the features carry too weakly to move objects."""

    def __init__(self, shape: tuple[int, int, int], dim: int, actions: int, channels: int = 16):
        super().__init__()
        c = shape[-1]
        self.grid = nn.Conv2d(c, channels, 3, padding=1)
        self.context = nn.Linear(dim, 2 * channels)
        self.action = nn.Embedding(actions, 2 * channels)
        self.change = nn.Conv2d(channels, c, 3, padding=1)
        self.copy_logit = nn.Parameter(torch.full((c,), 3.0))  # sigmoid(3) = 0.95: a cell most likely stays

    def forward(self, features, obs, action):
        lead = obs.shape[:-3]
        x = obs.reshape(-1, *obs.shape[-3:]).float()
        scale, shift = (self.context(features) + self.action(action)).reshape(len(x), -1, 1, 1).chunk(2, 1)
        hidden = self.grid(x.permute(0, 3, 1, 2)) * (1 + scale) + shift
        change = self.change(F.relu(hidden)).permute(0, 2, 3, 1)
        return (change + (2 * x - 1) * self.copy_logit).reshape(*lead, -1)


class ResidualDecoder(nn.Module):
    """The next vector or frame (…, prod(shape)) from the action token's features (…, dim) and
    the observation o_t (…, *shape): o_t (frames on the [0, 1] scale) plus a linear read-out."""

    def __init__(self, shape: tuple[int, ...], dim: int, scale: float = 1.0):
        super().__init__()
        self.shape, self.scale = shape, scale
        self.change = nn.Linear(dim, int(torch.tensor(shape).prod()))

    def forward(self, features, obs, action):
        return self.change(features) + obs.float().flatten(-len(self.shape)) / self.scale


class WorldActionModel(nn.Module):
    def __init__(self, shape: ModelShape, spec: ModelConfig):
        super().__init__()
        self.shape, self.spec = shape, spec
        dim = spec.dim
        encoders = {"grid": GridEncoder, "image": ImageEncoder,
                    "vector": lambda shape, dim: VectorEncoder(shape[0], dim)}
        if shape.obs_kind not in encoders:
            raise ValueError(f"no encoder for {shape.obs_kind!r} observations")
        self.encoder = encoders[shape.obs_kind](shape.obs_shape, dim)
        self.task_embedding = nn.Embedding(shape.tasks, dim)
        self.action_embedding = nn.Embedding(shape.actions, dim)
        self.backbone = make_backbone(spec.backbone, dim, spec.layers, spec.heads, 2 * shape.window + 1,
                                      spec.state_size)
        self.norm = nn.LayerNorm(dim)
        self.scalar = make_scalar_head(spec.value_loss, spec.support, spec.bins)
        outputs = self.scalar.outputs  # per scalar: bins of a histogram, or 1
        # heads read at action tokens: the environment's answer to (s_t, a_t)
        decoders = {"grid": lambda shape, dim: GridDecoder(shape, dim, self.shape.actions),
                    "image": lambda shape, dim: ResidualDecoder(shape, dim, 255.0), "vector": ResidualDecoder}
        self.next_obs_head = decoders[shape.obs_kind](shape.obs_shape, dim)
        self.reward_head = nn.Linear(dim, outputs)
        self.termination_head = nn.Linear(dim, 1)
        # heads read at observation tokens: values of s_t
        self.q_head = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, shape.actions * outputs))
        self.value_head = nn.Linear(dim, outputs)
        counts = shape.task_actions or (shape.actions,) * shape.tasks
        valid = torch.arange(shape.actions) < torch.tensor(counts).unsqueeze(1)
        self.register_buffer("valid_actions", valid, persistent=False)  # (tasks, actions)

    def obs_tokens(self, obs: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """obs (B, …, *obs_shape), task (B,) -> observation tokens (B, …, dim)."""
        encoded = self.encoder(obs)
        return encoded + self.task_embedding(task).view(len(task), *[1] * (encoded.dim() - 2), -1)

    def tokens(self, obs: torch.Tensor, actions: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """The K+1 observations and K actions of a window as tokens (B, 2K+1, dim)."""
        return self.interleave(self.obs_tokens(obs, task), self.action_embedding(actions))

    @staticmethod
    def interleave(obs_tokens: torch.Tensor, action_tokens: torch.Tensor) -> torch.Tensor:
        """Observation tokens (B, K+1, dim) and action tokens (B, K, dim) as o_0 a_0 ... o_K."""
        b, k1, d = obs_tokens.shape
        tokens = obs_tokens.new_zeros(b, 2 * k1 - 1, d)
        tokens[:, 0::2] = obs_tokens
        tokens[:, 1::2] = action_tokens
        return tokens

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, task: torch.Tensor, detach_q: bool = False,
                answers: bool = True) -> dict[str, torch.Tensor]:
        """obs (B, K+1, *obs_shape), actions (B, K) int, task (B,) int -> every head's logits
        (with `answers` false, the value heads' alone: a target network's bootstrap needs no more).

        `detach_q` stops the Q and value heads' gradients at the backbone's features."""
        features = self.norm(self.backbone(self.tokens(obs, actions, task)))
        at_obs, at_action = features[:, 0::2], features[:, 1::2]
        values = self.value_heads(at_obs.detach() if detach_q else at_obs)
        return {**self.answer_heads(at_action, obs[:, :-1], actions), **values} if answers else values

    def answer_heads(self, features: torch.Tensor, obs: torch.Tensor, action: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads read at action tokens (…, dim): the environment's answer to (s_t, a_t), where `obs`
        (…, *obs_shape) is s_t, the observation the action (…,) was taken in."""
        return {
            "next_obs": self.next_obs_head(features, obs, action),  # (…, prod(obs_shape)) logits or values
            "reward": self.reward_head(features),  # (…, outputs)
            "termination": self.termination_head(features).squeeze(-1),  # (…,)
        }

    def value_heads(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        """Heads read at observation tokens (…, dim): Q(s_t, .) and V(s_t) histograms."""
        return {
            "q": self.q_head(features).unflatten(-1, (self.shape.actions, self.scalar.outputs)),  # (…, A, outputs)
            "value": self.value_head(features),  # (…, outputs)
        }

    def decode_scalar(self, logits: torch.Tensor) -> torch.Tensor:
        """The scalar a reward, value or Q head predicts (the histogram's mean or the regressed value,
        symlog undone)."""
        return symexp(self.scalar.decode(logits))

    def q_values(self, q_logits: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Scalar Q-values (B, …, A) of Q logits (B, …, A, bins); actions task `task` (B,) does not
        have are -inf, so no argmax, max or logsumexp ever picks them."""
        q = self.decode_scalar(q_logits)
        valid = self.valid_actions[task].view(len(task), *[1] * (q.dim() - 2), -1)
        return q.masked_fill(~valid, float("-inf"))

    # ------------------------------------------------------------------ one token at a time

    def last_q(self, tokens: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Q-values (B, A) at the last token of a context (B, 2n+1, dim), which ends with an observation."""
        return self.q_values(self.value_heads(self.norm(self.backbone(tokens))[:, -1])["q"], task)

    def start(self, tokens: torch.Tensor) -> tuple[torch.Tensor, object]:
        """Feed a context (B, 2n+1, dim) token by token; return the features of its last token
        (B, dim) and the backbone state after it."""
        state = self.backbone.init_state(len(tokens), tokens.device)
        for t in range(tokens.shape[1]):
            features, state = self.backbone.step(tokens[:, t], state)
        return self.norm(features), state

    def advance(self, token: torch.Tensor, state: object) -> tuple[torch.Tensor, object]:
        """Feed one more token (B, dim): its features and the new state."""
        features, state = self.backbone.step(token, state)
        return self.norm(features), state

    def predicted_obs(self, next_obs: torch.Tensor) -> torch.Tensor:
        """An observation (…, *obs_shape) from next-observation head outputs, on the inputs' scale:
        the most likely grid (cells with p > 0.5), the predicted vector, or the predicted frame
        (intensities clipped to [0, 1], times 255)."""
        kind = self.shape.obs_kind
        obs = next_obs > 0 if kind == "grid" else next_obs.clamp(0, 1) * 255 if kind == "image" else next_obs
        return obs.float().unflatten(-1, self.shape.obs_shape)

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.parameters())


def next_obs_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-step next-observation loss: mean per-cell Bernoulli cross-entropy for binary grids,
    mean squared error (a unit-variance Gaussian's negative log-likelihood up to a constant)
    for vectors and for images (intensities scaled to [0, 1]).
    logits (B, K, prod(shape)), target (B, K, *shape) -> (B, K)."""
    target = target.reshape(*logits.shape).float()
    if kind == "grid":
        return F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(-1)
    if kind == "image":
        target = target / 255.0
    return (logits - target).pow(2).mean(-1)
