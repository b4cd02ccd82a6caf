"""Snakemake adapter: rule pretrain -> wmrl.train.pretrain.pretrain."""

from wmrl.logs import job_logging
from wmrl.train.pretrain import pretrain

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    pretrain(snakemake.params.spec, dict(snakemake.output), threads=snakemake.threads)  # noqa: F821
