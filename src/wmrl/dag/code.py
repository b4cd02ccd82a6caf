"""Each rule's rerun trigger: the wmrl modules whose source decides its outputs (hashed by
wmrl.provenance.code_hash into the rule's `code` param). A method kind declares its training
rule's own list (wmrl.methods); every other rule's is here."""

DATASET_CODE = ("envs", "data/dataset", "data/writer", "data/behaviour", "data/generate", "data/minari")
PRETRAIN_CODE = ("models", "rl", "train", "data/windows", "data/dataset", "envs", "tracking")
EVALUATE_CODE = ("evaluate", "rl/planning", "models", "envs", "data/windows", "data/behaviour", "peers")
CONTEXT_COSTS_CODE = ("models", "bench/pretrain", "rl/objectives")
REPORT_CODE = ("report", "evaluate/summary", "evaluate/statistics")
ICRL_HISTORIES_CODE = ("icrl/tasks", "icrl/histories", "data/dataset")
ICRL_PRETRAIN_CODE = ("models", "train/dpt", "train/loop", "train/module", "icrl/histories", "tracking")
ICRL_EVALUATE_CODE = ("icrl/tasks", "icrl/baselines", "icrl/histories", "icrl/evaluate", "models", "train/dpt")
ICRL_REPORT_CODE = ("icrl/report", "evaluate/statistics")
