"""Stage 3: fine-tune a world-action model on a held-out task's few-shot data.

Every offline method (`pretrained`, `scratch`, `bc`, and any defined in config) trains the same
architecture on the same slice of the task's behaviour data (`wmrl.data.windows.few_shot`) for
the same number of gradient steps: with the joint objective of `wmrl.rl.objectives`, weighted per
method, or (objective dt) as a Decision Transformer with the return-conditioned objective of
`wmrl.rl.rcsl`, optionally through LoRA adapters (peft) merged into the weights when saved. The
last episodes of the slice are held out: the checkpoint with the lowest loss on them (the
method's own objective) is the "best" one; evaluation episodes never choose it.

Outputs, written last: ``last.pt`` and ``best.pt`` (as ``model.pt`` of pretraining, plus "task"
and "step"; a Decision Transformer's also its "decision" settings, the training episodes' best
return and which modules came from pretraining), ``curve.parquet`` (validation metrics by
gradient step), ``model.mlflow.json``.
"""

from __future__ import annotations

import copy
import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import polars as pl
import torch

from wmrl import tracking
from wmrl.data import Dataset, open_dataset
from wmrl.data.windows import ObsLayout, read_few_shot, split_episodes, task_steps
from wmrl.files import claim_work_dir, load_checkpoint, save_checkpoint
from wmrl.jobs import FinetuneSpec, check_spec
from wmrl.models.decision_transformer import load_pretrained
from wmrl.models.serving import world_action_pyfunc
from wmrl.models.world_model import ModelShape
from wmrl.train.loop import BEST, fit, model_weights, suite_shape
from wmrl.train.module import WindowDataModule, WorldModelModule

log = logging.getLogger("wmrl")


@dataclass
class Setup:
    """What a fine-tuning run trains: the module (model, target, loss) and its windows of the slice."""

    module: WorldModelModule
    data: WindowDataModule
    dataset: Dataset
    shape: ModelShape
    layout: ObsLayout
    best_return: float  # the best episode return of the training episodes (a DT's target return scale)
    from_pretraining: list[str]  # the model's top-level modules whose weights came from pretraining

    def checkpoint(self, spec: dict[str, Any], step: int, weights: dict[str, torch.Tensor] | None = None
                   ) -> dict[str, Any]:
        """The model now (or with `weights`, a Lightning checkpoint's), as ``last.pt``/``best.pt``
        hold it: model.pt's keys plus task and step, LoRA adapters merged into the weights."""
        state = self.module.model.state_dict() if weights is None else weights
        if is_peft(self.module.model):  # merge a copy: training goes on with the adapters
            model = copy.deepcopy(self.module.model)
            model.load_state_dict(state)
            state = model.merge_and_unload().state_dict()
        return {"state_dict": state, "shape": asdict(self.shape), "model": dict(spec["model"]),
                "tasks": list(spec["suite"]), "layout": self.layout.features, "task": spec["task"], "step": step,
                "decision": spec["decision"], "best_return": self.best_return,
                "from_pretraining": self.from_pretraining}

    def parameters(self) -> tuple[int, int]:
        """The model's parameters: trained ones, and all (adapters merged)."""
        named = list(self.module.model.named_parameters())
        trained = sum(p.numel() for _, p in named if p.requires_grad)
        return trained, sum(p.numel() for name, p in named if ".lora_" not in name)  # merged: no adapter weights


def setup(spec: dict[str, Any]) -> Setup:
    """The module and data of the fine-tuning run `spec` describes, seeded, weights loaded."""
    cfg, seed, task, suite = spec["finetune"], spec["seed"], spec["task"], list(spec["suite"])
    if task not in spec["heldout_tasks"] and not spec["data"]["control"]:
        raise ValueError(f"fine-tuning runs on held-out tasks (or the transfer control's held-back data); {task!r} "
                         f"is not one of {spec['heldout_tasks']}")
    dataset = open_dataset(spec["inputs"]["dataset"])
    if dataset.card["task"] != task:
        raise ValueError(f"{dataset.directory} holds task {dataset.card['task']!r}, not {task!r}")
    name = str(dataset.directory)
    data = spec["data"]
    frame = read_few_shot(dataset, data["transitions"], data["start"], data["largest"])
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
    module = WorldModelModule(asdict(shape), spec["model"], spec["loss"], optim, suite, spec["decision"])
    loaded = start_from(module, spec["inputs"]["pretrained"], shape) if spec["init"] == "pretrained" else []
    lora = (spec["decision"] or {}).get("lora")
    if lora:
        add_adapters(module, lora)
    training = split_episodes(frame, "train", cfg["holdout_fraction"], name)
    best_return = float(training.group_by("episode").agg(pl.col("reward").sum())["reward"].max())
    return Setup(module, data, dataset, shape, layout, best_return, loaded)


