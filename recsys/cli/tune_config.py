"""The configs of a search: composed as ``recsys-train`` composes them, split into what a run learns from and where
it runs, checked against a search space, and written back as an experiment overlay."""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import yaml
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf

from recsys.benchmarks.tuning import SearchSpace
from recsys.cli.config_dir import config_dir
from recsys.errors import ConfigError, RecsysError

__all__ = ["MACHINE_KEYS", "check_params", "compose_config", "overlay_text", "split_machine"]

#: where a run happens, not what it learns: kept out of the overlay, passed on the command line instead
MACHINE_KEYS = ("dataset.root", "dataset.cache_dir", "trainer.device", "trainer.threads", "trainer.progress",
                "trainer.tensorboard", "hydra")


def compose_config(overrides: Sequence[str]) -> DictConfig:
    """``conf/train.yaml`` composed with ``overrides``, as ``recsys-train`` composes it; errors as :class:`ConfigError`."""
    try:
        with initialize_config_dir(version_base="1.3", config_dir=str(config_dir())):
            return compose(config_name="train", overrides=list(overrides))
    except RecsysError:
        raise
    except Exception as error:  # hydra: unknown group, option or key; unparsable override
        reason = " ".join(line.strip() for line in str(error).splitlines()[:2])
        raise ConfigError(f"cannot compose the config: {reason}", where=" ".join(overrides),
                          fix="check the overrides against `recsys-train --cfg job`") from None


def _is_machine(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in MACHINE_KEYS)


def split_machine(overrides: Sequence[str]) -> tuple[list[str], list[str]]:
    """``overrides`` as (what the run learns from, where it runs: :data:`MACHINE_KEYS`).

    >>> split_machine(["dataset=ml-100k", "dataset.root=/data/ml-100k", "trainer.threads=2"])
    (['dataset=ml-100k'], ['dataset.root=/data/ml-100k', 'trainer.threads=2'])
    """
    learn, machine = [], []
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        (machine if _is_machine(key) else learn).append(override)
    return learn, machine


def overlay_text(overrides: Sequence[str], params: dict[str, Any], header: Sequence[str] = ()) -> str:
    """A ``# @package _global_`` experiment overlay equal to ``overrides`` followed by ``params``: config-group
    choices become ``override /group: option`` defaults, ``experiment=X`` an included ``/experiment/X``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    groups = {p.name for p in config_dir().iterdir() if p.is_dir()}
    includes: list[Any] = []
    defaults: list[Any] = []
    values: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(overrides=list(overrides)):
        key = override.key_or_group
        if override.is_delete() or override.is_sweep_override() or override.package:
            raise ConfigError(f"override {override.input_line!r} cannot go into an experiment overlay",
                              where="recsys tune overrides", fix="use key=value and group=option overrides")
        if key == "experiment":
            includes.append(f"/experiment/{override.value()}")
        elif key in groups:
            defaults.append({f"override /{key}": override.value()})
        else:
            _set(values, key, override.value())
    for path, value in params.items():
        _set(values, path, value)
    body = yaml.safe_dump({"defaults": [*includes, *defaults, "_self_"], **values}, sort_keys=False, width=120)
    return "\n".join(["# @package _global_", *(f"# {line}" for line in header), body])


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    """``tree[a][b][c] = value`` for ``path`` ``a.b.c``, making the mappings on the way (a later value wins)."""
    *parents, leaf = path.split(".")
    for part in parents:
        if not isinstance(tree.get(part), dict):
            tree[part] = {}
        tree = tree[part]
    tree[leaf] = value


def check_params(cfg: DictConfig, space: SearchSpace, user: Sequence[str]) -> dict[str, Any]:
    """Every searched path exists in ``cfg`` and no user override fixes one; returns the composed (default) values."""
    leaves = _leaf_paths(OmegaConf.to_container(cfg, resolve=False))
    defaults: dict[str, Any] = {}
    for path in space.params:
        if path not in leaves and not any(leaf.startswith(path + ".") for leaf in leaves):
            close = difflib.get_close_matches(path, leaves, n=3)
            raise ConfigError(f"search parameter {path!r} is not a key of the composed config", where=space.source,
                              fix=f"did you mean {', '.join(close)}?" if close else "see `recsys-train --cfg job`")
        value = OmegaConf.select(cfg, path)
        defaults[path] = OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value
    fixed = sorted({o.split("=", 1)[0].lstrip("+") for o in user} & set(space.params))
    if fixed:
        raise ConfigError(f"the overrides fix {fixed}, which the space searches", where="recsys tune overrides",
                          fix="drop them from the command line, or from the space's params")
    return defaults


def _leaf_paths(tree: Any, prefix: str = "") -> list[str]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _leaf_paths(v, f"{prefix}{k}.")]
    return [prefix.rstrip(".")]
