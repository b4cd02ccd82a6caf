"""Stage 3's d3rlpy peers (wmrl.peers.d3rlpy): one job trains a peer on a held-out task's few-shot
training episodes — exactly the rows `finetune` trains on: `read_few_shot`, then the slice's
episodes but its last `holdout_fraction` — for `finetune.steps` gradient steps.

Outputs (wmrl.methods.peer: PeerKind.files), each written under a ``.partial`` name and renamed, the record
last: ``last.pt`` (weights only: `wmrl.peers.d3rlpy.checkpoint`), ``curve.parquet`` (d3rlpy's mean
training losses over each epoch of `finetune.validate_every` steps, by gradient step) and
``model.mlflow.json`` (lineage, parameter count, and `training`: the gradient steps and the wall
seconds of d3rlpy's fit alone). A Decision Transformer peer reads `finetune.window` steps, as ours
do, and its checkpoint keeps the training episodes' best return (its target return's scale). The
job is one MLflow run: the peer's settings as params, the curve as metrics, the dataset as input. A killed job leaves no output that looks complete; its
rerun trains again from the start (a peer is short) and logs into the same run (its id is kept
under work/).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import polars as pl
import torch
from d3rlpy.dataset import MDPDataset

from wmrl import tracking
from wmrl.data import Dataset, open_dataset
from wmrl.data.windows import read_few_shot, split_episodes
from wmrl.files import claim_work_dir, publish
from wmrl.jobs import PeerSpec, check_spec
from wmrl.peers.d3rlpy import best_return, checkpoint, data_settings, parameter_count, plain_logs, to_mdp_dataset, train
from wmrl.progress import Progress

log = logging.getLogger("wmrl")


def train_peer(spec: PeerSpec, out: dict[str, str]) -> None:
    """Train the peer `spec` describes; write the files named in `out` (last, curve, mlflow)."""
    check_spec(spec, PeerSpec)
    torch.set_num_threads(1)
    plain_logs()
    task, settings, steps = spec["task"], spec["finetune"], spec["finetune"]["steps"]
    if task not in spec["heldout_tasks"] and not spec["data"]["control"]:
        raise ValueError(f"peers train on held-out tasks (or the transfer control's held-back data); {task!r} is "
                         f"not one of {spec['heldout_tasks']}")
    claim_work_dir(Path(spec["work_dir"]), spec)
    dataset = open_dataset(spec["inputs"]["dataset"])
    if dataset.card["task"] != task:
        raise ValueError(f"{dataset.directory} holds task {dataset.card['task']!r}, not {task!r}")
    name, kind = str(dataset.directory), dataset.card["obs"]["kind"]
    episodes = training_episodes(dataset, spec["data"], settings["holdout_fraction"])
    log.info("%s: %d training transitions in %d episodes of %s, %d gradient steps", spec["peer"],
             episodes.transition_count, len(episodes.episodes), name, steps)
    algo_settings = {**spec["settings"], **data_settings(spec["peer"], episodes, settings.get("window", 0))}
    progress = Progress(steps, spec["run_name"], unit="steps")
    trained = train(spec["peer"], algo_settings, kind, episodes, steps, min(settings["validate_every"], steps),
                    spec["seed"], lambda _, step: progress.update(step))
    progress.close()
    run_id = tracking.start_or_resume_run(Path(spec["work_dir"]), spec["mlflow_experiment"], spec["run_name"],
                                          tracking.run_tags(spec))
    tracking.log_dataset_inputs(run_id, {name: dataset.card})
    params = {"peer/algorithm": spec["peer"], **{f"peer/{key}": value for key, value in algo_settings.items()},
              "steps": steps, "transitions": episodes.transition_count, "episodes": len(episodes.episodes)}
    metrics = [(key, value, row["step"]) for row in trained.curve for key, value in row.items() if key != "step"]
    tracking.log_run(run_id, params, metrics + [("train/seconds", trained.seconds, trained.steps)])
    publish(out["last"], lambda path: torch.save(checkpoint(trained.algo, spec["peer"], algo_settings, kind,
                                                            best_return(episodes)), path))
    publish(out["curve"], lambda path: pl.DataFrame(trained.curve).write_parquet(path))
    publish(out["mlflow"], lambda path: tracking.write_record(
        path, run_id, spec, None, {name: dataset.card}, parameter_count(trained.algo),
        training={"steps": trained.steps, "seconds": trained.seconds}))
    log.info("%s on %s: %d gradient steps in %.1f s (%.0f steps/s), last losses %s", spec["method"], task,
             trained.steps, trained.seconds, trained.steps / trained.seconds, trained.curve[-1])


def training_episodes(dataset: Dataset, data: dict[str, Any], holdout_fraction: float) -> MDPDataset:
    """The transitions `finetune` trains on — the few-shot slice `data` ({transitions, start, largest})
    of `dataset`, all but its last `holdout_fraction` of episodes — as a d3rlpy dataset."""
    frame = read_few_shot(dataset, data["transitions"], data["start"], data["largest"])
    return to_mdp_dataset(split_episodes(frame, "train", holdout_fraction, str(dataset.directory)), dataset.card)
