"""Snakemake adapter: rule generate_dataset -> wmrl.data.job.dataset_job."""

from wmrl.data.job import dataset_job
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    dataset_job(snakemake.params.spec, snakemake.output[0])  # noqa: F821
