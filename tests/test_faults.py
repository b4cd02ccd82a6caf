"""Faults a job meets on a cluster, each provoked for real: preemption (SIGTERM), a full disk, an
unreachable tracking server, a corrupted checkpoint, many jobs on one fresh SQLite store."""

import json
import signal
import subprocess

import mlflow

from conftest import step_of, wait_until


def with_spec(command: list[str], spec: dict) -> list[str]:
    """A `python -m wmrl <stage> --spec ...` command line with another spec."""
    at = command.index("--spec") + 1
    return [*command[:at], json.dumps(spec), *command[at + 1:]]


def test_sigterm_saves_a_checkpoint_exits_nonzero_and_the_rerun_resumes_its_run(tiny_job):
    """SLURM preempts a job with SIGTERM: the job checkpoints where it is and fails; rerun, it
    resumes into the same MLflow run and finishes."""
    spec, command, env, tmp_path = tiny_job
    spec["pretrain"] |= {"steps": 150, "checkpoint_every": 1000}  # no periodic checkpoint: one there came at the signal
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
    assert 25 <= saved_at < 150 and not (tmp_path / "out" / "model.pt").exists()

    finished = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    runs = client.search_runs([client.get_experiment_by_name(spec["mlflow_experiment"]).experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == run_id.read_text() and runs[0].info.status == "FINISHED"
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]
    assert f"resuming from {last}" in finished.stderr and (tmp_path / "out" / "model.pt").is_file()
    assert min(steps) < saved_at < max(steps) and len(steps) == len(set(steps))  # resumed: no step logged twice
