"""Supervised pretraining of an in-context RL model (`wmrl.icrl.methods`: DPT or AD) on history
datasets.

Data contract: `wmrl.icrl.histories` (``histories.parquet`` + ``card.json``, format
``wmrl.icrl/2``, of the kind the method learns from); its one checked reader,
`wmrl.icrl.histories.read_histories`, serves here too, and the method turns the rows into arrays
(`wmrl.icrl.arrays`).

Training is resumable through `wmrl.train.loop.fit` (it takes any LightningModule and
LightningDataModule): batch n is drawn with a generator seeded with (seed, n), so a resumed job sees
the batches an unbroken one would; the histories of the last `holdout_fraction` of the tasks are
never trained on and are the validation set (the method's metrics). The learning rate is constant
(DPT's) or decays along a cosine to 0 over the run (`schedule`). Output ``model.pt`` (`save_model`):
{"method", "state_dict", "shape", "config", "card", "snapshots": {step: state_dict} at every
validation and the last step}, loadable with ``torch.load(weights_only=True)``; `load_model`
rebuilds the model, final or at a snapshot (the in-context learning curve's checkpoints).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from wmrl import tracking
from wmrl.files import claim_work_dir, load_checkpoint, save_checkpoint
from wmrl.icrl.histories import HISTORIES, read_histories
from wmrl.icrl.methods import ICRL_METHODS, IcrlMethod
from wmrl.jobs import IcrlPretrainSpec, check_spec
from wmrl.train.loop import Snapshots, fit
from wmrl.train.module import WindowStream, loader

log = logging.getLogger("wmrl")


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}


def optimizer_schedule(optimizer: torch.optim.Optimizer, schedule: str, steps: int):
    """Lightning's optimizer configuration: the constant rate, or lr_t = lr (1 + cos(pi t / steps)) / 2."""
    if schedule == "constant":
        return optimizer
    if schedule != "cosine":
        raise ValueError(f"learning-rate schedule {schedule!r} is not one of constant, cosine")
    cosine = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                               lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


class IcrlModule(L.LightningModule):
    """A method's model and its metrics (the loss among them); AdamW with weight decay."""

    def __init__(self, method: str, shape: dict[str, int], config: dict[str, Any], steps: int = 0,
                 schedule: str = "constant"):
        super().__init__()
        self.save_hyperparameters()
        self.method: IcrlMethod = ICRL_METHODS[method]
        self.config = self.method.model_config(config)
        self.steps, self.schedule = steps, schedule
        self.model = self.method.build(shape, self.config)

    def training_step(self, batch, batch_index):
        metrics = self.method.metrics(self.model, batch)
        self.log("train/loss", metrics["loss"], prog_bar=True)
        self.log_dict({f"train/{name}": value for name, value in metrics.items() if name != "loss"})
        return metrics["loss"]

    def validation_step(self, batch, batch_index):
        size = len(next(iter(batch.values())))
        self.log_dict({f"val/{name}": value for name, value in self.method.metrics(self.model, batch).items()},
                      batch_size=size)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.learning_rate,
                                      weight_decay=self.config.weight_decay)
        return optimizer_schedule(optimizer, self.schedule, self.steps)


