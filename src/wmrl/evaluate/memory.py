"""Memory probe: do the backbone's features still hold the episode's first observation d steps later?

S4WM asks whether a world model remembers; this asks its features directly. On a source task's
held-out episodes every window starts at an episode's first step, the model reads the real
observations and actions (teacher forcing), and its features at the observation token of step d
feed a linear classifier (multinomial logistic regression) of the first observation's class: the
index of its one-hot, e.g. the card POPGym's RepeatFirst asks the agent to repeat, whose reward a
world model can only predict if it remembers that card. The classifier is fit on the even
episodes and scored on the odd ones; chance is 1 / classes. Features that forgot the first
observation score chance; a memoryless predictor scores chance at every d >= 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from wmrl.data.windows import WindowSampler
from wmrl.models.world_model import WorldActionModel


def first_observation_classes(first_obs: torch.Tensor, obs_mask: torch.Tensor) -> torch.Tensor:
    """The class (B,) of each first observation (B, *obs_shape): the index of its one hot feature
    among the task's own. Observations that are not one-hot have no class to recall."""
    own = first_obs.flatten(1)[:, obs_mask.flatten() > 0]
    if not (((own == 0) | (own == 1)).all() and (own.sum(1) == 1).all()):
        raise ValueError("the memory probe recalls a one-hot observation (a Discrete space, e.g. POPGym's cards); "
                         "this task's observations are not one-hot")
    return own.argmax(1)


@torch.no_grad()
def probe_features(model: WorldActionModel, batch: dict[str, torch.Tensor], delays: list[int]) -> torch.Tensor:
    """Features (len(delays), B, dim) at the observation tokens o_d of windows from episode starts."""
    features = model.norm(model.backbone(model.tokens(batch["obs"], batch["actions"], batch["task"])))
    return features[:, [2 * d for d in delays]].transpose(0, 1)


def probe_accuracy(features: torch.Tensor, classes: torch.Tensor, train: torch.Tensor, count: int,
                   steps: int = 300, seed: int = 0) -> float:
    """Held-out accuracy of a logistic-regression probe fit (Adam, full batch, weight decay 1e-3)
    on the rows `train` and scored on the others."""
    torch.manual_seed(seed)
    mean, std = features[train].mean(0), features[train].std(0) + 1e-6
    x = (features - mean) / std
    probe = torch.nn.Linear(x.shape[1], count)
    optimiser = torch.optim.Adam(probe.parameters(), lr=0.05, weight_decay=1e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(probe(x[train]), classes[train]).backward()
        optimiser.step()
    with torch.no_grad():
        return float((probe(x[~train]).argmax(1) == classes[~train]).float().mean())


def memory_probe(model: WorldActionModel, sampler: WindowSampler, position: int, obs_mask: torch.Tensor,
                 delays: list[int], seed: int) -> list[dict[str, float]]:
    """Probe accuracy at each delay on the episodes of task `position` of `sampler` (windows of at
    least max(delays) steps), with the chance level and the number of episodes it was scored on."""
    if max(delays) > sampler.window:
        raise ValueError(f"memory probe delays reach {max(delays)} steps, beyond the model's window of {sampler.window}")
    batch = {k: torch.from_numpy(v) for k, v in sampler.episode_starts(position).items()}
    classes = first_observation_classes(batch["obs"][:, 0], obs_mask)
    count = int(obs_mask.sum())
    train = torch.arange(len(classes)) % 2 == 0
    if train.all() or not train.any():
        raise ValueError(f"the memory probe needs at least two held-out episodes, got {len(classes)}")
    features = probe_features(model, batch, delays)
    # an episode shorter than d has no observation token d: those episodes are left out at that delay
    lengths = batch["mask"].sum(1)
    rows = []
    for delay, at_delay in zip(delays, features, strict=True):
        alive = lengths >= delay
        fit, scored = int((train & alive).sum()), int((~train & alive).sum())
        accuracy = (probe_accuracy(at_delay[alive], classes[alive], train[alive], count, seed=seed)
                    if fit and scored else float("nan"))
        rows.append({"delay": delay, "accuracy": accuracy, "chance": 1.0 / count, "episodes": scored})
    return rows
