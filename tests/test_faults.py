"""Faults a job meets on a cluster, each provoked for real: preemption (SIGTERM), a full disk, an
unreachable tracking server, a corrupted checkpoint, many jobs on one fresh SQLite store."""

import json
import resource
import signal
import subprocess
import sys
import time
from dataclasses import asdict

import mlflow
import pytest

from conftest import PYTHON, free_port, make_spec, step_of, wait_until


def with_spec(command: list[str], spec: dict) -> list[str]:
    """A `python -m wmrl <stage> --spec ...` command line with another spec."""
    at = command.index("--spec") + 1
    return [*command[:at], json.dumps(spec), *command[at + 1:]]


def under_file_size_limit(limit: int):
    """A subprocess's `preexec_fn`: files it writes stop at `limit` bytes. Python ignores SIGXFSZ,
    so a write past it fails with EFBIG, as one on a full disk fails with ENOSPC."""
    return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_exits_nonzero_and_the_rerun_resumes_its_run(tiny_job):
    """SLURM preempts a job with SIGTERM: the job checkpoints where it is and fails; rerun, it
    resumes into the same MLflow run and finishes."""
    spec, command, env, tmp_path = tiny_job
    spec["pretrain"] |= {"steps": 600, "checkpoint_every": 1000}  # no periodic checkpoint: one there came at the signal
    command = with_spec(command, spec)
    log = tmp_path / "job.log"
    with open(log, "w") as stderr:
        job = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=stderr)
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    run_id = tmp_path / "work" / "mlflow_run_id"
    wait_until(lambda: run_id.is_file() and client.get_metric_history(run_id.read_text(), "train/loss"),
               "a logged training loss", 120, job)
    job.send_signal(signal.SIGTERM)
    job.wait(timeout=60)
    last = tmp_path / "work" / "checkpoints" / "last.ckpt"
    saved_at = step_of(last)
    assert job.returncode == 128 + signal.SIGTERM, log.read_text()[-3000:]
    assert f"SIGTERM at step {saved_at}: saved {last}" in log.read_text()
    assert 25 <= saved_at < 600 and not (tmp_path / "out" / "model.pt").exists()

    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name(spec["mlflow_experiment"]).experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == run_id.read_text() and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert f"resuming from {last}" in finished.stderr and (tmp_path / "out" / "model.pt").is_file()
    assert min(steps) < saved_at < max(steps) and len(steps) == len(set(steps))  # resumed: no step logged twice


@pytest.mark.slow
@pytest.mark.parametrize("damaged", [("last.ckpt",), ("last.ckpt", "previous.ckpt")])
def test_a_damaged_resume_checkpoint_is_named_and_the_job_resumes_from_the_one_before_or_afresh(tiny_job, damaged):
    """A rerun finding its last.ckpt damaged names it in one line and resumes from previous.ckpt
    (kept at every save); with both damaged it starts afresh. Either way it trains to the end and
    writes its model, with no traceback."""
    spec, command, env, tmp_path = tiny_job
    spec["pretrain"] |= {"steps": 60, "checkpoint_every": 20}
    command = with_spec(command, spec)
    first = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    checkpoints, model = tmp_path / "work" / "checkpoints", tmp_path / "out" / "model.pt"
    assert step_of(checkpoints / "previous.ckpt") == 40 and step_of(checkpoints / "last.ckpt") == 60
    model.unlink()
    for name in damaged:
        (checkpoints / name).write_bytes(b"not a checkpoint")

    rerun = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and "Traceback" not in rerun.stderr, rerun.stderr[-3000:]
    warnings = [line for line in rerun.stderr.splitlines() if "is not a readable checkpoint" in line]
    assert [next(name for name in damaged if str(checkpoints / name) in line) for line in warnings] == list(damaged)
    assert all((checkpoints / f"{name}.damaged").read_bytes() == b"not a checkpoint" for name in damaged)
    resumed = "previous.ckpt" not in damaged
    assert (f"resuming from {checkpoints / 'previous.ckpt'}" in rerun.stderr) == resumed
    record = json.loads((tmp_path / "out" / "model.mlflow.json").read_text())
    assert model.is_file() and record["training"]["steps"] == 60 and step_of(checkpoints / "last.ckpt") == 60


def test_a_full_disk_while_writing_a_dataset_shard_names_it_and_leaves_no_dataset(tmp_path):
    out = tmp_path / "breakout"
    command = [PYTHON, "-m", "wmrl", "generate-dataset", "--spec", json.dumps(make_spec()), "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120,
                            preexec_fn=under_file_size_limit(8_000))  # a shard of 1,000 steps is ~10 kB
    shard = tmp_path / "breakout.partial" / "part-00000.parquet"
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (f"OSError: [Errno 27] could not write dataset shard {shard} "
                                                       f"(File too large): free disk space and rerun the job")
    assert not out.exists()


