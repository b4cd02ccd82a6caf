"""Snakemake adapter: rule icrl_histories -> wmrl.icrl.generate.generate_histories."""

from wmrl.icrl.generate import generate_histories
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    generate_histories(snakemake.params.spec, snakemake.output[0])  # noqa: F821
