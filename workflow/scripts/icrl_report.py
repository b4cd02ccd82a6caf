"""Snakemake adapter: rule icrl_report -> wmrl.icrl.report.build_icrl_report."""

from wmrl.icrl.report import build_icrl_report
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    build_icrl_report(snakemake.params.spec, dict(snakemake.output))  # noqa: F821