@pytest.mark.slow
def test_a_full_disk_while_writing_a_checkpoint_names_it_and_leaves_no_part_of_it(tiny_job):
    _, command, env, tmp_path = tiny_job
    result = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                            preexec_fn=under_file_size_limit(4_000_000))  # the store fits, a ~6 MB checkpoint not
    last = tmp_path / "work" / "checkpoints" / "last.ckpt"
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == (f"OSError: [Errno 27] could not write checkpoint {last} "
                                                       f"(File too large): free disk space and rerun the job")
    assert list(last.parent.iterdir()) == [] and not (tmp_path / "out" / "model.pt").exists()


@pytest.fixture
def model_checkpoint(tmp_path):
    """A small world-action model's checkpoint, as pretraining writes model.pt."""
    from wmrl.files import save_checkpoint
    from wmrl.models.config import ModelConfig
    from wmrl.models.world_model import ModelShape, WorldActionModel

    shape, spec = ModelShape("grid", (5, 5, 3), actions=5, tasks=2, window=6), ModelConfig(dim=32, layers=1, heads=2)
    path = tmp_path / "model.pt"
    save_checkpoint({"state_dict": WorldActionModel(shape, spec).state_dict(), "shape": asdict(shape),
                     "model": asdict(spec)}, path)
    return path


@pytest.mark.parametrize("damage", ["truncated", "garbage", "empty"])
def test_a_damaged_checkpoint_at_evaluation_names_the_file_and_what_to_do(model_checkpoint, damage):
    from wmrl.files import CheckpointError
    from wmrl.models.checkpoint import load_model

    load_model(model_checkpoint)  # whole, it loads
    whole = model_checkpoint.read_bytes()
    damaged = {"truncated": whole[:len(whole) // 2], "garbage": b"not a checkpoint" * 100, "empty": b""}[damage]
    model_checkpoint.write_bytes(damaged)
    with pytest.raises(CheckpointError, match=rf"^{model_checkpoint} is not a readable checkpoint \(.+\): delete "
                                              rf"it and rerun the job that wrote it$"):
        load_model(model_checkpoint)


@pytest.mark.slow
def test_an_unreachable_tracking_server_fails_a_job_at_its_start_within_seconds(tmp_path, monkeypatch):
    from wmrl import tracking

    uri = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    message = (f"RuntimeError: the MLflow tracking server {uri} cannot be reached: start it, or set "
               f"MLFLOW_TRACKING_URI to one that runs")
    started = time.monotonic()
    prepared = subprocess.run([PYTHON, "-m", "wmrl", "prepare-tracking", "wmrl/test/smoke"], capture_output=True,
                              text=True, timeout=60)
    assert prepared.returncode != 0 and prepared.stderr.strip().splitlines()[-1] == message
    assert time.monotonic() - started < 30
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=f"^{message.removeprefix('RuntimeError: ')}$"):
        tracking.start_or_resume_run(tmp_path / "work", "wmrl/test/smoke", "job", {})  # what a training job does first
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("entry", ["prepare", "start_or_resume_run"])
def test_a_tracking_server_that_accepts_and_never_answers_fails_within_ten_seconds(tmp_path, monkeypatch, entry):
    """A server behind a black hole (the connection opens, no byte ever comes back): one line, in < 10 s."""
    import socket

    from wmrl import tracking

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # the kernel completes the handshake; nothing ever reads or answers
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
        monkeypatch.setattr(tracking, "_answered", set())
        started = time.monotonic()
        with pytest.raises(RuntimeError, match=f"^the MLflow tracking server {uri} cannot be reached"):
            if entry == "prepare":
                tracking.prepare(["wmrl/test/smoke"])
            else:
                tracking.start_or_resume_run(tmp_path / "work", "wmrl/test/smoke", "job", {})
        assert time.monotonic() - started < 10


WRITER = """
import sys
import mlflow
from wmrl import tracking
run_id = tracking.start_or_resume_run(sys.argv[1], "wmrl/test/smoke", sys.argv[2], {"rule": "test"})
tracking.log_dataset_inputs(run_id, {"data/breakout": {"shards": [{"sha256": "ab" * 32}]}})
client = mlflow.MlflowClient(tracking.tracking_uri())
for step in range(40):
    client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
client.set_terminated(run_id)
"""


@pytest.mark.slow
def test_eight_jobs_log_at_once_to_a_fresh_sqlite_store_and_lose_nothing(tmp_path, monkeypatch):
    """After `prepare` (the Snakefile's onstart), 8 jobs each start a run, log one shared
    dataset as input (racing to insert it) and 40 metric values, all at once."""
    from wmrl import tracking

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracking.prepare(["wmrl/test/smoke"])
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"work{i}"), f"job{i}"],
                                stderr=subprocess.PIPE, text=True) for i in range(8)]
    errors = [writer.communicate(timeout=120)[1] for writer in writers]
    assert [error for writer, error in zip(writers, errors, strict=True) if writer.returncode != 0] == []
    client = mlflow.MlflowClient(tracking.tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("wmrl/test/smoke").experiment_id])
    assert sorted(r.info.run_name for r in runs) == [f"job{i}" for i in range(8)]
    for run in runs:
        assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "loss")) == list(range(40))
        assert [d.dataset.name for d in client.get_run(run.info.run_id).inputs.dataset_inputs] == ["data/breakout"]
