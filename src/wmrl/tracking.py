"""MLflow conventions, in one place (docs/architecture.md, "Naming and tracking").

* Tracking URI: ``MLFLOW_TRACKING_URI`` if set (an ``mlflow server``: required on a cluster, where
  SQLite on a network file system is unsafe), else ``sqlite:///<project>/mlruns/mlflow.db`` with
  artifacts beside it.
* The store and the experiments are created once, before parallel jobs start (``prepare``, called
  from the Snakefile's ``onstart``): a fresh SQLite store fails under parallel first use.
* One run per job, reused when a training job resumes: its id is kept under ``work/``. An
  evaluation is a run too, created when its episodes are done (tag ``trained_by``: the model's run).
* An ``http(s)`` store that cannot be reached fails a job at its first call, in seconds: it must
  answer its health page within 4 s to connect and 4 s to reply (``check_server``, once per
  process), and MLflow's own retries, minutes by default, are bounded here unless the environment
  sets them.
* Tags: rule, wildcards, config hash, git SHA (``-dirty`` if so); datasets are logged as inputs
  with their content digest; final models are registered as ``wmrl-<experiment>-<stage>`` with an
  alias naming the job. Each model's lineage (run, tags, dataset digests) is written beside it
  (``write_record``), so downstream jobs and the report never read the store.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from wmrl import cpu_kernels
from wmrl.files import save_checkpoint
from wmrl.provenance import config_hash, dataset_digest, git_sha

log = logging.getLogger("wmrl")

TRACKING_ENV = "MLFLOW_TRACKING_URI"
# About 7 s of retries when the server refuses connections (backoff 2 s, then 4 s, plus jitter).
HTTP_RETRIES = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "3", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
for _variable, _value in HTTP_RETRIES.items():
    os.environ.setdefault(_variable, _value)


def tracking_uri(root: Path | str = ".") -> str:
    if os.environ.get(TRACKING_ENV):
        return os.environ[TRACKING_ENV]
    return f"sqlite:///{(Path(root).resolve() / 'mlruns' / 'mlflow.db')}"


def artifact_root(root: Path | str = ".") -> str | None:
    """Where runs keep artifacts when the store is our local SQLite file (the server decides otherwise)."""
    return None if os.environ.get(TRACKING_ENV) else (Path(root).resolve() / "mlruns" / "artifacts").as_uri()


# A server is asked once per process whether it answers, within these (connect, read) seconds,
# before any MLflow call: one that drops packets or accepts and never answers fails the job in
# under 10 s, where MLflow's own calls (timeout 30 s, retried) would wait minutes.
HEALTH_TIMEOUT = (4.0, 4.0)
_answered: set[str] = set()


def unreachable(uri: str) -> RuntimeError:
    return RuntimeError(f"the MLflow tracking server {uri} cannot be reached: start it, or set {TRACKING_ENV} to one "
                        f"that runs")


def check_server(uri: str) -> None:
    """An http(s) store must answer its health page (any HTTP answer counts) within HEALTH_TIMEOUT."""
    import requests

    if not uri.startswith(("http://", "https://")) or uri in _answered:
        return
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true"  # MLflow's own TLS settings
    verify = False if insecure else os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True
    try:
        with requests.get(f"{uri.rstrip('/')}/health", timeout=HEALTH_TIMEOUT, verify=verify,
                          cert=os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH")):
            pass
    except requests.exceptions.RequestException:
        raise unreachable(uri) from None
    _answered.add(uri)


@contextlib.contextmanager
def reaching_store(uri: str) -> Iterator[None]:
    """Raise the store at `uri` not answering (a server down, a wrong address, one that never
    answers) as one clear error."""
    import requests
    from mlflow.exceptions import MlflowException

    check_server(uri)
    try:
        yield
    except MlflowException as error:
        if isinstance(error.__context__, (requests.exceptions.ConnectionError, requests.exceptions.Timeout)):
            raise unreachable(uri) from None
        raise


def experiment_name(experiment: str, scale: str) -> str:
    return f"wmrl/{experiment}/{scale}"


def prepare(experiments: list[str], root: Path | str = ".") -> str:
    """Create the store and `experiments` if they do not exist; return the tracking URI."""
    import mlflow

    uri = tracking_uri(root)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = mlflow.MlflowClient(uri)
    artifacts = artifact_root(root)
    with reaching_store(uri):
        for name in experiments:
            if client.get_experiment_by_name(name) is None:
                client.create_experiment(name, artifact_location=artifacts and f"{artifacts}/{name}")
    return uri


def run_tags(spec: dict[str, Any]) -> dict[str, str]:
    """A job's MLflow tags: its rule and wildcards (spec["tags"]), the hash of its whole spec, the git SHA."""
    return {**spec["tags"], "config_hash": config_hash(spec), "git_sha": git_sha()}


