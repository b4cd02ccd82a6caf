"""World-model quality: k-step open-loop prediction error on held-out episodes.

From the first observation of a held-out window, the model is fed the real actions and its own
predicted observations (the most likely grid, the predicted vector or frame) for k = 1..H steps;
the error at k compares the k-th prediction with the real observation on the task's own features:
the fraction of wrong cells for grids, the mean squared error for vectors and for frames (pixel
intensities scaled to [0, 1]). A model that predicts
"nothing changes" (the first observation repeated) is reported beside it as the floor to beat.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from wmrl.data import open_dataset
from wmrl.data.windows import WindowSampler, kept_episodes, load_steps
from wmrl.evaluate.memory import memory_probe
from wmrl.evaluate.rollout import task_view
from wmrl.jobs import WorldModelSpec, check_spec
from wmrl.models.checkpoint import load_model
from wmrl.models.world_model import WorldActionModel

PROBE_SCHEMA = {"size": pl.String, "backbone": pl.String, "seed": pl.Int64, "task": pl.String, "delay": pl.Int64,
                "accuracy": pl.Float64, "chance": pl.Float64, "episodes": pl.Int64}


@torch.no_grad()
def open_loop_errors(model: WorldActionModel, batch: dict[str, torch.Tensor], obs_mask: torch.Tensor
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per horizon k = 1..K: summed error of the model, of "nothing changes", and the count of
    real transitions, over a batch of windows (obs (B, K+1, …), actions (B, K), mask (B, K))."""
    obs, actions, task, mask = batch["obs"], batch["actions"], batch["task"], batch["mask"]
    kind = model.shape.obs_kind
    _, state = model.start(model.tokens(obs[:, :1], actions[:, :0], task))
    model_error, still_error, counts = [], [], []
    predicted = obs[:, 0]
    for k in range(actions.shape[1]):
        features, state = model.advance(model.action_embedding(actions[:, k]), state)
        predicted = model.predicted_obs(model.answer_heads(features, predicted, actions[:, k])["next_obs"]) * obs_mask
        real, valid = obs[:, k + 1], mask[:, k].float()
        model_error.append(float((observation_error(predicted, real, obs_mask, kind) * valid).sum()))
        still_error.append(float((observation_error(obs[:, 0], real, obs_mask, kind) * valid).sum()))
        counts.append(float(valid.sum()))
        _, state = model.advance(model.obs_tokens(predicted, task), state)
    return np.array(model_error), np.array(still_error), np.array(counts)


def observation_error(guess: torch.Tensor, real: torch.Tensor, obs_mask: torch.Tensor, kind: str) -> torch.Tensor:
    """Per window (B,): the fraction of wrong cells (grids) or the mean squared error (vectors;
    frames on the [0, 1] intensity scale) over the task's own features."""
    scale = 255.0 if kind == "image" else 1.0
    wrong = (guess != real).float() if kind == "grid" else ((guess - real) / scale).pow(2)
    return (wrong * obs_mask).flatten(1).sum(1) / obs_mask.sum()


def world_model_error(spec: WorldModelSpec, out: str, probe_out: str) -> pl.DataFrame:
    """Open-loop error vs horizon of the pretrained model on each source task's held-out episodes
    (`out`), and the memory probe's accuracy at `spec["probe_delays"]` (`probe_out`; no rows when
    there are none: wmrl.evaluate.memory)."""
    check_spec(spec, WorldModelSpec)
    torch.set_num_threads(1)
    model, checkpoint = load_model(spec["model"])
    rows, probe_rows = [], []
    labels = {"size": spec["size"], "backbone": spec["backbone"], "seed": spec["seed"]}
    datasets = {task: [open_dataset(d) for d in spec["datasets"][task]] for task in spec["tasks"]}
    kept = kept_episodes(datasets, spec["held_back"])  # the held-out episodes of pretraining's own split
    for task in spec["tasks"]:
        steps = load_steps(datasets[task], task, checkpoint["tasks"].index(task), "heldout", spec["holdout_fraction"],
                           kept)
        layout, obs_mask = task_view(model, checkpoint, task)
        sampler = WindowSampler([steps], layout, spec["horizon"])
        batch = {k: torch.from_numpy(v) for k, v in
                 sampler.sample(spec["windows"], np.random.default_rng([spec["seed"], 7])).items()}
        model_error, still_error, counts = open_loop_errors(model, batch, obs_mask)
        for k in np.flatnonzero(counts):  # horizons no held-out window reaches (episodes shorter) have no row
            for predictor, errors in (("model", model_error), ("nothing changes", still_error)):
                rows.append({**labels, "task": task, "horizon": int(k) + 1, "predictor": predictor,
                             "error": errors[k] / counts[k], "windows": int(counts[k])})
        if spec["probe_delays"]:
            episodes = WindowSampler([steps], layout, max(spec["probe_delays"]))
            probe_rows += [{**labels, "task": task, **row} for row in
                           memory_probe(model, episodes, 0, obs_mask, spec["probe_delays"], spec["seed"])]
    table = pl.DataFrame(rows)
    table.write_parquet(out)
    pl.DataFrame(probe_rows, schema=PROBE_SCHEMA).write_parquet(probe_out)
    return table
