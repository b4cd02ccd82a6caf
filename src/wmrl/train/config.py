"""Where a training job runs: the Lightning Trainer's arguments (torch-free; wmrl.train.loop reads them)."""

from __future__ import annotations

from dataclasses import dataclass

from omegaconf import DictConfig

from wmrl.typed import ConfigError

ACCELERATORS = ("cpu", "gpu", "auto")
STRATEGIES = ("auto", "ddp")


@dataclass
class TrainerConfig:
    """Where a training job runs (Lightning Trainer arguments). The section's `batch_size` is the
    global batch: with W = devices x num_nodes processes, each takes its 1/W share of every step's
    windows, so a DDP run trains on the same windows per step as one process. On SLURM, a job with
    W > 1 needs W tasks (the profile's `tasks`) for Lightning to take the processes from SLURM."""

    accelerator: str = "cpu"  # cpu | gpu | auto
    devices: int = 1  # processes per node: GPUs, or CPU processes (gloo)
    num_nodes: int = 1
    strategy: str = "auto"  # auto (one process) | ddp (DistributedDataParallel: nccl on GPUs, gloo on CPU)
    precision: str = "32-true"  # Lightning precision, e.g. bf16-mixed on GPUs


def check_trainer(section: DictConfig, name: str) -> None:
    """A section's `trainer` (its `batch_size` is the global batch: it must split among the processes)."""
    trainer = section.trainer
    for key, allowed in (("accelerator", ACCELERATORS), ("strategy", STRATEGIES)):
        if trainer[key] not in allowed:
            raise ConfigError(f"config error: '{name}.trainer.{key}' must be one of {', '.join(allowed)}, "
                              f"got {trainer[key]!r}")
    processes = trainer.devices * trainer.num_nodes
    if processes < 1:
        raise ConfigError(f"config error: '{name}.trainer' devices x num_nodes must be at least 1, got {processes}")
    if processes > 1 and trainer.strategy != "ddp":
        raise ConfigError(f"config error: '{name}.trainer' runs {processes} processes: set strategy: ddp")
    if section.batch_size % processes:
        raise ConfigError(f"config error: '{name}.batch_size' ({section.batch_size}) must divide evenly among "
                          f"the {processes} processes of '{name}.trainer' (devices x num_nodes)")
