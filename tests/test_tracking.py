"""MLflow conventions: runs reused on resume, the store's location, datasets logged by racing jobs
(many concurrent writers: tests/test_faults.py)."""

import mlflow
import pytest

from wmrl import tracking


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


def _dataset_cards(tmp_path):
    return {str(tmp_path / "data" / "breakout"): {"shards": [{"sha256": "ab" * 32}]}}


def test_a_dataset_another_job_logged_first_is_logged_again(tmp_path, monkeypatch):
    """Two jobs on one dataset can both find it missing and both insert it; the loser's insert
    violates the store's unique key. The loser logs again and finds the winner's row."""
    from sqlalchemy.exc import IntegrityError

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracking.prepare(["wmrl/test/smoke"])
    winner = tracking.start_or_resume_run(tmp_path / "winner", "wmrl/test/smoke", "winner", {})
    loser = tracking.start_or_resume_run(tmp_path / "loser", "wmrl/test/smoke", "loser", {})
    real_log_inputs = mlflow.MlflowClient.log_inputs
    attempts = []

    def race(client, run_id, datasets=None, models=None):
        attempts.append(run_id)
        if len(attempts) == 1:  # the winner commits between the loser's check and its insert
            real_log_inputs(client, winner, datasets=datasets)
            raise mlflow.exceptions.MlflowException("UNIQUE constraint failed") from IntegrityError("INSERT", {}, None)
        return real_log_inputs(client, run_id, datasets=datasets, models=models)

    monkeypatch.setattr(mlflow.MlflowClient, "log_inputs", race)
    tracking.log_dataset_inputs(loser, _dataset_cards(tmp_path))
    client = mlflow.MlflowClient(tracking.tracking_uri())
    logged = {run: [d.dataset.digest for d in client.get_run(run).inputs.dataset_inputs] for run in (winner, loser)}
    assert attempts == [loser, loser] and logged[winner] == logged[loser] and len(logged[loser]) == 1


def test_other_store_errors_while_logging_datasets_are_raised(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    tracking.prepare(["wmrl/test/smoke"])
    run = tracking.start_or_resume_run(tmp_path / "work", "wmrl/test/smoke", "job", {})

    def broken(client, run_id, datasets=None, models=None):
        raise mlflow.exceptions.MlflowException("the store is read-only")

    monkeypatch.setattr(mlflow.MlflowClient, "log_inputs", broken)
    with pytest.raises(mlflow.exceptions.MlflowException, match="read-only"):
        tracking.log_dataset_inputs(run, _dataset_cards(tmp_path))


@pytest.mark.server
def test_datasets_logged_by_racing_jobs_through_a_tracking_server_are_all_logged(mlflow_server):
    """Through `mlflow server` the loser of the race gets BAD_REQUEST naming the IntegrityError (no
    Python cause to inspect); it must log again like a local store's loser. 40 datasets, each logged
    by two jobs at once (before the fix, about one in eight races failed a job)."""
    import threading

    client = mlflow.MlflowClient(mlflow_server)
    experiment = client.create_experiment("wmrl/test/race-through-server")
    runs = [client.create_run(experiment).info.run_id for _ in range(2)]
    errors = []

    def log(run_id, cards):
        try:
            tracking.log_dataset_inputs(run_id, cards)
        except Exception as error:  # noqa: BLE001 - every failure is the finding
            errors.append(error)

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
        for index in range(40):
            cards = {f"/data/race/{index}": {"shards": [{"sha256": f"{index:064x}"}]}}
            threads = [threading.Thread(target=log, args=(run_id, cards)) for run_id in runs]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
    assert errors == []
    for run_id in runs:
        assert len(client.get_run(run_id).inputs.dataset_inputs) == 40
