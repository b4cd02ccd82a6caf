"""Snakemake adapter: rule icrl_evaluate -> wmrl.icrl.evaluate.evaluate_icrl."""

from wmrl.icrl.evaluate import evaluate_icrl
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    evaluate_icrl(snakemake.params.spec, snakemake.output[0], threads=snakemake.threads)  # noqa: F821
