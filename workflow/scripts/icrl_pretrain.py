"""Snakemake adapter: rule icrl_pretrain -> wmrl.train.dpt.train_dpt."""

from wmrl.logs import job_logging
from wmrl.train.dpt import train_dpt

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    train_dpt(snakemake.params.spec, dict(snakemake.output), threads=snakemake.threads)  # noqa: F821
