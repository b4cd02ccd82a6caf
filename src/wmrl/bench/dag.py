"""How fast Snakemake lists the `paper` DAG (JOWA on Atari, every game, size, backbone and seed)
without running anything: what a user waits for before every cluster run.

Measured: ``snakemake -n --config scale=paper`` in an empty directory, wall seconds and jobs,
twice: the first listing also builds every task's environment to check it (20 Atari emulators),
the second reads the checked specs back (`wmrl.dag.preflight.check_envs`), as every later run does.
Reference, in the same run: the same command for the `smoke` DAG (a few dozen jobs), which is
mostly the start-up of Python, Snakemake and the package; the paper DAG's time beyond it, per
job, is the cost of the DAG helpers and Snakemake's bookkeeping. Goal: the listing in <= 15 s.
"""

from __future__ import annotations

import json
import platform
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOAL_SECONDS = 15.0
ROOT = Path(__file__).resolve().parents[3]  # the repository: its Snakefile and config/


def dry_run(scale: str, directory: str) -> tuple[float, int]:
    """Wall seconds and the number of jobs of ``snakemake -n`` at `scale` in `directory`."""
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "-n", "--config",
               f"scale={scale}"]
    start = time.perf_counter()
    result = subprocess.run(command, cwd=directory, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, int(re.search(r"^total\s+(\d+)$", result.stdout, re.MULTILINE).group(1))


def main(out: str) -> dict:
    with tempfile.TemporaryDirectory() as smoke_dir, tempfile.TemporaryDirectory() as paper_dir:
        smoke_s, smoke_jobs = dry_run("smoke", smoke_dir)
        first_s, paper_jobs = dry_run("paper", paper_dir)  # checks every env, keeps the specs
        paper_s, _ = dry_run("paper", paper_dir)  # reads them back
    per_job_ms = 1000 * (paper_s - smoke_s) / (paper_jobs - smoke_jobs)
    print(f"smoke: {smoke_jobs:5,} jobs in {smoke_s:5.1f} s (reference: start-up)")
    print(f"paper: {paper_jobs:5,} jobs in {paper_s:5.1f} s ({paper_s / smoke_s:.1f}x the reference; "
          f"{per_job_ms:.1f} ms per job beyond it; goal <= {GOAL_SECONDS:.0f} s: "
          f"{'met' if paper_s <= GOAL_SECONDS else 'NOT met'})")
    print(f"paper, first listing in a fresh directory (every env built and checked): {first_s:5.1f} s "
          f"(+{first_s - paper_s:.1f} s)")
    figures = {"benchmark": "paper_dry_run", "reference": "smoke dry run (start-up)", "goal_seconds": GOAL_SECONDS,
               "smoke": {"seconds": smoke_s, "jobs": smoke_jobs}, "paper": {"seconds": paper_s, "jobs": paper_jobs},
               "paper_first_listing_seconds": first_s, "env_check_seconds": first_s - paper_s,
               "ratio_to_reference": paper_s / smoke_s, "ms_per_job": per_job_ms,
               "machine": platform.processor() or platform.machine()}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(figures, indent=1) + "\n")
    return figures
