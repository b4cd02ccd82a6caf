"""Benchmarks: each measures a figure against a reference taken in the same run, prints the
ratio, and writes its figures to JSON for the report (``wmrl bench <name>``)."""
