"""Typed settings: the error every bad configuration raises, a merge that checks a layer against a
dataclass schema and names the bad key, and plain containers of a config node.

A leaf module (omegaconf only), so that the schema's components (wmrl.methods, …) can check their
own sections without importing the composition (wmrl.config) that calls them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A configuration layer does not fit the schema; the message names the key path."""


def to_plain(node: Any) -> Any:
    """A config node as plain Python containers (for JSON params and MLflow)."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def merge(cfg: DictConfig, layer: Any, source: str, prefix: str = "") -> DictConfig:
    """`cfg` with `layer` merged over it; a layer that does not fit fails naming `source` and the key path."""
    try:
        return OmegaConf.merge(cfg, layer)
    except OmegaConfBaseException as exc:
        raise ConfigError(_explain(exc, source, prefix)) from None


def _explain(exc: OmegaConfBaseException, source: str, prefix: str) -> str:
    """Turn an OmegaConf merge error into one line naming the key path and what is allowed."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    path = f"{prefix}.{key}" if prefix else str(key)
    parent_type = getattr(exc, "object_type", None)
    head = f"config error in {source}: "
    if "not in" in str(exc) and dataclasses.is_dataclass(parent_type):
        allowed = ", ".join(f.name for f in dataclasses.fields(parent_type))
        leaf = str(getattr(exc, "key", ""))
        parent = path[: -len(leaf) - 1] if path.endswith("." + leaf) else ""
        hint = " (nested overrides go in a --configfile, not --config a.b=...)" if "." in leaf else ""
        return f"{head}unknown key '{path}'; allowed keys under '{parent or '<top level>'}': {allowed}{hint}"
    expected = _expected_type(parent_type, str(getattr(exc, "key", "")))
    value = getattr(exc, "value", None)
    if expected:
        return f"{head}'{path}' must be {expected}, got {value!r} ({type(value).__name__})"
    return f"{head}'{path}': {str(exc).splitlines()[0]}"


def _expected_type(parent_type: Any, key: str) -> str | None:
    if dataclasses.is_dataclass(parent_type):
        for f in dataclasses.fields(parent_type):
            if f.name == key:
                return str(f.type)
    return None
