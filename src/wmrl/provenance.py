"""Where a result comes from, as hashes: of the package's source (a rule's rerun trigger), of a
job's settings, of a dataset's content, and the git commit of the code that runs."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).resolve().parent


def code_hash(*subpackages: str) -> str:
    """Hash of the source of the given `wmrl` subpackages ("envs") and modules ("data/writer"):
    a rule's rerun trigger."""
    digest = hashlib.sha256()
    for name in sorted(subpackages):
        path = PACKAGE_DIR / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]
        for file in files:
            digest.update(str(file.relative_to(PACKAGE_DIR)).encode())
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


def config_hash(section: Any) -> str:
    return hashlib.sha256(json.dumps(section, sort_keys=True, default=str).encode()).hexdigest()[:16]


def dataset_digest(card: dict[str, Any]) -> str:
    """A dataset's content digest: the hash of its shards' sha256 list."""
    return hashlib.sha256("".join(shard["sha256"] for shard in card["shards"]).encode()).hexdigest()[:16]


def git_sha(source: Path | str = Path(__file__).parent) -> str:
    """The commit of the code that runs (the package's own checkout, wherever the pipeline's
    working directory is), ``-dirty`` when tracked files differ from it, "unknown" outside git."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=source, capture_output=True, text=True, check=False).stdout.strip()

    sha = git("rev-parse", "HEAD") or "unknown"
    return f"{sha}-dirty" if git("status", "--porcelain", "--untracked-files=no") else sha
