"""How a job is named in MLflow: its experiment, run name and tags, and what a training job adds."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from wmrl.tracking import experiment_name


def tracked(cfg: DictConfig, rule: str, pattern: str, wildcards: dict[str, Any]) -> dict[str, Any]:
    """How a job is tracked in MLflow: its experiment, run name and tags (rule and wildcards)."""
    wildcards = {"scale": cfg.scale, "experiment": cfg.experiment, **wildcards}
    return {"mlflow_experiment": experiment_name(cfg.experiment, cfg.scale),
            "run_name": pattern.format(**wildcards).removeprefix("results/"),
            "tags": {"rule": rule, **{k: str(v) for k, v in wildcards.items()}}}


def training_job(cfg: DictConfig, rule: str, pattern: str, wildcards: dict[str, Any], stage: str, alias: str
                 ) -> dict[str, Any]:
    """The bookkeeping every training job carries: work dir, MLflow names and tags, registered model."""
    names = tracked(cfg, rule, pattern, wildcards)
    return {"work_dir": f"work/{names['run_name']}", **names,
            "registered_model": f"wmrl-{cfg.experiment}-{stage}", "alias": f"{cfg.scale}-{alias}"}
