"""Snakemake adapter: rule evaluate -> wmrl.evaluate.rollout.evaluate."""

from wmrl.evaluate.rollout import evaluate
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    evaluate(snakemake.params.spec, dict(snakemake.output), threads=snakemake.threads)  # noqa: F821
