"""Offline datasets: generation by behaviour policies, the Parquet/card contract, validated reading."""

from wmrl.data.dataset import Dataset, DatasetError, decode_obs, open_dataset, read_card

__all__ = ["Dataset", "DatasetError", "decode_obs", "open_dataset", "read_card"]
