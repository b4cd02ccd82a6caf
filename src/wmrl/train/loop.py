"""The training job around a `WorldModelModule`, shared by pretraining and fine-tuning.

Resumable: Lightning checkpoints and the MLflow run id live in the job's `work_dir`, never in its
declared outputs; a killed job rerun by Snakemake resumes from the last checkpoint
(``last.ckpt``, or ``previous.ckpt``, the one before it, if last.ckpt is damaged: `resume_from`;
Lightning's own SLURM auto-resume and requeue are off, so Snakemake's retries alone decide)
and logs into the same MLflow run. A preempted job (SIGTERM) saves last.ckpt at the step it
stopped and exits 143, so the rerun loses nothing.

Distributed (`trainer` settings: devices, num_nodes, strategy ddp): every process runs the whole
job — Lightning's launcher starts the others by rerunning the job's command line, SLURM starts
one task per process — and only the global rank zero tracks the run and writes outputs
(`Fitted.primary`). The model's input layout covers every
task of the experiment's suite (held-out ones included: their observation and action specs come
from the environments, never from their data), so a pretrained model fine-tunes on a held-out
task without changing shape.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.plugins import TorchCheckpointIO
from lightning.pytorch.plugins.environments import SLURMEnvironment
from lightning.pytorch.utilities.exceptions import SIGTERMException

from wmrl import tracking
from wmrl.data.windows import ObsLayout, obs_layout
from wmrl.envs import action_spec, make_task_env, obs_spec
from wmrl.files import RESUMABLE, CheckpointError, load_checkpoint, save_checkpoint
from wmrl.models.world_model import ModelShape
from wmrl.progress import interactive
from wmrl.train.module import ProgressLines, WindowDataModule, WorldModelModule

log = logging.getLogger("wmrl")
(LAST, PREVIOUS), BEST = RESUMABLE, "best.ckpt"


def suite_shape(suite: dict[str, dict[str, Any]], channel_layout: str, window: int) -> tuple[ObsLayout, ModelShape]:
    """The shared input layout and the model shape of the tasks `suite` ({task: {env, env_kwargs,
    max_episode_steps}}, in task-index order), read from their environments."""
    obs, actions = {}, {}
    for task, settings in suite.items():
        env = make_task_env(settings)
        obs[task] = {"obs": obs_spec(env).to_dict()}
        spec = action_spec(env)
        env.close()
        if spec.kind != "discrete":
            raise ValueError(f"task {task}: the world-action model needs discrete actions, got {spec}")
        actions[task] = spec.n
    layout = obs_layout(obs, channel_layout)
    shape = ModelShape(layout.kind, layout.shape, max(actions.values()), len(suite), window,
                       tuple(actions.values()))
    return layout, shape


class ValidationCurve(L.Callback):
    """Every validation's metrics by gradient step; kept in checkpoints, so a resumed job keeps them."""

    def __init__(self):
        self.rows: list[dict[str, float]] = []

    def on_validation_end(self, trainer, module):
        if not trainer.sanity_checking:
            metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
            self.rows.append({"step": trainer.global_step, **metrics})

    def state_dict(self):
        return {"rows": self.rows}

    def load_state_dict(self, state):
        self.rows = list(state["rows"])


class Snapshots(L.Callback):
    """The model's weights every `every` gradient steps (``module.model``'s state dict, copied to
    the CPU): the checkpoints an in-context learning curve is drawn at. Taken at the end of the
    step's batch, before Lightning writes that step's resume checkpoint, and kept in it, so a job
    killed at any moment and resumed has every snapshot an unbroken job has."""

    def __init__(self, every: int):
        self.every = every
        self.weights: dict[int, dict[str, torch.Tensor]] = {}

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_index):
        if trainer.global_step % self.every == 0:
            weights = module.model.state_dict()
            self.weights[trainer.global_step] = {name: value.detach().cpu().clone() for name, value in weights.items()}

    def state_dict(self):
        return {"weights": {str(step): weights for step, weights in self.weights.items()}}

    def load_state_dict(self, state):
        self.weights = {int(step): weights for step, weights in state["weights"].items()}


class TrainingClock(L.Callback):
    """Wall seconds of training (drawing batches, gradient steps, checkpoints) with validations
    left out, summed over the runs of a resumed job: kept in its checkpoints like the curve."""

    def __init__(self):
        self.seconds, self.started = 0.0, None

    def _start(self, *_):
        self.started = time.perf_counter()

    def _stop(self, *_):
        if self.started is not None:
            self.seconds += time.perf_counter() - self.started
            self.started = None

    on_train_start = on_validation_end = _start
    on_validation_start = on_train_end = _stop

    def state_dict(self):
        return {"seconds": self.seconds}

    def load_state_dict(self, state):
        self.seconds = float(state["seconds"])


