"""Shared fixtures: small generated datasets (never downloaded) and the repository's paths."""

from __future__ import annotations

import copy
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

DQN_TINY = {"steps": 600, "learning_rate": 2.5e-4, "buffer_size": 600, "batch_size": 32, "learning_starts": 200,
            "train_freq": 4, "target_update_interval": 100, "gamma": 0.99, "exploration_initial_eps": 1.0,
            "exploration_final_eps": 0.1, "exploration_steps": 300, "conv_channels": 8, "hidden": 32,
            "eval_episodes": 2, "eval_epsilon": 0.0}
PPO_TINY = {"steps": 600, "learning_rate": 3e-4, "n_steps": 200, "batch_size": 50, "n_epochs": 2, "gamma": 0.99,
            "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.01, "conv_channels": 8, "hidden": 32,
            "lstm_hidden": 16, "eval_episodes": 2, "eval_sampled": True}
LEARNERS_TINY = {"dqn": DQN_TINY, "ppo": PPO_TINY, "recurrent_ppo": PPO_TINY}  # the behaviour learners' settings


# Fixtures that make a test costly, and the marker (pyproject.toml) such a test must carry so that a
# plain `pytest` leaves it out.
COSTLY_FIXTURES = {"smoke_run": "e2e", "mlflow_server": "server"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is checked
def pytest_collection_modifyitems(config, items):
    unmarked = [f"{item.nodeid} uses {fixture} but is not marked {marker}" for item in items
                for fixture, marker in COSTLY_FIXTURES.items()
                if fixture in item.fixturenames and item.get_closest_marker(marker) is None]
    if unmarked:
        raise pytest.UsageError("\n".join(unmarked))


def make_spec(env: str = "minatar:breakout", policy: str = "random", steps: int = 3000, seed: int = 0,
              shard_rows: int = 1000, max_episode_steps: int | None = 500) -> dict:
    settings = {**copy.deepcopy(LEARNERS_TINY.get(policy, {})), "steps": steps}
    kwargs = {"sticky_action_prob": 0.1} if env.startswith("minatar:") else {}
    return {"suite": "test", "task": env.split(":")[-1], "policy": policy, "seed": seed, "env": env,
            "env_kwargs": kwargs, "max_episode_steps": max_episode_steps, "shard_rows": shard_rows,
            "settings": settings}


@pytest.fixture(scope="session")
def random_dataset(tmp_path_factory) -> Path:
    """A 3,000-step random-policy MinAtar breakout dataset in three or four shards."""
    from wmrl.data.generate import generate_dataset

    out = tmp_path_factory.mktemp("datasets") / "breakout-random"
    generate_dataset(make_spec(), out)
    return out


def job_directory(tmp_path_factory, name: str) -> tuple[Path, pytest.MonkeyPatch]:
    """A fresh working directory with its own MLflow store, as a pipeline job sees it; undo the
    returned patch when done."""
    tmp = tmp_path_factory.mktemp(name)
    monkeypatch = pytest.MonkeyPatch()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp}/mlruns.db")
    monkeypatch.chdir(tmp)
    return tmp, monkeypatch


def prepare_tracking(experiment: str) -> None:
    subprocess.run([PYTHON, "-m", "wmrl", "prepare-tracking", experiment], check=True, capture_output=True)


def run_twice(tmp: Path, files: dict[str, str], spec_of, train, rerun=None) -> dict[str, dict[str, str]]:
    """Run a training job twice from the same seed, in work dirs a and b under `tmp` (the MLflow
    experiment prepared once): `train(spec, out)`, or for run b `rerun(spec, out)` when given.
    `spec_of()` builds the job's spec; returns each run's outputs (name -> path relative to `tmp`)."""
    outputs = {}
    for run in ("a", "b"):
        spec = spec_of()
        spec["work_dir"] = f"work/{run}"
        if run == "a":
            prepare_tracking(spec["mlflow_experiment"])
        (tmp / run).mkdir()
        outputs[run] = {name: f"{run}/{file}" for name, file in files.items()}
        (rerun if run == "b" and rerun else train)(spec, outputs[run])
    return outputs


def finetune_methods(cfg, methods: list[str], dataset: Path, tmp: Path, steps: int,
                     pretrained: Callable[[dict[str, dict[str, str]]], str]) -> dict[str, dict[str, str]]:
    """Fine-tune `methods` of `cfg` on breakout's fixture `dataset` for `steps` steps, in order, each
    writing its outputs under `tmp`; a method that starts from pretrained weights takes the file
    `pretrained(outputs so far)` names (any model of the suite's shape serves)."""
    from wmrl.dag.specs import finetune_spec
    from wmrl.train.finetune import finetune

    outputs = {}
    for method in methods:
        spec = finetune_spec(cfg, "breakout", max(cfg.finetune.data.sizes), method, "small-transformer", 0)
        prepare_tracking(spec["mlflow_experiment"])
        spec["finetune"] |= {"steps": steps, "validate_every": 4, "checkpoint_every": 4}
        spec["inputs"]["dataset"] = str(dataset)
        if spec["init"] == "pretrained":
            spec["inputs"]["pretrained"] = pretrained(outputs)
        outputs[method] = {name: str(tmp / f"{method}-{name}") for name in ("last", "best", "curve", "mlflow")}
        finetune(spec, outputs[method])
    return outputs


