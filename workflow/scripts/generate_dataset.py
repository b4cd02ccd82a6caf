"""Snakemake adapter: rule generate_dataset -> wmrl.data.generate.generate_dataset."""

from wmrl.logs import job_logging
from wmrl.data.generate import generate_dataset

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    generate_dataset(snakemake.params.spec, snakemake.output[0])  # noqa: F821
