"""Decision Transformer (Chen et al. 2021) built from the world-action model's parts.

A window of K steps becomes 3K tokens, the paper's layout

    R_0 o_0 a_0 R_1 o_1 a_1 ... R_{K-1} o_{K-1} a_{K-1}

with R_t the return-to-go (the rewards from step t to the episode's end). A return token is a
linear embedding of symlog(R_t) plus the task embedding; observation and action tokens are the
world-action model's (`wmrl.models.world_model`). Read at o_t, the features give the policy
pi(a_t | R_<=t, o_<=t, a_<t); read at a_t, the world model's decoder and reward head predict
o_{t+1} and r_t (MO-DT's auxiliary outputs, trained when their weights are set). A step's tokens
share its position, as in DT (one time-step embedding per step): R_t and o_t take the position o_t
has in the world-action model's layout (2t), a_t the one a_t has (2t + 1), so K steps fit any
model trained on windows of K steps and pretrained positions keep their meaning.

The encoder, task and action embeddings, backbone and those two heads are exactly the world-action
model's modules under the same names, so a pretrained model's weights load into them unchanged:
LaMo's recipe (Shi et al. 2024), a pretrained sequence model as DT's initialization, with our own
pretrained world model standing in for the language model. The return embedding and the action
head are new. The action head is linear (a softmax over actions) or a Fourier head.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from wmrl.models.config import DecisionConfig, ModelConfig
from wmrl.models.scalar_heads import symlog
from wmrl.models.world_model import ModelShape, WorldActionModel

NEW_PARTS = ("return_embedding", "action_head")  # what pretraining cannot provide


class FourierHead(nn.Module):
    """A categorical over m ordered bins read off a Fourier-series density on [-1, 1]
    (Gillman et al. 2024, "Fourier Head"). A linear layer gives complex coefficients a_0 .. a_N;
    their autocorrelation c_k = sum_l a_{l+k} conj(a_l) defines

        p(z) = |sum_l a_l e^{i pi l z}|^2 / (2 c_0) = 1/2 + Re sum_{k=1}^{N} (c_k / c_0) e^{i pi k z},

    a density (non-negative, integral 1 over [-1, 1]). Bin j's probability is p at its centre
    z_j = -1 + (2j + 1) / m, renormalized over the bins. `smoothness` is the paper's regularizer
    sum_k k^2 |c_k / c_0|^2, which favours low frequencies."""

    def __init__(self, dim: int, bins: int, frequencies: int):
        super().__init__()
        if 2 * frequencies > bins:
            raise ValueError(f"a Fourier head over {bins} bins resolves at most {bins // 2} frequencies "
                             f"(Nyquist), not {frequencies}")
        self.frequencies = frequencies
        self.coefficients = nn.Linear(dim, 2 * (frequencies + 1))
        self.register_buffer("centres", -1 + (2 * torch.arange(bins) + 1) / bins, persistent=False)

    def autocorrelation(self, features: torch.Tensor) -> torch.Tensor:
        """c_k / c_0 for k = 1..N, (…, N) complex."""
        a = torch.view_as_complex(self.coefficients(features).unflatten(-1, (-1, 2)).contiguous())  # (…, N+1)
        c = torch.stack([(a[..., k:] * a[..., :a.shape[-1] - k].conj()).sum(-1)
                         for k in range(self.frequencies + 1)], -1)
        return c[..., 1:] / c[..., :1].real.clamp(min=1e-12)

    def density(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """p(z) at points z (n,) of [-1, 1]: (…, n)."""
        waves = torch.exp(1j * math.pi * torch.outer(torch.arange(1, self.frequencies + 1, device=z.device), z))
        return 0.5 + (self.autocorrelation(features) @ waves).real

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Log-probabilities of the bins up to a constant per row (…, m): logits for a softmax."""
        return torch.log(self.density(features, self.centres).clamp(min=1e-8))

    def smoothness(self, features: torch.Tensor) -> torch.Tensor:
        """sum_k k^2 |c_k / c_0|^2 per row (…,)."""
        k = torch.arange(1, self.frequencies + 1, dtype=features.dtype)
        return (k ** 2 * self.autocorrelation(features).abs() ** 2).sum(-1)


