"""The in-context learning curve: how well a model names the task's optimal action as its context
grows, on held-out tasks only, at each training snapshot.

A model that has learnt in context reads its context, so its accuracy rises (and its cross-entropy
falls) with the context length T; one that has learnt only a prior over tasks is flat in T. For a
history of a held-out task with labels y_T (the oracle's action the model is asked for at context
length T), a model's curve is

    accuracy(T) = 1[argmax_a p_T(a) = y_T],    cross_entropy(T) = -log p_T(y_T),

averaged over the task's histories, then (in the report) over held-out tasks with a bootstrap CI.
DPT: the histories are the held-out tasks' pretraining-style contexts (bandits: the offline
evaluation's fixed histories; Dark Room: uniform transitions in the held-out rooms), T = 0..H, the
label the optimal action at the query state. AD (`wmrl.icrl.methods.AD.curve`): the last episodes
of held-out goals' learning histories (where the learner is the oracle), read per episode — T = 0,
one episode, two, ... — over each episode's steps up to its first reward (after it the token's
previous reward gives the goal away without any context). The report calls a model that has learnt in context
one whose accuracy gain from the shortest to the longest context is at least `MIN_CONTEXT_GAIN`
with a CI above 0 (`wmrl.icrl.context_report`).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

def position_scores(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, np.ndarray]:
    """Accuracy and cross-entropy (N, T) of logits (N, T, A) against labels (N, T)."""
    accuracy = (logits.argmax(-1) == labels).double()
    cross_entropy = F.cross_entropy(logits.transpose(1, 2), labels.long(), reduction="none").double()
    return {"context_accuracy": accuracy.numpy(), "context_cross_entropy": cross_entropy.numpy()}


def per_task(scores: dict[str, np.ndarray], task: np.ndarray, tasks: int) -> dict[str, np.ndarray]:
    """Each score (N, T) averaged over the histories of each task: (tasks, T)."""
    counts = np.bincount(task, minlength=tasks)[:, None]
    if (counts == 0).any():
        raise ValueError("every held-out task needs at least one history for the context curve")
    return {name: np.stack([np.bincount(task, weights=column, minlength=tasks) for column in values.T], 1) / counts
            for name, values in scores.items()}


@torch.no_grad()
def dpt_curve(model, histories: dict[str, np.ndarray], tasks: int) -> dict[str, np.ndarray]:
    """A DPT model's curve (tasks, H + 1) at context lengths 0..H on held-out histories (arrays
    `task`, `query_state`, `optimal_action` (N,) and `states`, `actions`, `rewards`,
    `next_states` (N, H))."""
    tensors = {name: torch.as_tensor(np.asarray(value)) for name, value in histories.items()}
    logits = model(tensors["query_state"].long(), tensors["states"].long(), tensors["actions"].long(),
                   tensors["rewards"].float(), tensors["next_states"].long())
    labels = tensors["optimal_action"].long().unsqueeze(1).expand(-1, logits.shape[1])
    return per_task(position_scores(logits, labels), np.asarray(histories["task"]), tasks)
