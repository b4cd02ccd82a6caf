"""The pipeline's in-context dataset job (rule icrl_histories): the histories of one kind and seed,
written through the contract's writer (`wmrl.icrl.histories`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from wmrl.icrl.histories import bandit_histories, darkroom_histories, write_histories
from wmrl.icrl.learning import noise_distillation_histories
from wmrl.icrl.tasks import bandit_tasks, darkroom_goals, split_goals
from wmrl.jobs import IcrlHistoriesSpec, check_spec


def generate_histories(spec: IcrlHistoriesSpec, out: Path | str) -> dict[str, Any]:
    """The pipeline's dataset job: the histories of kind spec["data"] for spec["icrl"]
    (`wmrl.config.IcrlConfig` as a dict) with seed spec["seed"], written to `out`. Contexts (DPT):
    bandits' `train_tasks` arm-mean vectors drawn with `task_seed`, or Dark Room's training goals
    of the seeded split (held-out goals refused by `darkroom_histories`); learning (AD): the same
    training goals' noise-distillation histories (`wmrl.icrl.learning`, settings `icrl.ad`)."""
    check_spec(spec, IcrlHistoriesSpec)
    icrl, seed = spec["icrl"], int(spec["seed"])
    if icrl["family"] == "bandit":
        means = bandit_tasks(icrl["train_tasks"], icrl["arms"], icrl["task_seed"])
        histories = bandit_histories(means, icrl["horizon"], seed, icrl["histories_per_task"], icrl["noise_std"])
        return write_histories(histories, out)
    train, heldout = split_goals(darkroom_goals(icrl["size"]), icrl["heldout_goals"], icrl["task_seed"])
    if spec["data"] == "learning":
        ad = icrl["ad"]
        histories = noise_distillation_histories(train, ad["episodes"], icrl["episode_steps"], seed, heldout,
                                                 ad["histories_per_task"], icrl["size"], ad["decay"])
    else:
        histories = darkroom_histories(train, icrl["horizon"], seed, heldout, icrl["histories_per_task"], icrl["size"])
    return write_histories(histories, out)
