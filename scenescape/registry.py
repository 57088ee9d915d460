"""Components registered by name, and user plugins named as ``module:Class`` (only by consent).

A registry maps a short name used in configs (``"opencv"``, ``"diffusers"``) to a class. Three kinds
of names work:

* built-in names (registered here or lazily by :mod:`scenescape.backends`);
* names of installed entry points in the group ``scenescape.<kind>`` (``scenescape.depth``,
  ``scenescape.inpainter``, ``scenescape.text_to_image``, ``scenescape.guidance``): installing a
  package is the user's consent to run it;
* ``"package.module:Class"`` -- a *plugin*. Importing a module runs its code, and configs and run
  folders are files people share, so a plugin is imported only when the user allows it for this
  process: ``--allow-plugins`` on the command line, :func:`allow_plugins` in Python, or the module
  named in the environment variable ``SCENESCAPE_ALLOW_PLUGINS`` (comma-separated module names or
  prefixes, e.g. ``my_pkg,other.mod``; ``*`` allows every module). A file can never grant it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import os
from collections.abc import Callable, Iterator
from typing import Any

from scenescape.errors import ConfigError, InputError

PLUGIN_ENV = "SCENESCAPE_ALLOW_PLUGINS"
_allowed: set[str] = set()  # modules (or prefixes) allowed in this process; "*" = all


def allow_plugins(modules: str | list[str] | tuple[str, ...] | None = None) -> None:
    """Allow ``module:Class`` plugins in this process: every module (``None``) or the named modules
    (a module allows its submodules too). The CLI calls this for ``--allow-plugins``."""
    if modules is None:
        _allowed.add("*")
    else:
        for m in [modules] if isinstance(modules, str) else modules:
            if m.strip():
                _allowed.add(m.strip())


def disallow_plugins() -> None:
    """Withdraw every :func:`allow_plugins` consent (the environment variable still counts)."""
    _allowed.clear()


@contextlib.contextmanager
def plugins_allowed(modules: str | list[str] | None = None) -> Iterator[None]:
    """``with plugins_allowed(): ...`` -- consent for the duration of the block only."""
    saved = set(_allowed)
    allow_plugins(modules)
    try:
        yield
    finally:
        _allowed.clear()
        _allowed.update(saved)


def _env_allowed() -> set[str]:
    return {m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(",") if m.strip()}


def plugin_consent() -> list[str]:
    """The consent in force in this process (``--allow-plugins``, :func:`allow_plugins` and
    :data:`PLUGIN_ENV`), to hand to worker processes (``scenescape batch`` passes it to its Ray tasks)."""
    return sorted(_allowed | _env_allowed())


def plugin_allowed(module: str) -> bool:
    """Whether importing the plugin module ``module`` has the user's consent."""
    allowed = _allowed | _env_allowed()
    if "*" in allowed:
        return True
    return any(module == a or module.startswith(a + ".") for a in allowed)


def refuse_plugin_message(target: str, key: str) -> str:
    mod = target.split(":", 1)[0]
    return (f"{key}: '{target}' is a plugin (it would import and run module '{mod}'), and plugins are not "
            f"allowed: scenescape runs code named by a config or run folder only with your consent. If you "
            f"trust it, pass --allow-plugins, or set {PLUGIN_ENV}={mod.split('.')[0]}")


def check_plugins(cfg: Any, where: str = "") -> None:
    """Raise :class:`ConfigError` for any ``module:Class`` backend name in config ``cfg`` (a dataclass,
    searched recursively for ``{name, options}`` sections) that is not allowed -- call before anything
    is written, so the message names the config key."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        names = {f.name for f in dataclasses.fields(cfg)}
        if {"name", "options"} <= names and isinstance(cfg.name, str):
            name = cfg.name
            if ":" in name and not plugin_allowed(name.split(":", 1)[0]):
                raise ConfigError(refuse_plugin_message(name, f"{where}.name" if where else "name"))
        for f in dataclasses.fields(cfg):
            check_plugins(getattr(cfg, f.name), f"{where}.{f.name}" if where else f.name)


def _entry_point(group: str, name: str) -> Any | None:
    from importlib.metadata import entry_points

    try:
        eps = entry_points(group=group)
    except Exception:  # pragma: no cover - broken metadata of an unrelated package
        return None
    for ep in eps:
        if ep.name == name:
            return ep
    return None


class Registry:
    """Name -> class table for one kind of component (``"depth"``, ``"inpainter"`` ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._lazy: dict[str, str] = {}

    @property
    def entry_point_group(self) -> str:
        return f"scenescape.{self.kind}"

    def register(self, name: str) -> Callable[[Any], Any]:
        def deco(cls: Any) -> Any:
            if name in self._items and self._items[name] is not cls:
                raise InputError(f"{self.kind} '{name}' is registered twice")
            self._items[name] = cls
            return cls

        return deco

    def register_lazy(self, name: str, target: str) -> None:
        """Register ``name`` -> ``"module:Class"`` imported on first use (keeps imports light)."""
        self._lazy[name] = target

    def names(self) -> list[str]:
        return sorted(set(self._items) | set(self._lazy))

    def get(self, name: str, key: str | None = None) -> Any:
        """The class for ``name``; ``key`` (e.g. ``"depth.name"``) is the config key named in errors."""
        key = key or f"{self.kind}.name"
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            cls = load_object(self._lazy[name])
            self._items[name] = cls
            return cls
        if ":" in name:
            if not plugin_allowed(name.split(":", 1)[0]):
                raise ConfigError(refuse_plugin_message(name, key))
            return load_object(name)
        ep = _entry_point(self.entry_point_group, name)
        if ep is not None:
            try:
                cls = ep.load()
            except Exception as e:
                raise ConfigError(f"{key}: the installed plugin '{name}' (entry point {ep.value} in group "
                                  f"{self.entry_point_group}) cannot be loaded ({type(e).__name__}: {e})") from e
            self._items[name] = cls
            return cls
        import difflib

        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"{key}: unknown {self.kind} backend '{name}'.{hint} Available: {', '.join(self.names())}; "
            f"or install a package with a '{self.entry_point_group}' entry point, or name your own class as "
            f"'package.module:ClassName' (with --allow-plugins)."
        )


def load_object(target: str) -> Any:
    """Import ``"package.module:Attr"``; errors name the target. (No consent check: callers decide.)"""
    if ":" not in target:
        raise ConfigError(f"'{target}' is not of the form 'package.module:ClassName'")
    mod_name, attr = target.split(":", 1)
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise ConfigError(f"cannot import module '{mod_name}' named by '{target}': {e}") from e
    try:
        obj = mod
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError as e:
        raise ConfigError(f"module '{mod_name}' has no attribute '{attr}' (named by '{target}')") from e
    return obj


__all__ = ["PLUGIN_ENV", "Registry", "allow_plugins", "check_plugins", "disallow_plugins", "load_object",
           "plugin_allowed", "plugin_consent", "plugins_allowed"]
