"""Before any job starts: every task's environment built and its spaces read, and the checks
that one world-action model can read them all. Specs checked before are kept in a JSON cache."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from wmrl.config import ConfigError
from wmrl.dag.experiment import run_tasks, task_env
from wmrl.files import publish
from wmrl.provenance import code_hash, config_hash

ENV_PACKAGES = ("gymnasium", "minatar", "ale-py", "minigrid", "popgym")  # with the env code, they key checked envs


def check_envs(cfg: DictConfig, cache: Path | str | None = None) -> dict[str, dict[str, Any]]:
    """Every task's environment built and its spaces read, before any job starts: its obs and
    action specs, or one ConfigError naming each task that fails and what is supported, or the
    tasks that one model cannot share (mixed observation kinds or shapes, continuous actions).
    Specs checked before with the same settings, env code and packages are read from `cache` (a
    JSON file), so a no-op rerun neither imports gymnasium nor builds an Atari emulator per task."""
    salt = {"code": code_hash("envs"), "versions": {p: _version(p) for p in ENV_PACKAGES}}
    keys = {task: config_hash({"env": task_env(cfg, task), **salt}) for task in run_tasks(cfg)}
    known = _read_json(Path(cache)) if cache else {}
    specs, failures = {task: known[key] for task, key in keys.items() if key in known}, []
    if len(specs) < len(keys):
        from wmrl.envs import describe_env

        for task in keys.keys() - specs.keys():
            try:
                specs[task] = describe_env(task_env(cfg, task))
            except ValueError as error:
                failures.append(f"task {task!r} ({cfg.tasks[task].env}): {error}")
        if failures:
            from wmrl.envs import SUPPORTED

            raise ConfigError(f"experiment {cfg.experiment!r} has environments that cannot be used:\n  "
                              + "\n  ".join(sorted(failures))
                              + f"\nsupported observations: {SUPPORTED}; actions: Discrete (from 0) or a 1-D Box")
        if cache:
            entries = {**known, **{keys[task]: spec for task, spec in specs.items()}}
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            publish(cache, lambda path: Path(path).write_text(json.dumps(entries, indent=1, sort_keys=True) + "\n"))
    _check_one_model(cfg, {task: specs[task] for task in keys})
    return {task: specs[task] for task in keys}


def _check_one_model(cfg: DictConfig, specs: dict[str, dict[str, Any]]) -> None:
    """One world-action model reads every task of the experiment: one observation kind, one grid
    size (channels may differ: they are shared by name) or one frame shape, discrete actions."""
    def shape(obs: dict[str, Any]) -> tuple[int, ...]:  # what must match: a grid's cells, a frame, no vector width
        return {"grid": tuple(obs["shape"][:-1]), "image": tuple(obs["shape"])}.get(obs["kind"], ())

    layouts = {task: (spec["obs"]["kind"], shape(spec["obs"])) for task, spec in specs.items()}
    problems = []
    if len(set(layouts.values())) > 1:
        problems.append("one model reads every task, but their observations differ: " + ", ".join(
            f"{task} {kind}{list(size) if size else ''}" for task, (kind, size) in layouts.items()))
    continuous = [task for task, spec in specs.items() if spec["action"]["kind"] != "discrete"]
    if continuous:
        problems.append(f"the world-action model needs discrete actions; continuous: {', '.join(continuous)}")
    if problems:
        raise ConfigError(f"experiment {cfg.experiment!r}: " + "; ".join(problems))


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "absent"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}  # never checked, or a torn write: check again
