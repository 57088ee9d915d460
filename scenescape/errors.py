"""The one hierarchy of errors meant for the user (the CLI prints them as ``error: ...``, exit status 2).

Anything else that escapes is a bug and the CLI shows its traceback. ``InputError`` and ``ConfigError``
are also ``ValueError`` so callers of the Python API may catch either. Imports nothing (every layer may
raise these).
"""

from __future__ import annotations


class ScenescapeError(Exception):
    """Base of scenescape's user-facing errors."""


class InputError(ScenescapeError, ValueError):
    """Bad input the user can fix: an array of the wrong shape or range, a missing or malformed file."""


class ConfigError(ScenescapeError, ValueError):
    """A configuration problem the user can fix (unknown key, wrong type, bad value)."""


class ModelNotFoundError(ScenescapeError):
    """A configured model (hub id or folder) is not available; the message says how to get it."""


class RunError(ScenescapeError):
    """A run folder problem: exists without --resume/--overwrite, corrupt checkpoint, mismatched config."""


__all__ = ["ConfigError", "InputError", "ModelNotFoundError", "RunError", "ScenescapeError"]
