"""Snakemake adapter: rule icrl_pretrain -> wmrl.train.icrl.train_icrl."""

from wmrl.logs import job_logging
from wmrl.train.icrl import train_icrl

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    train_icrl(snakemake.params.spec, dict(snakemake.output), threads=snakemake.threads)  # noqa: F821
