"""Stage 3: fine-tune a world-action model on a held-out task's few-shot data.

Every offline method (`pretrained`, `scratch`, `bc`, and any defined in config) trains the same
architecture with the joint objective of `wmrl.rl.objectives`, weighted per method, on the same
slice of the task's behaviour data (`wmrl.data.windows.few_shot`) for the same number of gradient
steps. The last episodes of the slice are held out: the checkpoint with the lowest loss on them
(the method's own objective) is the "best" one; evaluation episodes never choose it.

Outputs, written last: ``last.pt`` and ``best.pt`` (as ``model.pt`` of pretraining, plus "task"
and "step"), ``curve.parquet`` (validation metrics by gradient step), ``model.mlflow.json``.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import torch

from wmrl import tracking
from wmrl.data import Dataset, open_dataset
from wmrl.data.windows import ObsLayout, read_few_shot, split_episodes, task_steps
from wmrl.models.world_model import ModelShape
from wmrl.train.loop import BEST, fit, model_weights, suite_shape
from wmrl.train.module import WindowDataModule, WorldModelModule, claim_work_dir

log = logging.getLogger("wmrl")


@dataclass
class Setup:
    """What a fine-tuning run trains: the module (model, target, loss) and its windows of the slice."""

    module: WorldModelModule
    data: WindowDataModule
    dataset: Dataset
    shape: ModelShape
    layout: ObsLayout

    def checkpoint(self, spec: dict[str, Any], step: int) -> dict[str, Any]:
        """The model now, as ``last.pt``/``best.pt`` hold it (model.pt's keys plus task and step)."""
        return self.module_checkpoint(self.module.model.state_dict(), spec, step)

    def module_checkpoint(self, state_dict: dict[str, torch.Tensor], spec: dict[str, Any], step: int
                          ) -> dict[str, Any]:
        return {"state_dict": state_dict, "shape": asdict(self.shape), "model": dict(spec["model"]),
                "tasks": list(spec["suite"]), "layout": self.layout.features, "task": spec["task"], "step": step}


def setup(spec: dict[str, Any]) -> Setup:
    """The module and data of the fine-tuning run `spec` describes, seeded, weights loaded."""
    cfg, seed, task, suite = spec["finetune"], spec["seed"], spec["task"], list(spec["suite"])
    if task not in spec["heldout_tasks"]:
        raise ValueError(f"fine-tuning runs on held-out tasks; {task!r} is not one of {spec['heldout_tasks']}")
    dataset = open_dataset(spec["inputs"]["dataset"])
    if dataset.card["task"] != task:
        raise ValueError(f"{dataset.directory} holds task {dataset.card['task']!r}, not {task!r}")
    name = str(dataset.directory)
    frame = read_few_shot(dataset, spec["data"]["transitions"], spec["data"]["start"])
    log.info("few-shot data: %d transitions in %d episodes from %s (policy steps %d..%d)",
             spec["data"]["transitions"], frame["episode"].n_unique(), name, frame["policy_step"].min(),
             frame["policy_step"].max())
    layout, shape = suite_shape(spec["suite"], spec["channel_layout"], spec["positions"])

    def load(task_name: str, part: str):
        part_frame = split_episodes(frame, part, cfg["holdout_fraction"], name)
        return task_steps(part_frame, dataset.card["obs"], task_name, suite.index(task_name))

    data = WindowDataModule(load, [task], layout, cfg["window"], cfg["batch_size"], cfg["heldout_windows"], seed)
    L.seed_everything(seed, workers=True)
    optim = {k: cfg[k] for k in ("learning_rate", "weight_decay", "warmup_steps", "steps", "target_update")}
    module = WorldModelModule(asdict(shape), spec["model"], spec["loss"], optim, suite)
    if spec["init"] == "pretrained":
        start_from(module, spec["inputs"]["pretrained"], shape)
    return Setup(module, data, dataset, shape, layout)


def finetune(spec: dict[str, Any], out: dict[str, str], threads: int = 1) -> None:
    """Fine-tune as `spec` describes; write the files named in `out` (last, best, curve, mlflow)."""
    torch.set_num_threads(threads)
    resume = claim_work_dir(Path(spec["work_dir"]), spec)
    run = setup(spec)
    cfg, task, card = spec["finetune"], spec["task"], run.dataset.card
    name = str(run.dataset.directory)
    fitted = fit(run.module, run.data, spec, cfg, resume, {name: card}, keep_best=True)
    if not fitted.primary:
        return  # another data-parallel process: rank zero writes the outputs

    best_weights, best_step = model_weights(fitted.checkpoints / BEST)
    torch.save(run.module_checkpoint(best_weights, spec, best_step), out["best"])
    pl.DataFrame(fitted.curve).write_parquet(out["curve"])
    example = {k: v[:2].numpy() for k, v in run.data.heldout[task][0].items() if k in ("obs", "actions", "task")}
    model_uri = tracking.register_model(fitted.run_id, run.checkpoint(spec, cfg["steps"]), out["last"],
                                        spec["registered_model"], spec["alias"], example)
    tracking.write_record(out["mlflow"], fitted.run_id, spec, model_uri, {name: card},
                          run.module.model.parameter_count(), training=fitted.training(cfg["steps"]))
    log.info("fine-tuned %s on %s: best checkpoint at step %d of %d", spec["method"], task, best_step, cfg["steps"])


def start_from(module: WorldModelModule, path: str, shape) -> None:
    """Load pretrained weights into the model and its target network."""
    pretrained = torch.load(path, map_location="cpu", weights_only=True)
    if pretrained["shape"] != asdict(shape):
        raise ValueError(f"{path}: the pretrained model's shape {pretrained['shape']} is not this suite's "
                         f"{asdict(shape)}; rerun pretraining")
    module.model.load_state_dict(pretrained["state_dict"])
    module.target.load_state_dict(pretrained["state_dict"])
