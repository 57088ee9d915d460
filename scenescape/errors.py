"""Exceptions that carry a message meant for the user (the CLI prints them without a traceback)."""

from __future__ import annotations


class ScenescapeError(Exception):
    """Base of scenescape's user-facing errors."""


class ModelNotFoundError(ScenescapeError):
    """A configured model (hub id or folder) is not available; the message says how to get it."""


class RunError(ScenescapeError):
    """A run folder problem: exists without --resume/--overwrite, corrupt checkpoint, mismatched config."""
