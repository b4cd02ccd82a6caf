"""How the configuration's layers compose into the typed schema.

A configuration is built from layers, later layers win:

1. the defaults of the schema's dataclasses (wmrl.config.schema),
2. ``config/methods.yaml`` (the catalogue of fine-tuning methods, each of a kind of wmrl.methods),
3. ``config/config.yaml`` (picks the experiment and the scale),
4. ``config/experiments/<experiment>.yaml`` (what is run: suite, tasks, split), after the
   experiment files it ``extends``,
5. ``config/scales/<scale>.yaml`` (how big: step counts, sizes; its ``icrl.<family>`` sizes apply
   only to an experiment that sets ``icrl``),
6. the user's ``--configfile`` / ``--config`` values (Snakemake's ``config`` dict).

Every layer is checked against the schema as it is merged, so an unknown key or a value of the
wrong type fails at once, naming the file it came from, the key path and what is allowed there.
A task may override any field of the top-level ``dataset`` section in ``tasks.<name>.dataset``;
the override is validated against the same schema. Each fine-tuning method
(``finetune.methods.<name>``) is checked against its kind's settings once every layer is in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from wmrl.config.checks import check
from wmrl.config.icrl import ICRL_FAMILIES
from wmrl.config.schema import Config, DatasetConfig
from wmrl.methods import method_settings
from wmrl.typed import ConfigError, merge, to_plain


def compose(overrides: dict[str, Any] | None = None, root: Path | str = ".") -> DictConfig:
    """Compose and validate the configuration; `overrides` is Snakemake's ``config`` dict. Layers,
    each over the last: the schema's defaults, config/config.yaml, the experiment (and those it
    extends), the scale, the experiment's own `scales.<scale>` section, the user's overrides. A scale
    file may name the experiment it runs unless the user names one (`paper`: jowa_atari)."""
    root = Path(root)
    overrides = dict(overrides or {})
    cfg = OmegaConf.structured(Config)
    chosen = _load_yaml(root / "config" / "config.yaml")
    cfg = merge(cfg, {"finetune": {"methods": _load_yaml(root / "config" / "methods.yaml")}}, "config/methods.yaml")
    cfg = merge(cfg, chosen, "config/config.yaml")
    # The user's choice of experiment and scale decides which overlay files are read.
    for key in ("experiment", "scale"):
        if key in overrides:
            cfg = merge(cfg, {key: overrides[key]}, "--config")
    scale = _load_yaml(_overlay(root, "scale", cfg.scale))
    default_experiment = scale.pop("experiment", None)
    if default_experiment is not None and "experiment" not in overrides:
        cfg = merge(cfg, {"experiment": default_experiment}, f"config/scales/{cfg.scale}.yaml")
    per_scale = []  # an experiment's own settings at some scales (`scales: {laptop: {...}}`), over the scale file
    for name, layer in _experiment_layers(root, cfg.experiment):
        per_scale.append((name, (layer.pop("scales", None) or {}).get(cfg.scale, {})))
        cfg = merge(cfg, layer, f"config/experiments/{name}.yaml")
    icrl_sizes = scale.pop("icrl", None) or {}  # {family: sizes}: only for an experiment that sets `icrl`
    cfg = merge(cfg, scale, f"config/scales/{cfg.scale}.yaml")
    for name, layer in per_scale:
        cfg = merge(cfg, layer, f"config/experiments/{name}.yaml (scales.{cfg.scale})")
    if cfg.icrl is not None:
        unknown = [family for family in icrl_sizes if family not in ICRL_FAMILIES]
        if unknown:
            raise ConfigError(f"config error in config/scales/{cfg.scale}.yaml: 'icrl' holds sizes per family "
                              f"({', '.join(ICRL_FAMILIES)}), got {unknown}")
        cfg = merge(cfg, {"icrl": icrl_sizes.get(cfg.icrl.family, {})}, f"config/scales/{cfg.scale}.yaml",
                     prefix="")
    cfg = merge(cfg, overrides, "--configfile/--config")
    for name, task in cfg.tasks.items():  # each task's dataset section, resolved once: DAG helpers read it often
        task.dataset = to_plain(merge(OmegaConf.merge(OmegaConf.structured(DatasetConfig), cfg.dataset),
                                       task.dataset, f"tasks.{name}.dataset", prefix=f"tasks.{name}.dataset"))
    for name, method in cfg.finetune.methods.items():  # each method as its kind's settings
        cfg.finetune.methods[name] = _method(name, to_plain(method))
    check(cfg)
    return cfg


def _experiment_layers(root: Path, name: str) -> list[tuple[str, dict[str, Any]]]:
    """An experiment file and the ones it `extends` (a key of its own: the experiment it builds on),
    the base first: a file restates only what differs from its base (lists replace, not append)."""
    layers: list[tuple[str, dict[str, Any]]] = []
    while name is not None:
        if name in [seen for seen, _ in layers]:
            raise ConfigError(f"config error: experiments extend each other in a cycle: "
                              f"{' -> '.join([seen for seen, _ in layers] + [name])}")
        layer = _load_yaml(_overlay(root, "experiment", name))
        layers.append((name, layer))
        name = layer.pop("extends", None)
    return layers[::-1]


def _overlay(root: Path, key: str, name: str) -> Path:
    """The overlay file of an experiment or a scale; an unknown name fails, listing the known ones."""
    path = root / "config" / {"experiment": "experiments", "scale": "scales"}[key] / f"{name}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ConfigError(f"config error: unknown {key} {name!r} (no {path}); known: {', '.join(known)}")
    return path


def _method(name: str, method: Any) -> DictConfig:
    """A method's config checked against its kind's settings (defaults filled in)."""
    where = f"finetune.methods.{name}"
    if not isinstance(method, dict):
        raise ConfigError(f"config error: '{where}' must be a mapping with a 'kind', got {method!r}")
    return merge(OmegaConf.structured(method_settings(name, method)), method, where, prefix=where)


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = OmegaConf.to_container(OmegaConf.load(path))
    except Exception as exc:  # yaml syntax errors come in several types
        raise ConfigError(f"{path}: cannot be read as YAML: {exc}") from exc
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
    return loaded
