"""Snakemake adapter: a training rule of rules/finetune.smk -> its method kind's train (wmrl.methods)."""

from wmrl.logs import job_logging
from wmrl.methods import RULES

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    RULES[snakemake.rule].train(snakemake.params.spec, dict(snakemake.output), threads=snakemake.threads)  # noqa: F821
