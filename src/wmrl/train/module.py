"""Lightning pieces shared by pretraining and fine-tuning: the world-action model trained with the
joint objective (or, fine-tuned return-conditioned, as a Decision Transformer), a deterministic
stream of training windows, and progress lines for log files."""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from wmrl.data.windows import ObsLayout, ReplayChunks, TaskSteps, WindowSampler
from wmrl.models.config import DecisionConfig, ModelConfig
from wmrl.models.decision_transformer import DecisionTransformer
from wmrl.models.world_model import ModelShape, WorldActionModel
from wmrl.progress import Progress
from wmrl.rl.config import LossConfig
from wmrl.rl.objectives import joint_loss
from wmrl.rl.rcsl import decision_loss


class WorldModelModule(L.LightningModule):
    """The model and its objective: the world-action model, its target network (copied every
    `target_update` steps) and the joint loss; or, given `decision` (a DecisionConfig), the
    Decision Transformer and the return-conditioned loss, which needs no target."""

    def __init__(self, shape: dict[str, Any], model: dict[str, Any], loss: dict[str, Any],
                 optim: dict[str, Any], tasks: list[str], decision: dict[str, Any] | None = None):
        super().__init__()
        self.save_hyperparameters()
        if decision is None:
            self.model = WorldActionModel(ModelShape(**shape), ModelConfig(**model))
            self.target = copy.deepcopy(self.model).requires_grad_(False)
            self.weights = LossConfig(**loss)
        else:
            self.weights = DecisionConfig(**decision)
            self.model = DecisionTransformer(ModelShape(**shape), ModelConfig(**model), self.weights)
            self.target = None
        self.tasks = tasks

    def objective(self, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.target is None:
            return decision_loss(self.model, batch, self.weights)
        return joint_loss(self.model, self.target, batch, self.weights)

    def training_step(self, batch, batch_index):
        loss, parts = self.objective(batch)
        if self.logged_step():
            self.log("train/loss", loss, prog_bar=True)
            self.log_dict({f"train/{name}": value for name, value in parts.items()})
        return loss

    def logged_step(self) -> bool:
        """Whether Lightning writes this step's training metrics to a logger: it writes those of
        step g when (g + 1) is a multiple of `log_every_n_steps`, and drops the others. Logging
        them anyway cost a few milliseconds a step (Lightning's bookkeeping of every metric)."""
        every = self.trainer.log_every_n_steps
        return bool(self.trainer.loggers) and every > 0 and (self.global_step + 1) % every == 0

    def on_train_batch_end(self, outputs, batch, batch_index):
        if self.target is not None and self.global_step % self.hparams.optim["target_update"] == 0:
            self.target.load_state_dict(self.model.state_dict())

    def validation_step(self, batch, batch_index):
        loss, parts = self.objective(batch)
        task = self.tasks[int(batch["task"][0])]
        size = len(batch["task"])
        self.log("val/loss", loss, batch_size=size)  # the best checkpoint's criterion
        self.log_dict({f"val/{task}/{name}": value for name, value in parts.items()}, batch_size=size)

    def configure_optimizers(self):
        optim = self.hparams.optim
        # fused: one kernel for all parameters (on CPU 3x faster than the default per-tensor loop;
        # equal up to the rounding of the last bit)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=optim["learning_rate"],
                                      weight_decay=optim["weight_decay"], fused=True)

        def warmup_cosine(step: int) -> float:
            if step < optim["warmup_steps"]:
                return (step + 1) / optim["warmup_steps"]
            progress = (step - optim["warmup_steps"]) / max(1, optim["steps"] - optim["warmup_steps"])
            return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_cosine)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}


class WindowStream(IterableDataset):
    """Endless batches of training windows. Batch n is drawn by `sampler_at(n)` with a generator
    seeded with (seed, n), so a resumed run continues with exactly the batches an unbroken run
    would see. With `processes` data-parallel processes, process `rank` takes its contiguous
    1/processes share of each batch: together they train on the windows one process would."""

    def __init__(self, sampler_at: Callable[[int], WindowSampler], batch_size: int, seed: int,
                 first_step: Callable[[], int], rank: int = 0, processes: int = 1):
        super().__init__()
        self.sampler_at, self.batch_size, self.seed, self.first_step = sampler_at, batch_size, seed, first_step
        share = batch_size // processes
        self.rows = slice(rank * share, (rank + 1) * share)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        step = self.first_step()
        while True:
            batch = self.sampler_at(step).sample(self.batch_size, np.random.default_rng([self.seed, step]))
            yield {key: torch.from_numpy(value[self.rows]) for key, value in batch.items()}
            step += 1


def fixed_batches(sampler: WindowSampler, windows: int, batch_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """A fixed list of batches (held-out evaluation): the same windows every time."""
    rng = np.random.default_rng([seed, 2**31 - 1])
    sizes = [batch_size] * (windows // batch_size) + ([windows % batch_size] if windows % batch_size else [])
    return [{k: torch.from_numpy(v) for k, v in sampler.sample(n, rng).items()} for n in sizes]


def loader(data) -> DataLoader:
    return DataLoader(data, batch_size=None, num_workers=0)


class WindowDataModule(L.LightningDataModule):
    """Windows of the tasks' data: training episodes as an endless deterministic stream, held-out
    episodes as fixed validation batches. `load(task, part)` gives a task's "train" steps (in
    memory, or as `ReplayChunks` streamed from Parquet, the chunk changing every `refresh`
    gradient steps) or its "heldout" steps."""

    def __init__(self, load: Callable[[str, str], TaskSteps | ReplayChunks], tasks: list[str], layout: ObsLayout,
                 window: int, batch_size: int, heldout_windows: int, seed: int, refresh: int = 1):
        super().__init__()
        self.load, self.tasks, self.layout, self.window = load, tasks, layout, window
        self.batch_size, self.heldout_windows, self.seed, self.refresh = batch_size, heldout_windows, seed, refresh
        self.train: list[TaskSteps | ReplayChunks] = []
        self.heldout: dict[str, list[dict[str, torch.Tensor]]] = {}

    def setup(self, stage: str | None = None) -> None:
        if not self.train:  # load once, however often Lightning asks
            self.train = [self.load(t, "train") for t in self.tasks]
            self.heldout = {t: fixed_batches(WindowSampler([self.load(t, "heldout")], self.layout, self.window),
                                             self.heldout_windows, self.batch_size, self.seed) for t in self.tasks}

    def train_sampler(self, step: int) -> WindowSampler:
        """The windows of gradient step `step`: from each task's current chunk of training steps."""
        return WindowSampler([source.chunk(step // self.refresh) for source in self.train], self.layout, self.window)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        return loader(WindowStream(self.train_sampler, self.batch_size, self.seed, lambda: trainer.global_step,
                                   trainer.global_rank, trainer.world_size))

    def val_dataloader(self) -> DataLoader:
        return loader([batch for batches in self.heldout.values() for batch in batches])


class ProgressLines(L.Callback):
    """Periodic progress lines (steps/s, ETA) when the console is not a terminal."""

    def __init__(self, total_steps: int, desc: str):
        self.total_steps, self.desc = total_steps, desc
        self.progress: Progress | None = None

    def on_train_start(self, trainer, module):
        self.progress = Progress(self.total_steps, self.desc, unit="steps")
        self.progress.done = self.progress.logged = trainer.global_step

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        self.progress.update(trainer.global_step)

    def on_train_end(self, trainer, module):
        self.progress.close()

