"""Snakemake adapter: rule context_costs -> wmrl.bench.pretrain.context_costs."""

from wmrl.bench.pretrain import context_costs
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    context_costs(snakemake.params.spec, snakemake.output[0])  # noqa: F821
