"""Snakemake adapter: rule train_peer -> wmrl.train.peer.train_peer."""

from wmrl.logs import job_logging
from wmrl.train.peer import train_peer

with job_logging(snakemake.log[0]):  # noqa: F821 (snakemake is injected by Snakemake)
    train_peer(snakemake.params.spec, dict(snakemake.output))  # noqa: F821