def finetune(spec: FinetuneSpec, out: dict[str, str], threads: int = 1) -> None:
    """Fine-tune as `spec` describes; write the files named in `out` (last, best, curve, mlflow)."""
    check_spec(spec, FinetuneSpec)
    torch.set_num_threads(threads)
    resume = claim_work_dir(Path(spec["work_dir"]), spec)
    run = setup(spec)
    cfg, task, card = spec["finetune"], spec["task"], run.dataset.card
    name = str(run.dataset.directory)
    fitted = fit(run.module, run.data, spec, cfg, resume, {name: card}, keep_best=True)
    if not fitted.primary:
        return  # another data-parallel process: rank zero writes the outputs

    best_weights, best_step = model_weights(fitted.checkpoints / BEST)
    save_checkpoint(run.checkpoint(spec, best_step, best_weights), out["best"])
    pl.DataFrame(fitted.curve).write_parquet(out["curve"])
    inputs = ("obs", "actions", "task") + (("return_to_go",) if spec["decision"] else ())
    example = {k: v[:2].numpy() for k, v in run.data.heldout[task][0].items() if k in inputs}
    model_uri = tracking.register_model(fitted.run_id, run.checkpoint(spec, cfg["steps"]), out["last"],
                                        spec["registered_model"], spec["alias"], example, world_action_pyfunc())
    trained, total = run.parameters()
    tracking.write_record(out["mlflow"], fitted.run_id, spec, model_uri, {name: card}, total,
                          training=fitted.training(cfg["steps"]), trained_parameters=trained,
                          from_pretraining=run.from_pretraining)
    log.info("fine-tuned %s on %s: best checkpoint at step %d of %d", spec["method"], task, best_step, cfg["steps"])


def start_from(module: WorldModelModule, path: str, shape) -> list[str]:
    """Load pretrained weights into the model (and its target network, if it has one); returns
    the model's top-level modules that came from pretraining."""
    pretrained = pretrained_checkpoint(path, shape)
    if module.target is None:
        return load_pretrained(module.model, pretrained["state_dict"])
    module.model.load_state_dict(pretrained["state_dict"])
    module.target.load_state_dict(pretrained["state_dict"])
    return sorted({key.split(".")[0] for key in pretrained["state_dict"]})


def pretrained_checkpoint(path: str, shape) -> dict[str, Any]:
    """A pretrained model.pt, checked to have this suite's model shape."""
    pretrained = load_checkpoint(path)
    if pretrained["shape"] != asdict(shape):
        raise ValueError(f"{path}: the pretrained model's shape {pretrained['shape']} is not this suite's "
                         f"{asdict(shape)}; rerun pretraining")
    return pretrained


def add_adapters(module: WorldModelModule, lora: dict[str, Any]) -> None:
    """Wrap the model with peft's LoRA adapters on the `lora["target_modules"]` linear layers; all
    else is frozen except the modules named in `lora["trainable"]`."""
    from peft import LoraConfig, get_peft_model

    model = get_peft_model(module.model, LoraConfig(r=lora["rank"], lora_alpha=lora["alpha"],
                                                    target_modules=list(lora["target_modules"])))
    for part in lora["trainable"]:
        if not hasattr(model.get_base_model(), part):
            raise ValueError(f"decision.lora.trainable names {part!r}, which the model does not have")
        getattr(model.get_base_model(), part).requires_grad_(True)
    module.model = model


def is_peft(model: torch.nn.Module) -> bool:
    """Whether `model` carries peft adapters (peft is imported only by runs that add them)."""
    peft = sys.modules.get("peft")
    return peft is not None and isinstance(model, peft.PeftModel)
