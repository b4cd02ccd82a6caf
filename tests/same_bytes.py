"""Same seed, same bytes, across a refactor: run the smoke pipelines of two revisions and compare.

    python tests/same_bytes.py BASE [--experiments minatar_transfer dt_transfer icrl_bandit]

BASE is a git revision (checked out in a temporary worktree); the other side is this checkout's
working tree. For each side and experiment it runs `snakemake --cores 2 --config scale=smoke
experiment=E` in a fresh directory, with that side's `src/` first on PYTHONPATH, and hashes every
dataset shard and evaluation table (data/**/*.parquet, results/**/evaluate/**/*.parquet and the ICRL
rows). It also lists the jobs of `snakemake -n` for every experiment at smoke and laptop scale.
It prints one line per file that differs and exits 1 if anything does (0: byte for byte the same).
Both sides' runs are kept under --keep (default: a temporary directory); a later call with the
same --keep reuses the base side's runs (Snakemake finds them complete) and runs this side afresh.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXPERIMENTS = ("minatar_transfer", "dt_transfer", "icrl_bandit")
HASHED = ("data/**/*.parquet", "results/**/evaluate/**/*.parquet", "results/**/icrl/evaluate/*.parquet")


def snakemake(tree: Path, workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree / "src"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(tree / "Snakefile"), *args]
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)


def dry_run_jobs(tree: Path, workdir: Path, experiment: str, scale: str) -> list[str]:
    """The jobs `snakemake -n` would run for an experiment: one 'rule: output' line per job, sorted."""
    workdir.mkdir(parents=True, exist_ok=True)
    result = snakemake(tree, workdir, "-n", "--config", f"scale={scale}", f"experiment={experiment}")
    if result.returncode != 0:
        return [f"dry run failed: {result.stderr.strip().splitlines()[-1:]}"]
    jobs, rule = [], None
    for line in result.stdout.splitlines():
        if found := re.match(r"^(?:local)?rule (\w+):", line):
            rule = found.group(1)
        elif rule and (found := re.match(r"^\s+output: (.*)$", line)):
            jobs.append(f"{rule}: {found.group(1)}")
            rule = None
    return sorted(jobs)


def run_side(tree: Path, keep: Path, experiments: list[str]) -> dict[str, str]:
    """Run every experiment at smoke in its own directory under `keep`; sha256 of each hashed file."""
    digests = {}
    for experiment in experiments:
        workdir = keep / experiment
        workdir.mkdir(parents=True, exist_ok=True)
        result = snakemake(tree, workdir, "--cores", "2", "--config", "scale=smoke", f"experiment={experiment}")
        if result.returncode != 0:
            digests[f"{experiment}: pipeline"] = "failed: " + result.stderr[-2000:]
            continue
        for pattern in HASHED:
            for file in sorted(workdir.glob(pattern)):
                digests[f"{experiment}: {file.relative_to(workdir)}"] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="git revision to compare the working tree against")
    parser.add_argument("--experiments", nargs="+", default=list(DEFAULT_EXPERIMENTS))
    parser.add_argument("--keep", type=Path, default=None, help="where each side's runs are kept")
    args = parser.parse_args()
    keep = args.keep or Path(tempfile.mkdtemp(prefix="same-bytes-"))
    base_tree = keep / "base-tree"
    if not base_tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(base_tree), args.base],
                       check=True, capture_output=True)
    every = sorted(p.stem for p in (ROOT / "config/experiments").glob("*.yaml"))
    differences = []
    for scale in ("smoke", "laptop"):
        for experiment in every:
            base = dry_run_jobs(base_tree, keep / "dry" / "base" / scale / experiment, experiment, scale)
            head = dry_run_jobs(ROOT, keep / "dry" / "head" / scale / experiment, experiment, scale)
            if base != head:
                differences.append(f"snakemake -n {scale} {experiment}: {len(base)} jobs at base, {len(head)} now; "
                                   f"first difference: {sorted(set(base) ^ set(head))[:1]}")
        print(f"dry runs at {scale}: {len(every)} experiments compared", flush=True)
    base = run_side(base_tree, keep / "base", args.experiments)
    shutil.rmtree(keep / "head", ignore_errors=True)
    head = run_side(ROOT, keep / "head", args.experiments)
    for name in sorted(base.keys() | head.keys()):
        if base.get(name) != head.get(name):
            differences.append(f"{name}: {base.get(name, 'missing')[:16]} at base, "
                               f"{head.get(name, 'missing')[:16]} now")
    print(f"{len(head)} files hashed ({', '.join(args.experiments)}); runs kept in {keep}")
    print("\n".join(differences) if differences else "byte for byte the same")
    return 1 if differences else 0


if __name__ == "__main__":
    sys.exit(main())