class DecisionTransformer(WorldActionModel):
    """The world-action model's parts, read as a return-conditioned policy (see the module doc)."""

    def __init__(self, shape: ModelShape, spec: ModelConfig, decision: DecisionConfig):
        super().__init__(shape, spec)
        self.decision = decision
        self.q_head = self.value_head = self.termination_head = None  # TD's heads: a DT has no use for them
        if not decision.next_obs:
            self.next_obs_head = None
        if not decision.reward:
            self.reward_head = None
        self.return_embedding = nn.Linear(1, spec.dim)
        self.action_head = (FourierHead(spec.dim, shape.actions, decision.frequencies)
                            if decision.action_head == "fourier" else nn.Linear(spec.dim, shape.actions))

    def return_tokens(self, return_to_go: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Returns-to-go (B, n), task (B,) -> return tokens (B, n, dim)."""
        return self.return_embedding(symlog(return_to_go).unsqueeze(-1)) + self.task_embedding(task).unsqueeze(1)

    @staticmethod
    def interleave3(returns: torch.Tensor, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Return, observation and action tokens (B, n, dim) each (actions may have n - 1) as
        R_0 o_0 a_0 ... R_{n-1} o_{n-1} [a_{n-1}]."""
        b, n, d = returns.shape
        if actions.shape[1] == n - 1:
            actions = torch.cat([actions, actions.new_zeros(b, 1, d)], 1)
            return torch.stack([returns, obs, actions], 2).reshape(b, 3 * n, d)[:, :-1]
        return torch.stack([returns, obs, actions], 2).reshape(b, 3 * n, d)

    def policy_logits(self, features: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Action logits (B, …, A) at observation tokens' features (B, …, dim); actions the task does
        not have are -inf."""
        logits = self.action_head(features)
        valid = self.valid_actions[task].view(len(task), *[1] * (logits.dim() - 2), -1)
        return logits.masked_fill(~valid, float("-inf"))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor, return_to_go: torch.Tensor, task: torch.Tensor
                ) -> dict[str, torch.Tensor]:
        """obs (B, K+1, *obs_shape), actions (B, K), return_to_go (B, K), task (B,) -> the policy's
        logits (B, K, A), its features at o_t (for the Fourier regularizer) and the auxiliary
        heads' outputs at a_t (next_obs, reward) where their weights are set."""
        tokens = self.interleave3(self.return_tokens(return_to_go, task), self.obs_tokens(obs[:, :-1], task),
                                  self.action_embedding(actions))
        features = self.norm(self.backbone(tokens, step_positions(tokens.shape[1])))
        at_obs, at_action = features[:, 1::3], features[:, 2::3]
        out = {"policy": self.policy_logits(at_obs, task), "features": at_obs}
        if self.next_obs_head is not None:
            out["next_obs"] = self.next_obs_head(at_action, obs[:, :-1], actions)
        if self.reward_head is not None:
            out["reward"] = self.reward_head(at_action)
        return out

    def last_policy(self, tokens: torch.Tensor, task: torch.Tensor) -> torch.Tensor:
        """Action logits (B, A) at the last token of a context (B, 3n - 1, dim) ending with o_{n-1}."""
        return self.policy_logits(self.norm(self.backbone(tokens, step_positions(tokens.shape[1])))[:, -1], task)


def step_positions(tokens: int) -> torch.Tensor:
    """Positions of R_0 o_0 a_0 R_1 ...: 2t for R_t and o_t, 2t + 1 for a_t."""
    index = torch.arange(tokens)
    return 2 * (index // 3) + (index % 3 == 2).long()


def load_pretrained(model: DecisionTransformer, state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Load a pretrained world-action model's weights into the parts they share; returns the
    top-level modules that came from pretraining. Anything else missing is an error."""
    result = model.load_state_dict(state_dict, strict=False)
    fresh = sorted({key.split(".")[0] for key in result.missing_keys})
    if set(fresh) - set(NEW_PARTS):
        raise ValueError(f"the pretrained weights lack {sorted(set(fresh) - set(NEW_PARTS))}, which a "
                         f"Decision Transformer takes from them")
    return sorted({key.split(".")[0] for key in model.state_dict()} - set(fresh))

