"""Third-party suites through config alone: the MiniGrid and POPGym experiments run end to end at
`smoke` (datasets, pretraining, fine-tuning, peers, evaluation, report)."""

import json
import subprocess

import pytest

from conftest import ROOT, snakemake_command, snakemake_env
from wmrl.config import compose
from wmrl.dag.experiment import dataset_dirs
from wmrl.dag.paths import CHECKED_ENVS
from wmrl.dag.targets import report_files

pytestmark = pytest.mark.e2e

SUITES = {
    # experiment: (a task, its observation kind and shape in the card, a channel its grid must name)
    "minigrid": ("empty8", "grid", [7, 7, 24], "object:goal"),
    "popgym": ("repeat_previous", "vector", [4], None),
}


@pytest.mark.parametrize("experiment", list(SUITES))
def test_a_third_party_suite_runs_end_to_end_at_smoke(experiment, tmp_path):
    result = subprocess.run(snakemake_command("--cores", "2", "--config", "scale=smoke", f"experiment={experiment}"),
                            cwd=tmp_path, capture_output=True, text=True, env=snakemake_env(), timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    cfg = compose({"scale": "smoke", "experiment": experiment}, ROOT)
    task, kind, shape, channel = SUITES[experiment]
    (card_dir,) = [d for d in dataset_dirs(cfg, [task]) if d.endswith("random/seed0")]
    card = json.loads((tmp_path / card_dir / "card.json").read_text())
    assert (card["obs"]["kind"], card["obs"]["shape"]) == (kind, shape)
    assert channel is None or channel in card["obs"]["channels"]
    checked = json.loads((tmp_path / CHECKED_ENVS).read_text())
    assert len(checked) == len(cfg.tasks)  # every task's env was checked before the jobs, and kept
    page = (tmp_path / report_files(cfg)["html"]).read_text()
    assert "too few runs to decide" in page  # smoke's 1 seed x 1 held-out task decides nothing
