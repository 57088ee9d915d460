"""Components registered by name, and user classes named as ``module:Class``.

A registry maps a short name used in configs (``"opencv"``, ``"diffusers"``) to a class. A config
may also name ``"my_package.my_module:MyInpainter"``; that module is imported only then, because a
config asked for it (nothing is imported speculatively).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from scenescape.config import ConfigError
from scenescape.errors import InputError


class Registry:
    """Name -> class table for one kind of component (``"depth"``, ``"inpainter"`` ...)."""

    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, Any] = {}
        self._lazy: dict[str, str] = {}

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

    def get(self, name: str) -> Any:
        if name in self._items:
            return self._items[name]
        if name in self._lazy:
            cls = load_object(self._lazy[name])
            self._items[name] = cls
            return cls
        if ":" in name:
            return load_object(name)
        import difflib

        close = difflib.get_close_matches(name, self.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise ConfigError(
            f"unknown {self.kind} backend '{name}'.{hint} Available: {', '.join(self.names())}; "
            f"or name your own class as 'package.module:ClassName'."
        )


def load_object(target: str) -> Any:
    """Import ``"package.module:Attr"``; errors name the target."""
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
