"""Snakemake adapter: rule scores -> wmrl.evaluate.summary.write_scores."""

from wmrl.evaluate.summary import write_scores
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    write_scores(list(snakemake.input), snakemake.params.report, dict(snakemake.output))  # noqa: F821
