"""Check a whole composed config before any data is loaded: keys, types and values, one clear error.

Every node with a ``_target_`` is checked against its constructor's signature: unknown keys (with a
"did you mean"), and values against the parameter annotations (``int``, ``float``, ``bool``, ``str``,
optionals and sequences of them). Top-level keys have their own types. The optimizer is built once on a
dummy parameter, so ``lr=-1`` fails now rather than after the data is loaded.
"""

from __future__ import annotations

import difflib
import inspect
import sys
import types
import typing
from collections.abc import Sequence
from typing import Any, Union

import torch
from hydra.utils import get_object
from omegaconf import DictConfig, ListConfig, OmegaConf

from recsys.errors import ConfigError

__all__ = ["check_keys", "validate_config"]

#: Top-level keys of conf/train.yaml and their types.
TOP_LEVEL: dict[str, tuple[type, ...]] = {
    "seed": (int,), "resume_from": (str, type(None)), "compare_to_popularity": (bool,),
    "item_text_init": (str, type(None)), "fit_on": (str,),
}
GROUPS = ("dataset", "split", "model", "trainer", "eval", "features", "experiment")


def _signature(target: str) -> tuple[Any, dict[str, inspect.Parameter]] | None:
    try:
        obj = get_object(target)
        return obj, dict(inspect.signature(obj).parameters)
    except Exception:  # noqa: BLE001 - not importable or no signature: instantiate will say so
        return None


def _hint(obj: Any, name: str) -> Any:
    """The evaluated annotation of parameter ``name`` (None when it cannot be resolved)."""
    func = obj.__init__ if isinstance(obj, type) else obj
    annotation = inspect.signature(obj).parameters[name].annotation
    if isinstance(annotation, str):
        module = sys.modules.get(getattr(func, "__module__", ""), None)
        try:
            annotation = eval(annotation, {**vars(typing), **(vars(module) if module else {})})  # noqa: S307 - annotations of our own code
        except Exception:  # noqa: BLE001 - names imported only for type checking
            return None
    return None if annotation is inspect.Parameter.empty else annotation


def _accepts(annotation: Any, value: Any) -> bool | None:
    """Whether ``value`` fits ``annotation`` (None: the annotation is not one this check understands)."""
    if annotation is Any or annotation is None:
        return None
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        verdicts = [_accepts(arg, value) for arg in typing.get_args(annotation)]
        return True if any(v is True for v in verdicts) else (None if any(v is None for v in verdicts) else False)
    if annotation is type(None):
        return value is None
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        if not isinstance(value, (list, tuple, ListConfig)):
            return False
        args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
        if len(args) == 1:
            verdicts = [_accepts(args[0], item) for item in value]
            return False if any(v is False for v in verdicts) else (True if verdicts else None)
        return True
    return None


def _article(name: str) -> str:
    return f"an {name}" if name[:1] in "aeiou" else f"a {name}"


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def check_keys(node: DictConfig, where: str) -> None:
    """Every key of ``node`` is an argument of its ``_target_`` and fits the argument's annotation."""
    target = node.get("_target_")
    found = _signature(target) if isinstance(target, str) else None
    if found is None:
        return
    obj, params = found
    names = [p for p in params if p != "self"]
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    for key in node.keys():
        key = str(key)
        if key.startswith("_"):
            continue
        if key not in params:
            if open_ended:
                continue
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"did you mean {where}.{close[0]}? " if close else ""
            raise ConfigError(f"unknown key {where}.{key} for {target}", where=where, fix=f"{hint}valid keys: {', '.join(names)}")
        if OmegaConf.is_missing(node, key) or OmegaConf.is_interpolation(node, key) and _unresolved(node, key):
            continue
        value = node[key]
        if isinstance(value, DictConfig):
            continue  # a nested object: checked on its own
        annotation = _hint(obj, key)
        plain = OmegaConf.to_container(value, resolve=True) if isinstance(value, ListConfig) else value
        if annotation is not None and _accepts(annotation, plain) is False:
            raise ConfigError(f"{where}.{key}={plain!r} is not a valid {_type_name(annotation)}", where=f"{where}.{key}",
                              fix=f"set {where}.{key} to {_article(_type_name(annotation))} (see {target})")


def _unresolved(node: DictConfig, key: str) -> bool:
    try:
        node[key]
    except Exception:  # noqa: BLE001 - an interpolation into something missing
        return True
    return False


def _walk(node: Any, where: str) -> None:
    if isinstance(node, DictConfig):
        if "_target_" in node:
            check_keys(node, where)
        for key in node.keys():
            if not OmegaConf.is_missing(node, key) and not _unresolved(node, key):
                _walk(node[key], f"{where}.{key}")
    elif isinstance(node, ListConfig):
        for i, item in enumerate(node):
            _walk(item, f"{where}[{i}]")


def validate_config(cfg: DictConfig, optimizer: Any = None) -> None:
    """Raise one :class:`ConfigError` for the first mistake in ``cfg``; ``optimizer`` is the built factory, if any."""
    for key in cfg.keys():
        key = str(key)
        if key in GROUPS or key == "hydra":
            continue
        if key not in TOP_LEVEL:
            close = difflib.get_close_matches(key, [*TOP_LEVEL, *GROUPS], n=1)
            raise ConfigError(f"unknown top-level key {key!r}", where=key,
                              fix=(f"did you mean {close[0]}? " if close else "") + f"valid keys: {', '.join([*TOP_LEVEL, *GROUPS])}")
        value = cfg[key]
        if not isinstance(value, TOP_LEVEL[key]) or isinstance(value, bool) and bool not in TOP_LEVEL[key]:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in TOP_LEVEL[key])
            raise ConfigError(f"{key}={value!r} is not a valid {names}", where=key, fix=f"set {key} to {_article(names)}")
    for group in GROUPS:
        if cfg.get(group) is not None:
            _walk(cfg[group], group)
    if optimizer is not None:  # lr=-1, betas out of range, ...: torch checks them when the optimizer is built
        try:
            optimizer([torch.nn.Parameter(torch.zeros(1))])
        except (ValueError, TypeError) as error:
            raise ConfigError(f"invalid optimizer settings: {error}", where="model.optimizer",
                              fix="check model.optimizer (e.g. lr > 0)") from None
