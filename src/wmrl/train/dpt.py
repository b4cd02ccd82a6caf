"""Supervised pretraining of a Decision-Pretrained Transformer (`wmrl.models.dpt`) on in-context
histories.

Data contract: `wmrl.icrl.histories` (``histories.parquet`` + ``card.json``, format
``wmrl.icrl/2``, the contexts kind); its one checked reader, `wmrl.icrl.histories.read_histories`, serves here too
(`load_histories` turns its rows into arrays).

Training is resumable through `wmrl.train.loop.fit` (unchanged: it takes any LightningModule and
LightningDataModule): batch n is drawn with a generator seeded with (seed, n), so a resumed job sees
the batches an unbroken one would; the histories of the last `holdout_fraction` of the tasks are
never trained on and are the validation set (val/loss, the accuracy of the argmax at the first and
last positions). Output ``model.pt`` (`save_dpt`): {"state_dict", "shape": {states, actions,
horizon}, "config": DPTConfig fields, "card", "snapshots": {step: state_dict} at every validation},
loadable with ``torch.load(weights_only=True)``; `load_dpt` rebuilds the model, final or at a
snapshot (the in-context learning curve's checkpoints, `wmrl.icrl.curve`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import polars as pl
import torch

from wmrl import tracking
from wmrl.files import claim_work_dir, load_checkpoint, save_checkpoint
from wmrl.icrl.histories import HISTORIES, read_histories
from wmrl.jobs import IcrlPretrainSpec, check_spec
from wmrl.models.dpt import DecisionPretrainedTransformer, DPTConfig, dpt_loss
from wmrl.train.loop import Snapshots, fit
from wmrl.train.module import WindowStream, loader

log = logging.getLogger("wmrl")
SEQUENCES = ("states", "actions", "rewards", "next_states")


@dataclass
class HistoryArrays:
    """A set of histories as arrays: (N,) task, query_state, optimal_action; (N, H) the context."""

    task: np.ndarray
    query_state: np.ndarray
    optimal_action: np.ndarray
    states: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_states: np.ndarray

    def __len__(self) -> int:
        return len(self.task)

    def rows(self, index: np.ndarray) -> dict[str, np.ndarray]:
        return {name: value[index] for name, value in vars(self).items()}

    def sample(self, size: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`size` distinct histories (all of them, if there are fewer), each history's context in a
        fresh random order (DPT shuffles the context per sample: its transitions are exchangeable,
        and each order trains other prefixes)."""
        batch = self.rows(rng.permutation(len(self))[:size])
        order = np.argsort(rng.random(batch["actions"].shape), axis=1)
        return {name: np.take_along_axis(value, order, 1) if name in SEQUENCES else value
                for name, value in batch.items()}

    def split(self, holdout_fraction: float) -> tuple[HistoryArrays, HistoryArrays]:
        """(train, heldout): the held-out part is every history of the last `holdout_fraction` of
        the distinct tasks (by id), so no held-out task is seen in training."""
        tasks = np.unique(self.task)
        heldout = np.isin(self.task, tasks[len(tasks) - int(holdout_fraction * len(tasks)):]) if holdout_fraction \
            else np.zeros(len(self), bool)
        return self.subset(~heldout), self.subset(heldout)

    def subset(self, mask: np.ndarray) -> HistoryArrays:
        return HistoryArrays(**self.rows(mask))


def histories_from_frame(frame: pl.DataFrame, card: dict[str, Any]) -> HistoryArrays:
    """The contract's table as arrays, checked against its card (lengths H, ids in range)."""
    horizon, n = int(card["horizon"]), len(frame)
    arrays = {}
    for name in SEQUENCES:
        lengths = frame[name].list.len()
        if n and (lengths.min() != horizon or lengths.max() != horizon):
            raise ValueError(f"column {name}: every history must have {horizon} transitions (the card's horizon), "
                             f"found lengths {lengths.min()}..{lengths.max()}")
        dtype = np.float32 if name == "rewards" else np.int64
        arrays[name] = frame[name].explode().to_numpy().astype(dtype).reshape(n, horizon)
    for name, limit in (("states", "states"), ("next_states", "states"), ("actions", "actions")):
        if n and (arrays[name].min() < 0 or arrays[name].max() >= card[limit]):
            raise ValueError(f"column {name}: values outside 0..{card[limit] - 1}")
    scalars = {name: frame[name].to_numpy().astype(np.int64) for name in ("task", "query_state", "optimal_action")}
    if n and (scalars["optimal_action"].max() >= card["actions"] or scalars["query_state"].max() >= card["states"]):
        raise ValueError("query_state or optimal_action outside the card's states or actions")
    return HistoryArrays(**scalars, **arrays)


