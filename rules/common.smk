# Shared by every rule: the composed, validated config and the package's DAG helpers.
import sys

from wmrl.config import ConfigError, code_hash, compose
from wmrl.pipeline import DATASET, DATASET_CODE, dataset_dirs, dataset_spec

try:
    CFG = compose(config, root=workflow.basedir)
except ConfigError as error:
    sys.exit(f"wmrl: {error}")


wildcard_constraints:
    scale=CFG.scale,
    suite=CFG.suite,
    seed=r"\d+",