def run_url(run_id: str, root: Path | str = ".") -> str | None:
    """The run's page on the tracking server, when the store is one (an http(s) URI); else None."""
    import mlflow

    uri = tracking_uri(root)
    if not uri.startswith(("http://", "https://")):
        return None
    experiment_id = mlflow.MlflowClient(uri).get_run(run_id).info.experiment_id
    return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def write_record(path: Path | str, run_id: str, spec: dict[str, Any], model_uri: str | None,
                 datasets: dict[str, dict[str, Any]], parameters: int | None = None,
                 root: Path | str = ".", training: dict[str, float] | None = None,
                 trained_parameters: int | None = None, from_pretraining: list[str] | None = None) -> dict[str, Any]:
    """Write a trained model's lineage beside it (``<name>.mlflow.json``): the MLflow run (id,
    experiment, page URL if any), the registered model URI, its parameter count, the tags of its
    run, the datasets it was trained on (directory -> content digest) and, when given, what
    training took (`training`: {"steps": gradient steps, "seconds": wall seconds of the training
    loop alone}; the report's training-speed table reads it), how many parameters training
    changed (`trained_parameters`: fewer than `parameters` under LoRA) and which of the model's
    modules came from pretraining. Downstream jobs read this file, never the store."""
    record = {"run_id": run_id, "experiment": spec["mlflow_experiment"], "model_uri": model_uri,
              "run_url": run_url(run_id, root), "parameters": parameters, **run_tags(spec),
              "datasets": {directory: dataset_digest(card) for directory, card in sorted(datasets.items())},
              "trained_parameters": parameters if trained_parameters is None else trained_parameters,
              "from_pretraining": from_pretraining or [], "cpu_kernels": cpu_kernels(),
              **({"training": training} if training is not None else {})}
    Path(path).write_text(json.dumps(record, indent=1) + "\n")
    return record


def run_id_file(work_dir: Path) -> Path:
    return Path(work_dir) / "mlflow_run_id"


def start_or_resume_run(work_dir: Path, experiment: str, run_name: str, tags: dict[str, str],
                        root: Path | str = ".") -> str:
    """The job's MLflow run id: the one saved under `work_dir` if the job is resuming and the store
    still holds it, else a new run (a store replaced since, e.g. a fresh mlruns/, loses the old one)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    saved = run_id_file(work_dir)
    if saved.is_file():
        run_id = saved.read_text().strip()
        try:
            with reaching_store(tracking_uri(root)):
                mlflow.MlflowClient(tracking_uri(root)).update_run(run_id, status="RUNNING")
            return run_id
        except MlflowException as error:
            if error.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            log.warning("MLflow run %s of %s is not in the store %s: starting a new run", run_id, work_dir,
                        tracking_uri(root))
    run_id = new_run(experiment, run_name, tags, root)
    Path(work_dir).mkdir(parents=True, exist_ok=True)
    saved.write_text(run_id)
    return run_id


def new_run(experiment: str, run_name: str, tags: dict[str, str], root: Path | str = ".") -> str:
    """A new MLflow run for a job that has nothing to resume (an evaluation is logged once, at its end)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri(root))
    with reaching_store(tracking_uri(root)):
        found = client.get_experiment_by_name(experiment)
    if found is None:
        raise RuntimeError(f"MLflow experiment {experiment!r} does not exist: run `wmrl prepare-tracking` "
                           f"(Snakemake does it on start) before the jobs")
    return client.create_run(found.experiment_id, run_name=run_name, tags=tags).info.run_id


def log_dataset_inputs(run_id: str, cards: dict[str, dict[str, Any]], root: Path | str = ".") -> None:
    """Log each dataset (directory -> card) as an MLflow input with its content digest."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    inputs = []
    for directory, card in cards.items():
        source = resolve_dataset_source(str(Path(directory).resolve()))
        dataset = MetaDataset(source, name=directory, digest=dataset_digest(card))._to_mlflow_entity()
        inputs.append(DatasetInput(dataset, tags=[InputTag("mlflow.data.context", "training")]))
    client = mlflow.MlflowClient(tracking_uri(root))
    try:
        client.log_inputs(run_id, datasets=inputs)
    except mlflow.exceptions.MlflowException as error:
        # Two jobs on one dataset may both find it missing and both insert it; the second insert
        # breaks the store's unique (experiment, name, digest) key and rolls back. Once more finds it.
        if not _is_unique_violation(error):
            raise
        client.log_inputs(run_id, datasets=inputs)


def _is_unique_violation(error: BaseException) -> bool:
    """The store's unique key broken by a concurrent insert: raised by SQLAlchemy in a local store,
    or reported in a tracking server's answer (BAD_REQUEST, the driver's error named in its text:
    sqlite3/pymysql IntegrityError, psycopg2 UniqueViolation)."""
    from sqlalchemy.exc import IntegrityError

    return isinstance(error.__cause__, IntegrityError) or any(
        name in str(error) for name in ("IntegrityError", "UniqueViolation"))


def register_model(run_id: str, checkpoint: dict[str, Any], path: str, name: str, alias: str,
                   input_example: dict[str, Any], python_model: Any, root: Path | str = ".",
                   signature: Any = None) -> str:
    """Save `checkpoint` to `path` (weights-only loadable), log it to the run as the MLflow pyfunc
    model `python_model` (an ``mlflow.pyfunc.PythonModel`` that loads it from the artifact
    "checkpoint"; its signature inferred from `input_example` unless given), register it as `name`
    and point `alias` at the new version; return the model URI."""
    import mlflow

    save_checkpoint(checkpoint, path)
    mlflow.set_tracking_uri(tracking_uri(root))
    with mlflow.start_run(run_id=run_id):
        info = mlflow.pyfunc.log_model(name="model", python_model=python_model,
                                       artifacts={"checkpoint": str(path)}, input_example=input_example,
                                       signature=signature,
                                       registered_model_name=name, pip_requirements=[], code_paths=None)
    client = mlflow.MlflowClient(tracking_uri(root))
    client.set_registered_model_alias(name, alias, info.registered_model_version)
    return f"models:/{name}@{alias}"


def log_run(run_id: str, params: dict[str, Any], metrics: list[tuple[str, float, int]], root: Path | str = ".") -> None:
    """Log params and (key, value, step) metrics to a run in one batch and mark it finished."""
    import time

    import mlflow
    from mlflow.entities import Metric, Param

    client = mlflow.MlflowClient(tracking_uri(root))
    now = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(key, float(value), now, step) for key, value, step in metrics],
                     params=[Param(key, str(value)) for key, value in params.items()])
    client.set_terminated(run_id)