def load_histories(directory: Path | str) -> tuple[HistoryArrays, dict[str, Any]]:
    """A history dataset directory, read and checked by `wmrl.icrl.histories.read_histories`: its
    histories as arrays and its card."""
    frame, card = read_histories(directory)
    if card["kind"] != "contexts":
        raise ValueError(f"{directory}: DPT trains on the contexts kind of histories, not {card['kind']!r}")
    return histories_from_frame(frame, card), card


def to_tensors(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in batch.items()}


class DPTModule(L.LightningModule):
    """The model and its loss (`dpt_loss`); AdamW at a constant learning rate as in DPT, or decayed
    along a cosine to 0 over `steps` gradient steps (`schedule: cosine`)."""

    def __init__(self, states: int, actions: int, horizon: int, config: dict[str, Any], steps: int = 0,
                 schedule: str = "constant"):
        super().__init__()
        self.save_hyperparameters()
        self.config = DPTConfig(**config)
        self.steps, self.schedule = steps, schedule
        self.model = DecisionPretrainedTransformer(states, actions, horizon, self.config)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model(batch["query_state"], batch["states"], batch["actions"], batch["rewards"],
                          batch["next_states"])

    def metrics(self, batch) -> dict[str, torch.Tensor]:
        logits = self.logits(batch)
        correct = (logits.argmax(-1) == batch["optimal_action"].unsqueeze(1)).float()
        return {"loss": dpt_loss(logits, batch["optimal_action"]), "accuracy_first": correct[:, 0].mean(),
                "accuracy_last": correct[:, -1].mean()}

    def training_step(self, batch, batch_index):
        metrics = self.metrics(batch)
        self.log("train/loss", metrics["loss"], prog_bar=True)
        self.log("train/accuracy_last", metrics["accuracy_last"])
        return metrics["loss"]

    def validation_step(self, batch, batch_index):
        size = len(batch["task"])
        self.log_dict({f"val/{name}": value for name, value in self.metrics(batch).items()}, batch_size=size)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=self.config.learning_rate,
                                      weight_decay=self.config.weight_decay)
        return optimizer_schedule(optimizer, self.schedule, self.steps)


def optimizer_schedule(optimizer: torch.optim.Optimizer, schedule: str, steps: int):
    """Lightning's optimizer configuration: the constant rate, or lr_t = lr (1 + cos(pi t / steps)) / 2."""
    if schedule == "constant":
        return optimizer
    if schedule != "cosine":
        raise ValueError(f"learning-rate schedule {schedule!r} is not one of constant, cosine")
    cosine = torch.optim.lr_scheduler.LambdaLR(optimizer,
                                               lambda t: 0.5 * (1 + math.cos(math.pi * min(t, steps) / steps)))
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": cosine, "interval": "step"}}


class HistoryData(L.LightningDataModule):
    """Training histories as an endless deterministic stream of batches (`WindowStream`: batch n
    drawn with the generator (seed, n), each data-parallel process taking its share), held-out
    histories as fixed validation batches in order."""

    def __init__(self, train: HistoryArrays, heldout: HistoryArrays, batch_size: int, seed: int):
        super().__init__()
        self.train, self.heldout, self.batch_size, self.seed = train, heldout, batch_size, seed

    def train_dataloader(self):
        trainer = self.trainer
        return loader(WindowStream(lambda step: self.train, self.batch_size, self.seed, lambda: trainer.global_step,
                                   trainer.global_rank, trainer.world_size))

    def val_dataloader(self):
        return loader(list(self.heldout_batches()))

    def heldout_batches(self) -> Iterator[dict[str, torch.Tensor]]:
        for start in range(0, len(self.heldout), self.batch_size):
            yield to_tensors(self.heldout.rows(np.arange(start, min(start + self.batch_size, len(self.heldout)))))


