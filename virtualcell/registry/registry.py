"""The component registry over the entry-point group ``virtualcell.components``.

Built-ins are declared in our own ``pyproject.toml`` exactly as a plugin declares its components,
so there is one path for both. Look-ups are lazy (a plugin's module is imported the first time
one of its names is asked for), lenient (``Latent_Arithmetic`` finds ``latent-arithmetic``) and
isolated (a plugin that fails to import is a warning until its name is asked for, then an error).
Modelled on xarray's ``backends/plugins.py`` and PyG's ``resolver.py``.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import artifact

#: a component class or instance; the registry never imports ``virtualcell.component`` (it sits below it)
AnyComponent = Any

__all__ = ["GROUP", "Registry", "registry", "get", "create", "names", "register", "normalize_name",
           "UnknownComponentError", "PluginImportError", "save_component", "load_component"]

GROUP = "virtualcell.components"
BUILTIN_DISTRIBUTION = "virtualcell"


class UnknownComponentError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message; show it plainly
        return str(self.args[0])


class PluginImportError(ImportError):
    pass


def normalize_name(name: str) -> str:
    """Kebab-case key: ``'LatentArithmetic'`` / ``'latent_arithmetic'`` -> ``'latent-arithmetic'``."""
    name = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", name.strip())
    return re.sub(r"[\s_\-\.]+", "-", name).lower().strip("-")


@dataclasses.dataclass
class _Entry:
    name: str
    value: str  # "module:Class"
    distribution: str
    entry_point: importlib.metadata.EntryPoint | None = None
    loaded: Any = None
    error: BaseException | None = None


class Registry:
    """Name -> component class, discovered from installed entry points (and ``register`` calls)."""

    def __init__(self, group: str = GROUP) -> None:
        self.group = group
        self._entries: dict[str, _Entry] | None = None

    # -- discovery -------------------------------------------------------------------------------
    def _discover(self) -> dict[str, _Entry]:
        if self._entries is not None:
            return self._entries
        entries: dict[str, _Entry] = {}
        found = []
        for ep in importlib.metadata.entry_points(group=self.group):
            dist = ep.dist.name if getattr(ep, "dist", None) is not None else "unknown"
            found.append(_Entry(normalize_name(ep.name), ep.value, dist, ep))
        # built-ins first, then plugins alphabetically, so the winner of a clash is predictable
        found.sort(key=lambda e: (e.distribution != BUILTIN_DISTRIBUTION, e.distribution, e.name))
        for entry in found:
            if entry.name in entries:
                winner = entries[entry.name]
                if winner.value != entry.value:
                    warnings.warn(
                        f"Component name {entry.name!r} is claimed by both {winner.distribution!r} "
                        f"({winner.value}) and {entry.distribution!r} ({entry.value}); using "
                        f"{winner.distribution!r}'s. Uninstall one or rename its entry point.",
                        stacklevel=3,
                    )
                continue
            entries[entry.name] = entry
        self._entries = entries
        return entries

    def refresh(self) -> None:
        """Forget what was discovered (after installing a plugin in a running process)."""
        runtime = {k: e for k, e in (self._entries or {}).items() if e.entry_point is None}
        self._entries = None
        self._discover().update(runtime)

    def names(self, kind: str | None = None) -> list[str]:
        """Registered names, optionally only those of one kind (imports the plugins to know kinds)."""
        entries = self._discover()
        if kind is None:
            return sorted(entries)
        out = []
        for name in sorted(entries):
            try:
                if self.get(name).kind == kind:
                    out.append(name)
            except PluginImportError as error:
                warnings.warn(str(error), stacklevel=2)
        return out

    def describe(self) -> list[dict[str, str]]:
        """One row per name: name, kind, class path, distribution, status (loads nothing that failed)."""
        rows = []
        for name, entry in sorted(self._discover().items()):
            try:
                kind, status = self.get(name).kind, "ok"
            except PluginImportError as error:
                kind, status = "?", f"broken ({type(error.__cause__).__name__})"
            rows.append({"name": name, "kind": kind, "class": entry.value,
                         "distribution": entry.distribution, "status": status})
        return rows

    # -- look-up ---------------------------------------------------------------------------------
    def get(self, name: str) -> type:
        """The class registered as ``name`` (lenient spelling); unknown names list the known ones."""
        entries = self._discover()
        key = normalize_name(name)
        entry = entries.get(key)
        if entry is None:
            import difflib

            close = difflib.get_close_matches(key, entries, n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise UnknownComponentError(
                f"No component named {name!r} is registered.{hint} Known components: {sorted(entries)}. "
                f"Components come from installed packages' '{self.group}' entry points: install the "
                "plugin that provides it, or check the spelling."
            )
        if entry.loaded is None:
            if entry.error is not None:
                raise PluginImportError(self._broken_message(entry)) from entry.error
            try:
                entry.loaded = entry.entry_point.load()
            except Exception as error:  # isolate the failure to this name
                entry.error = error
                raise PluginImportError(self._broken_message(entry)) from error
        return entry.loaded

    @staticmethod
    def _broken_message(entry: _Entry) -> str:
        return (f"Component {entry.name!r} from package {entry.distribution!r} ({entry.value}) failed to "
                f"import: {entry.error!r}. Reinstall or fix that package.")

    def name_of(self, cls: type) -> str:
        """The registered name of ``cls`` (found by its import path; imports nothing)."""
        path = f"{cls.__module__}:{cls.__qualname__}"
        for name, entry in self._discover().items():
            if entry.loaded is cls or entry.value.replace(" ", "") == path:
                return name
        raise UnknownComponentError(
            f"{cls.__name__} ({path}) is not registered, so a saved artifact could never be loaded. "
            f"Declare it in your package's pyproject.toml under [project.entry-points.\"{self.group}\"] "
            "(then reinstall), or call virtualcell.registry.register('my-name', MyClass) in this process."
        )

    def register(self, name: str, cls: type, *, overwrite: bool = False) -> None:
        """Register ``cls`` under ``name`` in this process only (notebooks, tests)."""
        key = normalize_name(name)
        entries = self._discover()
        if key in entries and not overwrite and entries[key].loaded is not cls:
            raise ValueError(f"{key!r} is already registered ({entries[key].value}); pass overwrite=True.")
        entries[key] = _Entry(key, f"{cls.__module__}:{cls.__qualname__}", "<runtime>", None, cls)

    def distribution_of(self, name: str) -> str:
        return self._discover()[normalize_name(name)].distribution

    def create(self, name: str, **kwargs: Any) -> AnyComponent:
        """Instantiate the component registered as ``name`` with ``kwargs``."""
        return self.get(name)(**kwargs)

    # -- artifacts: the registry hands the format code the names and classes it needs --------------
    def save_component(self, component: AnyComponent, path: str | Path, *, card: Mapping[str, Any] | None = None,
                       overwrite: bool = False) -> Path:
        """Save ``component`` as an artifact folder at ``path`` (crash-safe); returns the path."""
        name = self.name_of(type(component))
        return artifact.write_component(component, path, name=name, distribution=self.distribution_of(name),
                                        card=card, overwrite=overwrite)

    def _class_of_saved(self, config: Mapping[str, Any], path: Path) -> type:
        try:
            return self.get(config["component"])
        except UnknownComponentError as error:
            raise UnknownComponentError(
                f"{path} was saved from component {config['component']!r} of package "
                f"{config.get('package')!r} {config.get('package_version')!r}, which is not installed here. "
                f"Install that package. ({error})"
            ) from None

    def load_component(self, path: str | Path, *, device: Any = "cpu") -> AnyComponent:
        """Load the component saved at ``path`` (class resolved through this registry) onto ``device``."""
        return artifact.read_component(path, self._class_of_saved, device=device)


registry = Registry()
get = registry.get
create = registry.create
names = registry.names
register = registry.register
save_component = registry.save_component
load_component = registry.load_component
