"""MLflow conventions: the store made once, then concurrent writers; runs reused on resume."""

import subprocess
import sys

import mlflow

from wmrl import tracking

WRITER = """
import sys
import mlflow
from wmrl import tracking
run_id = tracking.start_or_resume_run(sys.argv[1], "wmrl/test/smoke", sys.argv[2], {"rule": "test"})
client = mlflow.MlflowClient(tracking.tracking_uri())
for step in range(40):
    client.log_metric(run_id, "loss", 1.0 / (step + 1), step=step)
client.set_terminated(run_id)
"""


def test_concurrent_writers_after_prepare(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracking.prepare(["wmrl/test/smoke"])
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path / f"work{i}"), f"job{i}"],
                                stderr=subprocess.PIPE, text=True) for i in range(3)]
    for writer in writers:
        assert writer.wait(timeout=120) == 0, writer.stderr.read()
    client = mlflow.MlflowClient(tracking.tracking_uri())
    runs = client.search_runs([client.get_experiment_by_name("wmrl/test/smoke").experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["job0", "job1", "job2"]
    assert all(len(client.get_metric_history(r.info.run_id, "loss")) == 40 for r in runs)


def test_a_resumed_job_reuses_its_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracking.prepare(["wmrl/test/smoke"])
    first = tracking.start_or_resume_run(tmp_path / "work", "wmrl/test/smoke", "job", {})
    again = tracking.start_or_resume_run(tmp_path / "work", "wmrl/test/smoke", "job", {})
    assert first == again
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/fresh.db")  # the store was replaced
    tracking.prepare(["wmrl/test/smoke"])
    fresh = tracking.start_or_resume_run(tmp_path / "work", "wmrl/test/smoke", "job", {})
    assert fresh != first and (tmp_path / "work" / "mlflow_run_id").read_text() == fresh


def test_default_store_is_sqlite_under_the_project(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking.tracking_uri(tmp_path) == f"sqlite:///{tmp_path.resolve()}/mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.tracking_uri(tmp_path) == "http://127.0.0.1:5000"