def save_dpt(model: DecisionPretrainedTransformer, path: Path | str, card: dict[str, Any] | None = None,
             snapshots: dict[int, dict[str, torch.Tensor]] | None = None) -> None:
    """The model as plain dicts and tensors (weights-only loadable), written whole; `snapshots`:
    its weights at earlier gradient steps (`wmrl.train.loop.Snapshots`), kept under their step."""
    save_checkpoint({"state_dict": model.state_dict(),
                     "shape": {"states": model.states, "actions": model.actions, "horizon": model.horizon},
                     "config": asdict(model.config), "card": dict(card or {}),
                     "snapshots": {str(step): weights for step, weights in (snapshots or {}).items()}}, path)


def load_dpt(path: Path | str, step: int | None = None) -> DecisionPretrainedTransformer:
    """A model saved by `save_dpt` (read weights-only), in eval mode: its final weights, or its
    snapshot at gradient step `step`."""
    saved = load_checkpoint(path)
    model = DecisionPretrainedTransformer(**saved["shape"], config=DPTConfig(**saved["config"]))
    model.load_state_dict(saved["state_dict"] if step is None else saved["snapshots"][str(step)])
    return model.eval()


def snapshot_steps(path: Path | str) -> list[int]:
    """The gradient steps at which a saved model kept snapshots, ascending."""
    return sorted(int(step) for step in load_checkpoint(path)["snapshots"])


def dataset_card(directory: Path | str, card: dict[str, Any]) -> dict[str, Any]:
    """The card as `tracking.log_dataset_inputs` reads it: with the table's sha256 as its one shard
    unless the card lists shards."""
    if "shards" in card:
        return card
    return {**card, "shards": [{"file": HISTORIES, "sha256": card["sha256"]}]}


def train_dpt(spec: IcrlPretrainSpec, out: dict[str, str], threads: int = 1) -> DPTModule:
    """Train on spec["dataset"] (a history directory) for spec["dpt"]["steps"] gradient steps and
    write out["model"] (`save_dpt`) and, when asked, out["mlflow"] (`tracking.write_record`).
    spec["dpt"]: DPTConfig fields and the loop's settings (steps, checkpoint_every, validate_every,
    grad_clip, trainer, holdout_fraction); the job keys of `loop.fit` (work_dir, run_name,
    mlflow_experiment, tags) and "seed"."""
    check_spec(spec, IcrlPretrainSpec)
    torch.set_num_threads(threads)
    settings, seed = spec["dpt"], spec["seed"]
    resume = claim_work_dir(Path(spec["work_dir"]), spec)
    histories, card = load_histories(spec["dataset"])
    train, heldout = histories.split(settings.get("holdout_fraction", 0.0))
    config = {name: settings[name] for name in DPTConfig.__dataclass_fields__ if name in settings}
    L.seed_everything(seed, workers=True)
    module = DPTModule(int(card["states"]), int(card["actions"]), int(card["horizon"]), config, settings["steps"],
                       settings.get("schedule", "constant"))
    log.info("DPT: %s parameters, %s backbone, %d training and %d held-out histories",
             f"{module.model.parameter_count():,}", module.config.backbone, len(train), len(heldout))
    data = HistoryData(train, heldout, module.config.batch_size, seed)
    used = {str(spec["dataset"]): dataset_card(spec["dataset"], card)}
    snapshots = Snapshots()
    fitted = fit(module, data, spec, settings, resume, used, extra_callbacks=(snapshots,))
    if fitted.primary:
        save_dpt(module.model, out["model"], card, {**snapshots.weights, settings["steps"]: module.model.state_dict()})
        if "mlflow" in out:  # the lineage record downstream jobs read (not registered: weights-only file)
            tracking.write_record(out["mlflow"], fitted.run_id, spec, None, used, module.model.parameter_count(),
                                  training=fitted.training(settings["steps"]))
    return module
