"""Each rule's rerun trigger: the wmrl modules whose source decides its outputs (hashed by
wmrl.provenance.code_hash into the rule's `code` param). A method kind declares its training
rule's own list (wmrl.methods), the data layer its datasets' (wmrl.data.DATASET_CODE, which the
cards record); every other rule's is here."""

from wmrl.data import DATASET_CODE  # noqa: F401 (the dataset rule's, re-exported beside the others)
from wmrl.methods.world_action import FINETUNE_CODE

PRETRAIN_CODE = FINETUNE_CODE  # pretraining runs what fine-tuning our model runs: train, models, rl, windows
EVALUATE_CODE = ("evaluate", "rl/planning", "models", "envs", "data/windows", "data/behaviour", "peers")
CONTEXT_COSTS_CODE = ("models", "bench/pretrain", "rl/objectives")
REPORT_CODE = ("report", "evaluate/summary", "evaluate/statistics")
ICRL_HISTORIES_CODE = ("icrl/tasks", "icrl/histories", "icrl/learning", "icrl/generate", "data/dataset")
ICRL_PRETRAIN_CODE = ("models", "train/icrl", "train/loop", "train/module", "icrl/histories", "icrl/arrays",
                      "icrl/methods", "icrl/curve", "icrl/learning", "tracking")
ICRL_EVALUATE_CODE = ("icrl/tasks", "icrl/baselines", "icrl/histories", "icrl/arrays", "icrl/learning",
                      "icrl/methods", "icrl/curve", "icrl/evaluate", "models", "train/icrl")
ICRL_REPORT_CODE = ("icrl/report", "icrl/context_report", "evaluate/statistics")
