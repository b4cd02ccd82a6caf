"""DVC: a fresh clone of this repository pulls the committed laptop datasets from the remote that
travels with it; datasets pushed to a remote come back on a fresh clone; and the pipeline then
skips generation instead of regenerating."""

import json
import re

import shutil
import subprocess

import pytest
from test_pipeline import TINY

from conftest import PYTHON, ROOT, snakemake_env

pytestmark = pytest.mark.e2e

DVC = [PYTHON, "-m", "dvc"]


def run(command, cwd):
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, env=snakemake_env(), timeout=300)
    if result.returncode != 0:
        pytest.fail(f"{' '.join(map(str, command))} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout + result.stderr


def test_push_then_pull_on_a_fresh_clone_skips_generation(tmp_path):
    project, remote = tmp_path / "project", tmp_path / "remote"
    project.mkdir()
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@example.org"]
    run(["git", "init", "-q"], project)
    run(DVC + ["init", "-q"], project)
    for name in ("Snakefile", "rules", "workflow", "config", "profiles", ".dvc/config", ".dvcignore", ".gitignore"):
        source = ROOT / name
        target = project / name
        target.parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if source.is_dir() else shutil.copy)(source, target)
    (project / "tiny.yaml").write_text(TINY)
    run(DVC + ["remote", "modify", "repo", "url", str(remote)], project)
    snake = [PYTHON, "-m", "snakemake", "datasets", "--cores", "2", "--configfile", "tiny.yaml"]
    run(snake, project)
    run(DVC + ["add", "data"], project)
    run(git + ["add", "-A"], project)
    run(git + ["commit", "-qm", "data"], project)
    run(DVC + ["push"], project)

    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(project), str(clone)], tmp_path)
    assert not (clone / "data").exists()
    run(DVC + ["pull"], clone)
    card = "data/laptop/classic/cartpole/random/seed0/card.json"
    assert (clone / card).read_bytes() == (project / card).read_bytes()
    plan = run(snake + ["-n"], clone)
    assert "Nothing to be done" in plan, plan


def test_a_fresh_clone_pulls_the_committed_laptop_datasets_and_plans_no_dataset_job(tmp_path):
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(ROOT), str(clone)], tmp_path)
    assert not (clone / "data").exists()
    run(DVC + ["pull"], clone)
    assert "up to date" in run(DVC + ["status"], clone)
    cards = sorted(clone.glob("data/laptop/**/card.json"))
    assert cards, "dvc pull brought no laptop dataset"
    for card in cards:
        assert json.loads(card.read_text())["generator"]["cpu_kernels"]["ONEDNN_MAX_CPU_ISA"] == "AVX2"
    plan = run([PYTHON, "-m", "snakemake", "--cores", "2", "-n"], clone)
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", plan, re.MULTILINE))  # Snakemake's table of jobs per rule
    assert "pretrain" in jobs and "generate_dataset" not in jobs, plan
