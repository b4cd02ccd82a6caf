"""Stage 2: pretrain one world-action model on the source tasks' offline datasets.

Resumable through `wmrl.train.loop.fit`. Outputs, written last:

* ``model.pt`` — {"state_dict", "shape", "model", "tasks", "layout"}, loadable with
  ``torch.load(weights_only=True)``; "tasks" lists the suite in task-embedding order;
* ``model.mlflow.json`` — its lineage (`wmrl.tracking.write_record`);
* ``heldout.parquet`` — per source task and head, the loss on held-out episodes of the trained
  model and of the same architecture untrained (same seed).
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

import lightning as L
import polars as pl
import torch

from wmrl import tracking
from wmrl.data import open_dataset
from wmrl.data.windows import ReplayChunks, kept_episodes, load_steps
from wmrl.files import claim_work_dir
from wmrl.jobs import PretrainSpec, check_spec
from wmrl.models.serving import world_action_pyfunc
from wmrl.rl.objectives import joint_loss
from wmrl.train.loop import fit, suite_shape
from wmrl.train.module import WindowDataModule, WorldModelModule

log = logging.getLogger("wmrl")


def pretrain(spec: PretrainSpec, out: dict[str, str], threads: int = 1) -> None:
    """Train the model `spec` describes; write the files named in `out` (model, mlflow, heldout)."""
    check_spec(spec, PretrainSpec)
    torch.set_num_threads(threads)
    cfg, seed, tasks, suite = spec["pretrain"], spec["seed"], spec["tasks"], list(spec["suite"])
    resume = claim_work_dir(Path(spec["work_dir"]), spec)
    datasets = {task: [open_dataset(d) for d in dirs] for task, dirs in spec["datasets"].items()}
    leaked = {d.card["task"] for sets in datasets.values() for d in sets} & set(spec["heldout_tasks"])
    if leaked:
        raise ValueError(f"held-out tasks {sorted(leaked)} must never enter pretraining data")
    layout, shape = suite_shape(spec["suite"], cfg["channel_layout"], cfg["window"])
    kept = kept_episodes(datasets, spec["held_back"])  # the transfer control's episodes stay unseen
    for directory, episodes in kept.items():
        log.info("%s: pretraining reads its first %d episodes; the rest are held back for the transfer control",
                 directory, episodes)

    def load(task: str, part: str):
        if part == "train" and cfg["stream_rows"]:
            return ReplayChunks(datasets[task], task, suite.index(task), cfg["holdout_fraction"], cfg["stream_rows"],
                                seed, kept)
        return load_steps(datasets[task], task, suite.index(task), part, cfg["holdout_fraction"], kept)

    data = WindowDataModule(load, tasks, layout, cfg["window"], cfg["batch_size"], cfg["heldout_windows"], seed,
                            cfg["stream_refresh"])
    data.setup()

    def new_module() -> WorldModelModule:
        L.seed_everything(seed, workers=True)
        optim = {k: cfg[k] for k in ("learning_rate", "weight_decay", "warmup_steps", "steps", "target_update")}
        return WorldModelModule(asdict(shape), spec["model"], cfg["loss"], optim, suite)

    untrained = heldout_losses(new_module(), data.heldout)
    module = new_module()
    log.info("model: %s parameters, %s backbone, layout %s", f"{module.model.parameter_count():,}",
             spec["model"]["backbone"], layout.shape)
    used = {str(d.directory): d.card for sets in datasets.values() for d in sets}
    fitted = fit(module, data, spec, cfg, resume, used)
    if not fitted.primary:
        return  # another data-parallel process: rank zero writes the outputs

    trained = heldout_losses(module, data.heldout)
    table = pl.DataFrame([{"task": t, "head": h, "trained": trained[t][h], "untrained": untrained[t][h]}
                          for t in tasks for h in trained[t]])
    for row in table.iter_rows(named=True):
        fitted.logger.experiment.log_metric(fitted.run_id, f"heldout/{row['task']}/{row['head']}", row["trained"])
    checkpoint = {"state_dict": module.model.state_dict(), "shape": asdict(shape), "model": dict(spec["model"]),
                  "tasks": suite, "layout": layout.features}
    example = {k: v[:2].numpy() for k, v in data.heldout[tasks[0]][0].items() if k in ("obs", "actions", "task")}
    model_uri = tracking.register_model(fitted.run_id, checkpoint, out["model"], spec["registered_model"],
                                        spec["alias"], example, world_action_pyfunc())
    tracking.write_record(out["mlflow"], fitted.run_id, spec, model_uri, used, module.model.parameter_count(),
                          training=fitted.training(cfg["steps"]))
    table.write_parquet(out["heldout"])
    log.info("held-out losses (trained vs untrained):\n%s", table)


@torch.no_grad()
def heldout_losses(module: WorldModelModule, heldout: dict[str, list[dict[str, torch.Tensor]]]
                   ) -> dict[str, dict[str, float]]:
    """Mean loss of every trained head (every term of the joint loss with a weight) on each task's
    held-out windows."""
    module.eval()
    result = {}
    for task, batches in heldout.items():
        sums: dict[str, float] = {}
        windows = 0
        for batch in batches:
            _, parts = joint_loss(module.model, module.target, batch, module.weights)
            n = int(batch["mask"].sum())
            windows += n
            for head, value in parts.items():
                sums[head] = sums.get(head, 0.0) + float(value) * n
        result[task] = {head: total / max(windows, 1) for head, total in sums.items()}
    module.train()
    return result
