"""Stage 2: pretrain one world-action model on the source tasks' offline datasets.

Resumable: Lightning checkpoints and the MLflow run id live in `spec["work_dir"]`, never in the
declared outputs; a killed job rerun by Snakemake resumes from the last checkpoint
(``ckpt_path="last"``) and logs into the same MLflow run. Outputs, written last:

* ``model.pt`` — {"state_dict", "shape", "model", "tasks", "layout"}, loadable with
  ``torch.load(weights_only=True)``;
* ``model.mlflow.json`` — {"run_id", "experiment", "model_uri"};
* ``heldout.parquet`` — per task and head, the loss on held-out episodes of the trained model and
  of the same architecture untrained (same seed).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import torch

from wmrl import tracking
from wmrl.data import open_dataset
from wmrl.data.windows import obs_layout
from wmrl.models.world_model import ModelShape
from wmrl.rl.objectives import joint_loss
from wmrl.progress import interactive
from wmrl.train.module import ProgressLines, WindowDataModule, WorldModelModule, claim_work_dir

log = logging.getLogger("wmrl")
HEADS = ("next_obs", "reward", "termination", "td", "value", "cql")


def pretrain(spec: dict[str, Any], out: dict[str, str], threads: int = 1) -> None:
    """Train the model `spec` describes; write the files named in `out` (model, mlflow, heldout)."""
    torch.set_num_threads(threads)
    cfg, seed, tasks = spec["pretrain"], spec["seed"], spec["tasks"]
    work_dir = Path(spec["work_dir"])
    resume = claim_work_dir(work_dir, spec)
    datasets = {task: [open_dataset(d) for d in dirs] for task, dirs in spec["datasets"].items()}
    leaked = {d.card["task"] for sets in datasets.values() for d in sets} & set(spec["heldout_tasks"])
    if leaked:
        raise ValueError(f"held-out tasks {sorted(leaked)} must never enter pretraining data")
    layout = obs_layout({task: sets[0].card for task, sets in datasets.items()}, cfg["channel_layout"])
    actions = {sets[0].card["action"].get("n") for sets in datasets.values()}
    if len(actions) != 1:
        raise ValueError(f"source tasks have different discrete action counts {sorted(actions)}")
    shape = ModelShape(layout.kind, layout.shape, actions.pop(), len(tasks), cfg["window"])
    data = WindowDataModule(datasets, tasks, layout, cfg["window"], cfg["batch_size"], cfg["holdout_fraction"],
                            cfg["heldout_windows"], seed)
    data.setup()
    heldout = data.heldout

    def new_module() -> WorldModelModule:
        L.seed_everything(seed, workers=True)
        optim = {k: cfg[k] for k in ("learning_rate", "weight_decay", "warmup_steps", "steps", "target_update")}
        return WorldModelModule(asdict(shape), spec["model"], cfg["loss"], optim, tasks)

    untrained = heldout_losses(new_module(), heldout)
    module = new_module()
    log.info("model: %s parameters, %s backbone, layout %s", f"{module.model.parameter_count():,}",
             spec["model"]["backbone"], layout.shape)

    tags = {**spec["tags"], "config_hash": tracking.config_hash(spec), "git_sha": tracking.git_sha()}
    run_id = tracking.start_or_resume_run(work_dir, spec["mlflow_experiment"], spec["run_name"], tags)
    used = {str(d.directory): d.card for sets in datasets.values() for d in sets}
    tracking.log_dataset_inputs(run_id, used)
    logger = L.pytorch.loggers.MLFlowLogger(experiment_name=spec["mlflow_experiment"],
                                            tracking_uri=tracking.tracking_uri(), run_id=run_id)
    checkpoints = L.pytorch.callbacks.ModelCheckpoint(dirpath=work_dir / "checkpoints", save_last=True,
                                                      save_top_k=0, every_n_train_steps=cfg["checkpoint_every"])
    callbacks = [checkpoints] + ([] if interactive() else [ProgressLines(cfg["steps"], spec["run_name"])])
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=cfg["steps"], deterministic=True, logger=logger,
        callbacks=callbacks, gradient_clip_val=cfg["grad_clip"], val_check_interval=cfg["validate_every"],
        check_val_every_n_epoch=None, num_sanity_val_steps=0, log_every_n_steps=25,
        enable_progress_bar=interactive(), enable_model_summary=False, default_root_dir=work_dir,
    )
    if resume:
        log.info("resuming from %s", work_dir / "checkpoints" / "last.ckpt")
    trainer.fit(module, datamodule=data, ckpt_path="last" if resume else None)

    trained = heldout_losses(module, heldout)
    table = pl.DataFrame([{"task": t, "head": h, "trained": trained[t][h], "untrained": untrained[t][h]}
                          for t in tasks for h in HEADS])
    for row in table.iter_rows(named=True):
        logger.experiment.log_metric(run_id, f"heldout/{row['task']}/{row['head']}", row["trained"])
    checkpoint = {"state_dict": module.model.state_dict(), "shape": asdict(shape), "model": dict(spec["model"]),
                  "tasks": list(tasks), "layout": layout.features}
    example = {k: v[:2].numpy() for k, v in heldout[tasks[0]][0].items() if k in ("obs", "actions", "task")}
    model_uri = tracking.register_model(run_id, checkpoint, out["model"], spec["registered_model"], spec["alias"],
                                        example)
    Path(out["mlflow"]).write_text(json.dumps({"run_id": run_id, "experiment": spec["mlflow_experiment"],
                                               "model_uri": model_uri}, indent=1) + "\n")
    table.write_parquet(out["heldout"])
    log.info("held-out losses (trained vs untrained):\n%s", table)


@torch.no_grad()
def heldout_losses(module: WorldModelModule, heldout: dict[str, list[dict[str, torch.Tensor]]]
                   ) -> dict[str, dict[str, float]]:
    """Mean loss of every head on each task's held-out windows."""
    module.eval()
    result = {}
    for task, batches in heldout.items():
        sums = {h: 0.0 for h in HEADS}
        windows = 0
        for batch in batches:
            _, parts = joint_loss(module.model, module.target, batch, module.weights)
            n = int(batch["mask"].sum())
            windows += n
            for h in HEADS:
                sums[h] += float(parts[h]) * n
        result[task] = {h: sums[h] / max(windows, 1) for h in HEADS}
    module.train()
    return result
