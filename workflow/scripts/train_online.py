"""Snakemake adapter: rule train_online -> wmrl.train.online.train_online."""

from wmrl.logs import job_logging
from wmrl.train.online import train_online

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    train_online(snakemake.params.spec, dict(snakemake.output))  # noqa: F821
