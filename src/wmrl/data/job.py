"""The generate_dataset job: a task whose dataset has a "source" (``minari:<id>``) imports that
Minari dataset (`wmrl.data.minari`); any other has its dataset generated (`wmrl.data.generate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmrl.data.generate import generate_dataset
from wmrl.data.minari import import_minari
from wmrl.jobs import DatasetSpec, check_spec


def dataset_job(spec: DatasetSpec, out: Path | str) -> dict[str, Any]:
    """Write the dataset of the job `spec` (wmrl.dag.specs.dataset_spec) into directory `out`; return its card."""
    check_spec(spec, DatasetSpec)
    if "source" in spec:
        return import_minari(spec, out)
    return generate_dataset(spec, out)