def snakemake_env() -> dict[str, str]:
    """Environment for Snakemake subprocesses: this interpreter's bin dir first on PATH."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A directory in which the whole `smoke` pipeline has run once (shared by the tests that read it)."""
    workdir = tmp_path_factory.mktemp("smoke")
    result = subprocess.run(snakemake_command("--cores", "2", "--config", "scale=smoke"), cwd=workdir,
                            capture_output=True, text=True, env=snakemake_env(), timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir


def snakemake_command(*args: str) -> list[str]:
    return [PYTHON, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), *args]


def snakemake_report(workdir: Path, *config: str) -> tuple[set[str], str]:
    """Run `snakemake --report` in `workdir` with `config` (key=value); the names of the files the
    archive holds and its index page."""
    import zipfile

    archive = workdir / "report.zip"
    result = subprocess.run(snakemake_command("--config", *config, "--report", str(archive)), cwd=workdir,
                            capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    with zipfile.ZipFile(archive) as opened:
        return {Path(name).name for name in opened.namelist()}, opened.read("report/report.html").decode()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(ready, what: str, seconds: float, process: subprocess.Popen | None = None) -> None:
    """Poll `ready()` until it is true; fail naming `what` after `seconds` or when `process` dies."""
    deadline = time.monotonic() + seconds
    while not ready():
        if process is not None and process.poll() is not None:
            pytest.fail(f"{what}: the process exited with {process.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not ready after {seconds:.0f} s")
        time.sleep(0.5)


def stop(process: subprocess.Popen) -> None:
    """Stop a process started in its own session, and its children, by its PID."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory) -> str:
    """A real `mlflow server` on 127.0.0.1 (its own SQLite store, artifacts proxied over HTTP), as
    a cluster would run one; its URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    url = f"http://127.0.0.1:{free_port()}"
    command = [str(Path(PYTHON).parent / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
               "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1",
               "--port", url.rsplit(":", 1)[1], "--workers", "1"]
    with open(root / "server.log", "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def healthy() -> bool:
        try:
            return urllib.request.urlopen(f"{url}/health", timeout=2).status == 200
        except OSError:
            return False

    try:
        wait_until(healthy, "mlflow server", 120, process)
        yield url
    finally:
        stop(process)


@pytest.fixture
def tiny_job(tmp_path, monkeypatch):
    """A 300-step pretraining job on two small MinAtar datasets with its own prepared MLflow store:
    (spec, its `python -m wmrl pretrain` command, environment, working directory)."""
    from wmrl.config import compose
    from wmrl.dag.specs import pretrain_spec
    from wmrl.data.generate import generate_dataset

    datasets = {}
    for game in ("breakout", "asterix"):
        out = tmp_path / "data" / game
        generate_dataset(make_spec(f"minatar:{game}", steps=1500, max_episode_steps=100), out)
        datasets[game] = [str(out)]
    cfg = compose({"scale": "smoke", "source_tasks": ["breakout", "asterix"], "heldout_tasks": ["freeway"],
                   "finetune": {"control": None}}, ROOT)
    spec = pretrain_spec(cfg, "small", "transformer", 0)
    spec["pretrain"] |= {"steps": 300, "checkpoint_every": 10, "validate_every": 100, "holdout_fraction": 0.2}
    spec |= {"datasets": datasets, "tasks": ["breakout", "asterix"], "work_dir": str(tmp_path / "work")}
    uri = f"sqlite:///{tmp_path}/mlruns.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    env = dict(os.environ)
    subprocess.run([PYTHON, "-m", "wmrl", "prepare-tracking", spec["mlflow_experiment"]], env=env, check=True,
                   capture_output=True, cwd=tmp_path)
    command = [PYTHON, "-m", "wmrl", "pretrain", "--spec", json.dumps(spec), "--out-dir", str(tmp_path / "out"),
               "--threads", "1"]
    return spec, command, env, tmp_path


def step_of(checkpoint) -> int:
    """The global step of a Lightning checkpoint, -1 while it is being written or moved aside."""
    import torch

    try:
        return torch.load(checkpoint, weights_only=True)["global_step"]
    except (RuntimeError, EOFError, FileNotFoundError):  # while Lightning writes it, or it becomes previous.ckpt
        return -1