class BatchSampler:
    """A method's training batches as `WindowStream` draws them: `sample(size, rng)`."""

    def __init__(self, method: IcrlMethod, arrays, config):
        self.method, self.arrays, self.config = method, arrays, config

    def sample(self, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return self.method.batch(self.arrays, size, rng, self.config)


class HistoryData(L.LightningDataModule):
    """Training histories as an endless deterministic stream of batches (`WindowStream`: batch n
    drawn with the generator (seed, n), each data-parallel process taking its share), validation
    histories (other training tasks') as the method's fixed validation batches."""

    def __init__(self, method: IcrlMethod, config, train, validation, batch_size: int, seed: int):
        super().__init__()
        self.sampler = BatchSampler(method, train, config)
        self.method, self.config, self.validation = method, config, validation
        self.batch_size, self.seed = batch_size, seed

    def train_dataloader(self):
        trainer = self.trainer
        return loader(WindowStream(lambda step: self.sampler, self.batch_size, self.seed, lambda: trainer.global_step,
                                   trainer.global_rank, trainer.world_size))

    def val_dataloader(self):
        if not len(self.validation):
            return loader([])
        return loader([to_tensors(batch) for batch in self.method.validation(self.validation, self.batch_size,
                                                                             self.config)])


def model_checkpoint(method: IcrlMethod, model: nn.Module, shape: dict[str, int], card: dict[str, Any] | None = None,
                     snapshots: dict[int, dict[str, torch.Tensor]] | None = None) -> dict[str, Any]:
    """The model as plain dicts and tensors (weights-only loadable); `snapshots`: its weights at
    earlier gradient steps (`wmrl.train.loop.Snapshots`), kept under their step."""
    return {"method": method.name, "state_dict": model.state_dict(), "shape": dict(shape),
            "config": asdict(model.config), "card": dict(card or {}),
            "snapshots": {str(step): weights for step, weights in (snapshots or {}).items()}}


def save_model(method: IcrlMethod, model: nn.Module, shape: dict[str, int], path: Path | str,
               card: dict[str, Any] | None = None, snapshots: dict[int, dict[str, torch.Tensor]] | None = None) -> None:
    """`model_checkpoint`, written whole."""
    save_checkpoint(model_checkpoint(method, model, shape, card, snapshots), path)


def load_model(path: Path | str) -> tuple[IcrlMethod, nn.Module, dict[int, nn.Module]]:
    """The method, final model and the model at each snapshot's gradient step saved by `save_model`,
    from one weights-only read of the file, every model in eval mode."""
    saved = load_checkpoint(path)
    method = ICRL_METHODS[saved["method"]]
    config = method.model_config(saved["config"])

    def model(weights: dict[str, torch.Tensor]) -> nn.Module:
        built = method.build(saved["shape"], config)
        built.load_state_dict(weights)
        return built.eval()

    return method, model(saved["state_dict"]), {int(step): model(weights)
                                                 for step, weights in sorted(saved["snapshots"].items(),
                                                                             key=lambda item: int(item[0]))}


def icrl_pyfunc():
    """The registered form of an in-context model (DPT, AD; wmrl.train.icrl.save_model's file):
    `predict` takes a dict of its forward's arrays by name (`IcrlMethod.inputs`: DPT's query_state
    (B,) and states, actions, rewards, next_states (B, T); AD's states, prev_actions, prev_rewards
    (B, T)) and returns its action logits, (B, T + 1, actions) or (B, T, actions)."""
    import mlflow.pyfunc

    class IcrlPyfunc(mlflow.pyfunc.PythonModel):
        def load_context(self, context):
            self.method, self.model, _ = load_model(context.artifacts["checkpoint"])

        def predict(self, context, model_input, params=None):
            import torch

            with torch.no_grad():
                return self.model(*(torch.as_tensor(model_input[name]) for name in self.method.inputs)).numpy()

    return IcrlPyfunc()


def any_length_signature(example: dict):
    """An MLflow signature for the named arrays of `example` in which every dimension is free (-1):
    an in-context model reads contexts of any length up to its own."""
    import numpy as np
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Schema, TensorSpec

    return ModelSignature(inputs=Schema([TensorSpec(np.dtype(value.dtype), (-1,) * value.ndim, name)
                                         for name, value in example.items()]))


def dataset_card(card: dict[str, Any]) -> dict[str, Any]:
    """The card as `tracking.log_dataset_inputs` reads it: with the table's sha256 as its one shard
    unless the card lists shards."""
    if "shards" in card:
        return card
    return {**card, "shards": [{"file": HISTORIES, "sha256": card["sha256"]}]}


def train_icrl(spec: IcrlPretrainSpec, out: dict[str, str], threads: int = 1) -> IcrlModule:
    """Train spec["method"] on spec["dataset"] (a history directory) for spec["model"]["steps"]
    gradient steps and write out["model"] (`model_checkpoint`) and, when asked, out["mlflow"]
    (`tracking.write_record`; the model then registered in MLflow, `tracking.register_model`).
    spec["model"]: the model's config fields and the loop's settings (steps, schedule,
    checkpoint_every, validate_every, grad_clip, trainer, holdout_fraction); the job keys of
    `loop.fit` (work_dir, run_name, mlflow_experiment, tags, registered_model, alias) and "seed"."""
    check_spec(spec, IcrlPretrainSpec)
    torch.set_num_threads(threads)
    method, settings, seed = ICRL_METHODS[spec["method"]], spec["model"], spec["seed"]
    resume = claim_work_dir(Path(spec["work_dir"]), spec)
    frame, card = read_histories(spec["dataset"])
    train, validation = method.arrays(frame, card).split(settings["holdout_fraction"])
    L.seed_everything(seed, workers=True)
    shape = method.shape(card)
    module = IcrlModule(method.name, shape, settings, settings["steps"], settings["schedule"])
    log.info("%s: %s parameters, %s backbone, %d training and %d validation histories (other tasks)", method.name,
             f"{module.model.parameter_count():,}", module.config.backbone, len(train), len(validation))
    data = HistoryData(method, module.config, train, validation, module.config.batch_size, seed)
    used = {str(spec["dataset"]): dataset_card(card)}
    snapshots = Snapshots(settings["validate_every"])
    fitted = fit(module, data, spec, settings, resume, used, extra_callbacks=(snapshots,))
    if fitted.primary:
        checkpoint = model_checkpoint(method, module.model, shape, card,
                                      {**snapshots.weights, settings["steps"]: module.model.state_dict()})
        if "mlflow" not in out:
            save_checkpoint(checkpoint, out["model"])
            return module
        drawn = method.batch(train, 2, np.random.default_rng(seed), module.config)
        example = {name: drawn[name] for name in method.inputs}  # the registered model's input signature
        model_uri = tracking.register_model(fitted.run_id, checkpoint, out["model"], spec["registered_model"],
                                            spec["alias"], example, icrl_pyfunc(),
                                            signature=any_length_signature(example))
        tracking.write_record(out["mlflow"], fitted.run_id, spec, model_uri, used, module.model.parameter_count(),
                              training=fitted.training(settings["steps"]))
    return module
