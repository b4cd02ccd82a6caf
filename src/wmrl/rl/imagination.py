"""Learning in imagination: an actor and a critic trained on rollouts the world-action model
dreams, DreamerV3-style (Hafner et al. 2023), for discrete actions.

Imagination. From B start observations s_0 replayed from the agent's real experience, the world
model (wmrl.models.world_model, a causal backbone over o_0 a_0 o_1 ...) is rolled T = H x
`contexts` steps with no real observation after s_0, its context restarted from the latest
imagined observation every H steps (H <= the model's window K; as the acting agent's context
is; at laptop H = 15 and T = 45: a rollout 3H long lets the critic see an episode end that is
tens of steps away). At each step
the actor samples a_t ~ pi(. | f_t) from the features f_t of the observation token, the action
token's features give the reward r_t (the reward head's histogram mean), and the continuation
c_t and the next observation, both *sampled*: the episode
ends with the termination head's probability (an imagined rollout ends or goes on, as a real one
does, rather than every step being discounted by a small spurious probability of ending), every
grid cell is drawn from its Bernoulli (so stochastic cells — a new car, an enemy's spawn — are
drawn, not averaged away), a vector or frame is the decoder's prediction. Cells of channels the
task does not have stay 0. The rollout runs in no_grad: nothing of the actor's or critic's loss
reaches the world model, which learns from real data alone (its joint objective,
wmrl.rl.objectives).

Returns. The critic v (a histogram over symlog returns, two-hot targets) and its slow copy
v_slow (an exponential moving average of its weights, rate `critic_ema`) value the imagined
states. λ-returns bootstrap on the slow critic:

    R_t = r_t + gamma c_t ((1 - lambda) v_slow(f_{t+1}) + lambda R_{t+1}),   R_T = v_slow(f_T)

computed by torchrl's `td_lambda_return_estimate` (the per-step discount gamma c_t as its rolling
gamma). A state is reached with weight w_t = prod_{k<t} c_k: after an imagined terminal nothing counts.

Losses, each a w-weighted mean over t < T and the batch:

    critic  L_v  = CE(two-hot(symlog R_t), v(f_t))
    actor   L_pi = -sg((R_t - v(f_t)) / max(1, S)) log pi(a_t | f_t) - eta H(pi(. | f_t))

REINFORCE gradients (the actions are discrete; the dynamics are not differentiated), the
advantage normalized by S, an exponential moving average (rate `scale_ema`) of the 95th minus
the 5th percentile of the batch's returns (DreamerV3's return normalization: it shrinks large
returns, never amplifies small ones), and an entropy bonus eta. The actor mixes 1% uniform into
its softmax (DreamerV3's unimix) so no action's probability reaches 0.

Left out of DreamerV3: the RSSM (the world model is ours, deterministic features plus sampled
observations), the KL balancing and free bits of its latent (we have no latent), symlog
observation targets, replayed-trajectory value loss (probed on CartPole at weights 0.3 and 1: it
lowered the returns) and the critic's slow-regularizer term (the slow critic is the bootstrap
target instead, as in DreamerV1/V2). Changed: gamma 0.99, not 0.997 (rl.config.ImagineConfig), and
the learning rates decay linearly to 0 over the run (wmrl.train.imagine; why: wmrl.methods.imagine).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from wmrl.models.scalar_heads import TwoHot, symexp, symlog
from wmrl.models.world_model import WorldActionModel
from wmrl.rl.config import ImagineConfig

UNIFORM_MIX = 0.01  # DreamerV3's unimix


def mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    """Two hidden layers with LayerNorm and SiLU (DreamerV3's), a zero-initialised output layer."""
    out = nn.Linear(hidden, outputs)
    nn.init.zeros_(out.weight)
    nn.init.zeros_(out.bias)
    return nn.Sequential(nn.Linear(inputs, hidden), nn.LayerNorm(hidden), nn.SiLU(),
                         nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.SiLU(), out)


class ActorCritic(nn.Module):
    """The policy pi(a | f) and the value v(f) of world-model features f, with the slow critic and
    the return scale S as state (all in its state dict)."""

    def __init__(self, features: int, actions: int, config: ImagineConfig):
        super().__init__()
        self.config = config
        self.actor = mlp(features, config.hidden, actions)
        self.critic = mlp(features, config.hidden, config.bins)
        self.slow_critic = mlp(features, config.hidden, config.bins).requires_grad_(False)
        self.slow_critic.load_state_dict(self.critic.state_dict())
        self.returns = TwoHot(-config.support, config.support, config.bins)
        self.register_buffer("scale", torch.ones(()))

    def policy(self, features: torch.Tensor, valid: torch.Tensor) -> torch.distributions.Categorical:
        """pi(. | f) over the actions `valid` (…, A) marks, 1% of it uniform over them."""
        logits = self.actor(features).masked_fill(~valid, float("-inf"))
        uniform = valid.float() / valid.sum(-1, keepdim=True)
        return torch.distributions.Categorical(probs=(1 - UNIFORM_MIX) * logits.softmax(-1) + UNIFORM_MIX * uniform)

    def value(self, features: torch.Tensor, slow: bool = False) -> torch.Tensor:
        critic = self.slow_critic if slow else self.critic
        return symexp(self.returns.decode(critic(features)))

    def act(self, features: torch.Tensor, valid: torch.Tensor, greedy: bool, generator: torch.Generator | None = None
            ) -> torch.Tensor:
        """Actions (B,) for features (B, dim): sampled from pi, or its most likely one."""
        probs = self.policy(features, valid).probs
        return probs.argmax(-1) if greedy else torch.multinomial(probs, 1, generator=generator).squeeze(-1)

    @torch.no_grad()
    def update_slow(self) -> None:
        for slow, fast in zip(self.slow_critic.parameters(), self.critic.parameters(), strict=True):
            slow.lerp_(fast, self.config.critic_ema)


def sample_next_obs(model: WorldActionModel, logits: torch.Tensor, obs_mask: torch.Tensor,
                    generator: torch.Generator | None) -> torch.Tensor:
    """A next observation (B, *obs_shape) from the decoder's output: Bernoulli cells for grids,
    the predicted vector or frame otherwise; features the task does not have are 0."""
    if model.shape.obs_kind == "grid":
        cells = torch.bernoulli(logits.sigmoid(), generator=generator).unflatten(-1, model.shape.obs_shape)
        return cells * obs_mask
    return model.predicted_obs(logits) * obs_mask


@torch.no_grad()
def imagine(model: WorldActionModel, agent: ActorCritic, start: torch.Tensor, task: torch.Tensor,
            obs_mask: torch.Tensor, horizon: int, generator: torch.Generator | None = None,
            restart_every: int | None = None) -> dict[str, torch.Tensor]:
    """Roll the world model `horizon` steps from observations `start` (B, *obs_shape) of tasks
    `task` (B,), the actor choosing: features (B, T+1, dim), actions, rewards, continuations (B, T),
    T = `horizon`.
    Every `restart_every` steps the model's context restarts from the latest observation alone."""
    valid = model.valid_actions[task]
    restart_every = restart_every or horizon
    obs = start
    features, state = model.advance(model.obs_tokens(obs, task), model.backbone.init_state(len(start), start.device))
    trace: dict[str, list[torch.Tensor]] = {"features": [features], "actions": [], "reward": [], "cont": []}
    for step in range(1, horizon + 1):
        action = agent.act(features, valid, greedy=False, generator=generator)
        answer, state = model.advance(model.action_embedding(action), state)
        heads = model.answer_heads(answer, obs, action)
        obs = sample_next_obs(model, heads["next_obs"], obs_mask, generator)
        if step % restart_every == 0:
            state = model.backbone.init_state(len(start), start.device)
        features, state = model.advance(model.obs_tokens(obs, task), state)
        trace["features"].append(features)
        trace["actions"].append(action)
        trace["reward"].append(model.decode_scalar(heads["reward"]))
        ended = torch.bernoulli(heads["termination"].sigmoid(), generator=generator)
        trace["cont"].append(1.0 - ended)
    return {name: torch.stack(values, 1) for name, values in trace.items()}


def lambda_returns(reward: torch.Tensor, cont: torch.Tensor, next_value: torch.Tensor, gamma: float,
                   lam: float) -> torch.Tensor:
    """R_t = r_t + gamma c_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_{T-1} bootstrapping on v_T:
    reward, cont, next_value (B, T) (next_value[:, t] = v(f_{t+1})) -> R (B, T)."""
    from torchrl.objectives.value.functional import td_lambda_return_estimate

    never = torch.zeros_like(reward, dtype=torch.bool).unsqueeze(-1)
    returns = td_lambda_return_estimate((gamma * cont).unsqueeze(-1), lam, next_value.unsqueeze(-1),
                                        reward.unsqueeze(-1), never, never, rolling_gamma=True)
    return returns.squeeze(-1)


def reach_weights(cont: torch.Tensor) -> torch.Tensor:
    """w_t = prod_{k<t} c_k (B, T): how much of the probability mass reaches step t alive."""
    return torch.cat([torch.ones_like(cont[:, :1]), cont[:, :-1]], 1).cumprod(1)


def actor_critic_losses(agent: ActorCritic, rollout: dict[str, torch.Tensor], valid: torch.Tensor
                        ) -> tuple[torch.Tensor, dict[str, float]]:
    """The actor's and critic's losses on an imagined rollout (see the module's docstring), and
    what to log. `valid` (B, A): the actions each rollout's task has. Updates the return scale S."""
    config = agent.config
    features = rollout["features"].detach()  # the world model gets no gradient from here
    with torch.no_grad():
        next_value = agent.value(features[:, 1:], slow=True)
        returns = lambda_returns(rollout["reward"], rollout["cont"], next_value, config.gamma, config.lam)
        weights = reach_weights(rollout["cont"])
        spread = torch.quantile(returns, 0.95) - torch.quantile(returns, 0.05)
        agent.scale.lerp_(spread, config.scale_ema)
    now = features[:, :-1]
    critic_logits = agent.critic(now)
    critic_loss = agent.returns.loss(critic_logits, symlog(returns))
    policy = agent.policy(now, valid.unsqueeze(1).expand(-1, now.shape[1], -1))
    with torch.no_grad():
        advantage = (returns - symexp(agent.returns.decode(critic_logits))) / agent.scale.clamp(min=1.0)
    actor_loss = -(advantage * policy.log_prob(rollout["actions"])) - config.entropy * policy.entropy()
    total = weights.sum().clamp(min=1.0)
    loss = ((actor_loss + critic_loss) * weights).sum() / total
    logged = {"actor": float((actor_loss.detach() * weights).sum() / total),
              "critic": float((critic_loss.detach() * weights).sum() / total),
              "return": float(returns[:, 0].mean()), "entropy": float(policy.entropy().detach().mean()),
              "scale": float(agent.scale), "continuation": float(weights[:, -1].mean())}
    return loss, logged


def actor_critic_step(agent: ActorCritic, optimizers: dict[str, torch.optim.Optimizer], model: WorldActionModel,
                      start: torch.Tensor, task: torch.Tensor, obs_mask: torch.Tensor,
                      generator: torch.Generator | None = None) -> dict[str, Any]:
    """One update of the actor and the critic on rollouts imagined from `start`; the slow critic follows."""
    config = agent.config
    rollout = imagine(model, agent, start, task, obs_mask, config.horizon * config.contexts, generator,
                      restart_every=config.horizon)
    loss, logged = actor_critic_losses(agent, rollout, model.valid_actions[task])
    for optimizer in optimizers.values():
        optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for part in ("actor", "critic"):
        nn.utils.clip_grad_norm_(getattr(agent, part).parameters(), agent.config.grad_clip)
    for optimizer in optimizers.values():
        optimizer.step()
    agent.update_slow()
    return logged


def make_optimizers(agent: ActorCritic) -> dict[str, torch.optim.Optimizer]:
    config = agent.config
    return {"actor": torch.optim.Adam(agent.actor.parameters(), lr=config.actor_lr, eps=1e-5),
            "critic": torch.optim.Adam(agent.critic.parameters(), lr=config.critic_lr, eps=1e-5)}

