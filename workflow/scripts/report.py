"""Snakemake adapter: rule report -> wmrl.report.build.build_report."""

from wmrl.logs import job_logging
from wmrl.report.build import build_report

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    build_report(snakemake.params.spec, dict(snakemake.output))  # noqa: F821
