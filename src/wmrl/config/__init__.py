"""The pipeline's configuration: the typed schema (`schema`, with the in-context RL section in
`icrl`), how its layers compose (`compose`) and the checks across keys (`checks`). The YAML layers
are the repository's top-level ``config/`` folder; this package is the Python that reads them."""

from wmrl.config.compose import compose
from wmrl.config.schema import Config, task_dataset
from wmrl.typed import ConfigError, to_plain

__all__ = ["Config", "ConfigError", "compose", "task_dataset", "to_plain"]
