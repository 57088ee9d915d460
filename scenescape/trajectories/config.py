"""The typed config of a trajectory (a preset with params, or a file)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from scenescape.errors import ConfigError


@dataclasses.dataclass
class TrajectoryConfig:
    """A trajectory: a preset ``name`` with its ``params``, or a trajectory ``file``; and optionally its own
    number of ``frames`` (inside segment lists; otherwise the caller's count is used).

    ``name`` is always a preset and ``file`` always a path (never guessed from what is in the working
    directory). For configs written before ``file`` existed, a ``name`` that is syntactically a path (a
    ``.json``/``.yaml``/``.yml`` suffix or a ``/``) is moved to ``file``.
    """

    name: str = "scenescape"
    params: dict = dataclasses.field(default_factory=dict)
    frames: int | None = None
    file: str = ""
    """A trajectory file (segments, explicit cameras, a nerfstudio camera path); when set, ``name`` is not used."""

    def __post_init__(self) -> None:
        if not self.file and looks_like_path(self.name):
            self.file, self.name = str(self.name), "scenescape"
        if self.file and self.params:
            raise ConfigError(f"trajectory.file '{self.file}' takes no params (got {sorted(self.params)}); "
                              "params belong to a preset (trajectory.name)")

    @classmethod
    def parse(cls, value: str | Path) -> TrajectoryConfig:
        """A preset name or a file path given as one string (``--trajectory``): a path has a ``.json``,
        ``.yaml`` or ``.yml`` suffix or a ``/``; anything else is a preset name."""
        return cls(file=str(value)) if looks_like_path(value) else cls(name=str(value))


def looks_like_path(s: Any) -> bool:
    """Whether a trajectory string is written as a file path (``.json``/``.yaml``/``.yml`` suffix or a ``/``).
    Purely syntactic: a file in the working directory never turns a preset name into a path."""
    s = str(s)
    return s.lower().endswith((".json", ".yaml", ".yml")) or "/" in s or "\\" in s


__all__ = ["TrajectoryConfig", "looks_like_path"]
