"""The Lightning module of the joint objective: the training metrics a logger receives."""

from dataclasses import asdict

import lightning as L
from lightning.pytorch.loggers import Logger

from wmrl.data import open_dataset
from wmrl.data.windows import load_steps, obs_layout
from wmrl.models.world_model import ModelShape
from wmrl.train.module import WindowDataModule, WorldModelModule


class Recorder(Logger):
    """Every metric a trainer writes, as (step, name)."""

    def __init__(self):
        super().__init__()
        self.written: list[tuple[int, str]] = []

    name, version = "recorder", 0

    def log_metrics(self, metrics, step=None):
        self.written += [(step, key) for key in metrics]

    def log_hyperparams(self, params, *args, **kwargs):
        pass


def test_training_metrics_reach_the_logger_every_log_every_n_steps_steps(random_dataset):
    dataset = open_dataset(random_dataset)
    layout = obs_layout({"breakout": dataset.card})
    shape = ModelShape(layout.kind, layout.shape, actions=6, tasks=1, window=4)
    data = WindowDataModule(lambda task, part: load_steps([dataset], task, 0, part), ["breakout"], layout,
                            window=4, batch_size=4, heldout_windows=4, seed=0)
    model = {"dim": 16, "layers": 1, "heads": 2, "bins": 11}
    optim = {"learning_rate": 1e-3, "weight_decay": 0.0, "warmup_steps": 1, "steps": 12, "target_update": 4}
    module = WorldModelModule(asdict(shape), model, {}, optim, ["breakout"])
    recorder = Recorder()
    trainer = L.Trainer(max_steps=12, logger=recorder, log_every_n_steps=5, limit_val_batches=0,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, datamodule=data)
    parts = {f"train/{name}" for name in ("loss", "next_obs", "reward", "termination", "td", "value", "cql")}
    written = {(step, name) for step, name in recorder.written if name.startswith("train/")}
    assert written == {(step, name) for step in (4, 9) for name in parts}
