"""Configurable: a class whose ``__init__`` arguments become a frozen, JSON-only config.

Modelled on diffusers' ``ConfigMixin``/``register_to_config``: the arguments a component was built
with are captured once, at construction, so that the exact object can be rebuilt with
``from_config`` from the ``config.json`` of an artifact. Nothing but JSON types is allowed, so a
config can never smuggle code or pickled objects.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeVar

T = TypeVar("T", bound="Configurable")

__all__ = ["Configurable", "to_json_value", "ConfigError"]


class ConfigError(ValueError):
    """A config value that is not JSON, or a config that does not fit a class."""


def to_json_value(value: Any, *, where: str = "value") -> Any:
    """Return ``value`` as plain JSON types (tuples become lists); raise ``ConfigError`` otherwise."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where} is {value}; configs hold finite numbers only.")
        return float(value)
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return to_json_value(value.item(), where=where)
    if isinstance(value, (list, tuple)):
        return [to_json_value(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where} has a non-string key {k!r}; JSON keys are strings.")
            out[k] = to_json_value(v, where=f"{where}[{k!r}]")
        return out
    raise ConfigError(
        f"{where} is a {type(value).__name__}, which is not JSON. Pass numbers, strings, booleans, "
        "lists or dicts to a component's __init__ (build tensors and modules inside it)."
    )


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _capture_init(init):
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        outermost = "_config" not in self.__dict__
        if outermost:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop(next(iter(signature.parameters)))  # self
            for name, param in signature.parameters.items():
                if param.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(arguments.pop(name, {}))
                elif param.kind is inspect.Parameter.VAR_POSITIONAL:
                    raise ConfigError(f"{type(self).__name__}.__init__ may not take *{name}.")
            config = to_json_value(arguments, where=f"{type(self).__name__} argument")
            # set before running __init__ so that nested super().__init__ calls do not re-capture
            object.__setattr__(self, "_config", _freeze(config))
        init(self, *args, **kwargs)

    wrapper.__virtualcell_captures__ = True
    return wrapper


class Configurable:
    """Mixin: ``__init__`` arguments are captured into ``self.config`` (read-only, JSON types).

    Subclasses write an ordinary ``__init__``; the capture happens automatically. Rebuild an equal
    object with ``cls.from_config(obj.config)``.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "__virtualcell_captures__", False):
            cls.__init__ = _capture_init(init)

    @property
    def config(self) -> Mapping[str, Any]:
        """The frozen init arguments (a read-only mapping of JSON values)."""
        try:
            return self.__dict__["_config"]
        except KeyError:
            return MappingProxyType({})

    def config_dict(self) -> dict[str, Any]:
        """A mutable, JSON-serialisable copy of ``config``."""
        return _thaw(self.config)

    @classmethod
    def from_config(cls: type[T], config: Mapping[str, Any], **overrides: Any) -> T:
        """Build an instance from a config (plus ``overrides``); unknown keys are an error.

        Keys a class lists in ``retired_args`` (arguments older versions took, kept in saved
        artifacts' configs) are dropped.
        """
        retired = getattr(cls, "retired_args", frozenset())
        arguments = {**{k: v for k, v in _thaw(config).items() if k not in retired}, **overrides}
        signature = inspect.signature(cls.__init__)
        accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values())
        unknown = sorted(set(arguments) - set(signature.parameters) - {"self"})
        if unknown and not accepts_any:
            raise ConfigError(
                f"{cls.__name__} does not take {unknown}; it takes "
                f"{[p for p in signature.parameters if p != 'self']}. Was the config written by "
                "another version of this component?"
            )
        return cls(**arguments)

    def config_json(self) -> str:
        return json.dumps(self.config_dict(), indent=2, sort_keys=True)
