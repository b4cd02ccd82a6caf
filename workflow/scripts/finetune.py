"""Snakemake adapter: rule finetune -> wmrl.train.finetune.finetune."""

from wmrl.logs import job_logging
from wmrl.train.finetune import finetune

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    finetune(snakemake.params.spec, dict(snakemake.output), threads=snakemake.threads)  # noqa: F821
