"""Offline datasets: generation by behaviour policies, the Parquet/card contract, validated reading.

The reading API (READING) is imported from `wmrl.data.dataset` on first use, so that `wmrl.dag`
reads DATASET_CODE when Snakemake builds the DAG without loading polars.
"""

from __future__ import annotations

from typing import Any

# The modules whose source decides a dataset's bytes (readers elsewhere in data/ do not): the card
# records their code hash, and the generate_dataset rule reruns when it changes.
DATASET_CODE = ("envs", "data/dataset", "data/writer", "data/behaviour", "data/generate", "data/minari", "data/card",
                "data/job")
READING = ("Dataset", "DatasetError", "decode_obs", "open_dataset", "read_card")

__all__ = ["DATASET_CODE", *READING]


def __getattr__(name: str) -> Any:
    """A name of the reading API, from `wmrl.data.dataset` (imported on the first such look-up)."""
    if name not in READING:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from wmrl.data import dataset

    return getattr(dataset, name)
