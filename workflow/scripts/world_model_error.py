"""Snakemake adapter: rule world_model_error -> wmrl.evaluate.world_model.world_model_error."""

from wmrl.evaluate.world_model import world_model_error
from wmrl.logs import job_logging

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    world_model_error(snakemake.params.spec, snakemake.output.errors, snakemake.output.probe)  # noqa: F821
