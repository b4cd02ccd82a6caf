"""Stage 2: pretraining resumes after kill -9 into the same MLflow run; outputs load weights-only;
held-out tasks never reach pretraining data."""

import json
import signal
import subprocess
import time

import polars as pl
import pytest
import torch

from conftest import PYTHON, ROOT, step_of
from wmrl.config import compose
from wmrl.dag.experiment import pretrain_datasets
from wmrl.dag.specs import pretrain_spec


def test_heldout_tasks_never_enter_pretraining_data():
    cfg = compose({}, ROOT)
    datasets = pretrain_datasets(cfg)
    assert set(datasets) == set(cfg.source_tasks) and "breakout" not in datasets
    assert not any("/breakout/" in d for dirs in datasets.values() for d in dirs)
    other = compose({"source_tasks": ["breakout", "asterix"], "heldout_tasks": ["freeway"],
                     "finetune": {"control": None}}, ROOT)
    spec = pretrain_spec(other, "small", "gru", 0)
    assert set(spec["datasets"]) == {"breakout", "asterix"} and spec["model"]["backbone"] == "gru"


def test_pretraining_refuses_heldout_task_data(tiny_job):
    from wmrl.train.pretrain import pretrain

    spec, _, _, tmp_path = tiny_job
    with pytest.raises(ValueError, match=r"held-out tasks \['asterix'\] must never enter"):
        pretrain({**spec, "heldout_tasks": ["asterix"]}, {})


@pytest.mark.parametrize("stream_rows", [None, 200])  # in memory, or streamed from Parquet in chunks
def test_same_seed_same_model(tiny_job, stream_rows):
    from wmrl.train.pretrain import pretrain

    spec, _, _, tmp_path = tiny_job
    spec["pretrain"] |= {"steps": 15, "heldout_windows": 16, "stream_rows": stream_rows, "stream_refresh": 4}
    states = []
    for run in ("a", "b"):
        out = {name: str(tmp_path / f"{run}-{name}") for name in ("model", "mlflow", "heldout")}
        pretrain({**spec, "work_dir": str(tmp_path / f"work-{run}"), "alias": f"run-{run}"}, out)
        states.append(torch.load(out["model"], weights_only=True)["state_dict"])
    for name, tensor in states[0].items():
        assert torch.equal(tensor, states[1][name]), name


@pytest.mark.slow
def test_killed_pretraining_resumes_into_the_same_mlflow_run(tiny_job):
    import mlflow

    spec, command, env, tmp_path = tiny_job
    job = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    last, previous = (tmp_path / "work" / "checkpoints" / name for name in ("last.ckpt", "previous.ckpt"))
    deadline = time.monotonic() + 600  # polled, not slept: a slower machine only waits longer
    while step_of(last) < 30:
        if time.monotonic() > deadline or job.poll() is not None:
            job.kill()
            pytest.fail(f"no checkpoint at step 30 or later (job exit status {job.poll()})")
        time.sleep(0.2)
    job.send_signal(signal.SIGKILL)
    job.wait()
    killed_at = max(step_of(last), step_of(previous))  # a kill mid-save leaves the last whole one as previous
    assert 30 <= killed_at < 300, killed_at
    assert not (tmp_path / "out" / "model.pt").exists()

    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "resuming from" in finished.stderr

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name(spec["mlflow_experiment"])
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert min(steps) < killed_at < max(steps)
    record = json.loads((tmp_path / "out" / "model.mlflow.json").read_text())
    assert record["run_id"] == runs[0].info.run_id

    checkpoint = torch.load(tmp_path / "out" / "model.pt", weights_only=True)
    assert checkpoint["tasks"] == list(spec["suite"]) and checkpoint["model"]["backbone"] == "transformer"
    heldout = pl.read_parquet(tmp_path / "out" / "heldout.parquet")
    assert set(heldout["task"]) == {"breakout", "asterix"}


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_evaluates_like_one_process(tiny_job):
    """Lightning DDP (gloo, 2 processes, each half of the global batch) against one process on the
    same global batch: the trained models' held-out losses agree to well under 1%, far closer
    than training moved them. (Weights are not compared: Adam's first steps turn float-rounding
    differences of near-zero gradients into sign flips of size lr.)"""
    import mlflow

    spec, _, env, tmp_path = tiny_job
    spec["pretrain"] |= {"steps": 30, "batch_size": 16, "validate_every": 10, "heldout_windows": 16}
    heldout = {}
    for name, trainer in {"single": {}, "ddp": {"devices": 2, "strategy": "ddp"}}.items():
        job = {**spec, "work_dir": str(tmp_path / f"work-{name}"), "alias": name}
        job["pretrain"] = {**spec["pretrain"], "trainer": {**spec["pretrain"]["trainer"], **trainer}}
        command = [PYTHON, "-m", "wmrl", "pretrain", "--spec", json.dumps(job), "--out-dir", str(tmp_path / name),
                   "--threads", "1"]
        result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        heldout[name] = pl.read_parquet(tmp_path / name / "heldout.parquet")
    assert "distributed_backend=gloo" in result.stderr and "All distributed processes registered" in result.stderr
    single, ddp = heldout["single"], heldout["ddp"]
    assert ddp["trained"].to_numpy() == pytest.approx(single["trained"].to_numpy(), rel=1e-2)
    moved = (single["untrained"] - single["trained"]).abs()
    assert ((ddp["trained"] - single["trained"]).abs() < 0.1 * moved).all(), single.with_columns(ddp=ddp["trained"])

    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs([client.get_experiment_by_name(spec["mlflow_experiment"]).experiment_id])
    assert len(runs) == 2  # one run per job: the second DDP process tracks nothing


@pytest.mark.server
def test_pretraining_tracks_into_an_mlflow_server(tiny_job, mlflow_server):
    """On a cluster jobs log to an `mlflow server` over HTTP: the run, its metrics, the registered
    model and a run page link in the model's record."""
    import mlflow

    spec, command, env, tmp_path = tiny_job
    spec["pretrain"] |= {"steps": 20, "validate_every": 10, "heldout_windows": 16}
    env = {**env, "MLFLOW_TRACKING_URI": mlflow_server}
    prepared = subprocess.run([PYTHON, "-m", "wmrl", "prepare-tracking", spec["mlflow_experiment"]], env=env,
                              cwd=tmp_path, capture_output=True, text=True)
    assert prepared.stdout.strip() == mlflow_server
    command = [*command[:command.index("--spec") + 1], json.dumps(spec), *command[command.index("--spec") + 2:]]
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not (tmp_path / "mlruns").exists()  # nothing went to the local store

    record = json.loads((tmp_path / "out" / "model.mlflow.json").read_text())
    client = mlflow.MlflowClient(mlflow_server)
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and "heldout/breakout/next_obs" in run.data.metrics
    assert record["run_url"] == f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{record['run_id']}"
    version = client.get_model_version_by_alias(spec["registered_model"], spec["alias"])
    assert version.run_id == record["run_id"]
