"""What the Snakemake rules ask of the package at DAG-build time, by concern: file layouts
(`paths`), rerun triggers (`code`), what the experiment reads (`experiment`), the jobs it runs
(`targets`), each job's params (`specs`), the environment check before any job (`preflight`),
the report job (`reporting`) and the in-context RL DAG (`icrl`).

Kept free of heavy imports (no torch, polars or gymnasium) so that ``snakemake`` with nothing to
do answers in about a second; the method kinds it asks (wmrl.methods) are torch-free too.
"""