class CheckpointAtSigterm(L.Callback):
    """A preempted job (SLURM sends SIGTERM, then SIGKILL after its grace time) saves the resume
    checkpoint at the step Lightning stopped on the signal."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, module, exception):
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.path)


class WholeCheckpoints(TorchCheckpointIO):
    """Lightning's checkpoints written as ours are: whole or not at all, beside their final name
    (Lightning's own go through the system's temporary directory, then a copy when that is
    another file system), a failed write naming the file. The last.ckpt a new one replaces stays
    as previous.ckpt: the fallback if last.ckpt is found damaged (`resume_from`)."""

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.name == LAST and path.is_file():
            os.replace(path, path.with_name(PREVIOUS))
        save_checkpoint(checkpoint, path)


def resume_from(checkpoints: Path) -> str | None:
    """The checkpoint to resume from: last.ckpt, or, if it cannot be read, previous.ckpt (the one
    before it), or none (a fresh start). A damaged file is named in one warning and moved aside
    to ``<name>.damaged`` (kept for a look, never anyone's fallback). Every process of a
    distributed job calls this: a file another one moved first counts as damaged."""
    for path in (checkpoints / LAST, checkpoints / PREVIOUS):
        if not path.is_file():
            continue
        try:
            load_checkpoint(path)
        except (CheckpointError, FileNotFoundError) as error:
            reason = error.reason if isinstance(error, CheckpointError) else "moved aside by another process"
            log.warning("%s is not a readable checkpoint (%s): moved to %s.damaged; the job resumes from the one "
                        "before it, if any", path, reason, path.name)
            with contextlib.suppress(FileNotFoundError):
                os.replace(path, path.with_name(f"{path.name}.damaged"))
            continue
        return str(path)
    return None


@dataclass
class Fitted:
    primary: bool  # the global rank zero: the process that tracks the run and writes the outputs
    run_id: str | None  # None on the other processes
    logger: Any  # the job's MLFlowLogger (None on the other processes)
    checkpoints: Path  # holds last.ckpt and, when asked for, best.ckpt (lowest val/loss)
    curve: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the gradient steps alone (TrainingClock)

    def training(self, steps: int) -> dict[str, float]:
        """What training took, as a model's record states it (tracking.write_record)."""
        return {"steps": steps, "seconds": self.seconds}


def fit(module: WorldModelModule, data: WindowDataModule, spec: dict[str, Any], settings: dict[str, Any],
        resume: bool, datasets: dict[str, dict[str, Any]], keep_best: bool = False,
        extra_callbacks: tuple[L.Callback, ...] = ()) -> Fitted:
    """Train `module` on `data` for settings["steps"] gradient steps, tracked as the job's MLflow
    run (tags from spec, `datasets` {directory: card} logged as inputs); `extra_callbacks` (e.g.
    `Snapshots`) join the loop's own and are checkpointed with them."""
    work_dir = Path(spec["work_dir"])
    checkpoints = work_dir / "checkpoints"
    curve, clock = ValidationCurve(), TrainingClock()
    callbacks = [curve, clock, *extra_callbacks, CheckpointAtSigterm(checkpoints / LAST),
                 L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0,
                                                     every_n_train_steps=settings["checkpoint_every"])]
    if keep_best:
        callbacks.append(L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoints, filename=BEST.removesuffix(".ckpt"),
                                                             monitor="val/loss", mode="min", save_top_k=1,
                                                             enable_version_counter=False))
    if not interactive():
        callbacks.append(ProgressLines(settings["steps"], spec["run_name"]))
    slurm = [SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else []
    trainer = L.Trainer(
        **settings["trainer"], plugins=[WholeCheckpoints(), *slurm], max_steps=settings["steps"], deterministic=True,
        logger=False, callbacks=callbacks, gradient_clip_val=settings["grad_clip"],
        val_check_interval=settings["validate_every"], check_val_every_n_epoch=None, num_sanity_val_steps=0,
        log_every_n_steps=25,
        use_distributed_sampler=False,  # every process validates on every held-out batch: the same metrics
        enable_progress_bar=interactive(), enable_model_summary=False, default_root_dir=work_dir,
    )
    run_id = logger = None
    if trainer.is_global_zero:
        run_id = tracking.start_or_resume_run(work_dir, spec["mlflow_experiment"], spec["run_name"],
                                              tracking.run_tags(spec))
        tracking.log_dataset_inputs(run_id, datasets)
        logger = L.pytorch.loggers.MLFlowLogger(experiment_name=spec["mlflow_experiment"],
                                                tracking_uri=tracking.tracking_uri(), run_id=run_id)
        trainer.logger = logger
    start = resume_from(checkpoints) if resume else None
    if start:
        log.info("resuming from %s", start)
    try:
        trainer.fit(module, datamodule=data, ckpt_path=start)
    except SIGTERMException:  # a SystemExit of status 0 unless we say otherwise: the job did not finish
        log.warning("SIGTERM at step %d: saved %s; rerun the job to resume", trainer.global_step, checkpoints / LAST)
        raise SystemExit(128 + signal.SIGTERM) from None
    return Fitted(trainer.is_global_zero, run_id, logger, checkpoints, curve.rows, clock.seconds)


def model_weights(checkpoint: Path) -> tuple[dict[str, torch.Tensor], int]:
    """The world-action model's weights in a Lightning checkpoint of a WorldModelModule, and its step."""
    saved = load_checkpoint(checkpoint)
    weights = {key.removeprefix("model."): value for key, value in saved["state_dict"].items()
               if key.startswith("model.")}
    return weights, saved["global_step"]
