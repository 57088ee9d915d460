"""Command line: ``scenescape generate | demo | render | export | models | object | view``.

User errors (:class:`~scenescape.errors.ScenescapeError`: bad input, bad config, a missing model, a
run-folder conflict) are printed as one ``error: ...`` line and exit with status 2; set
``SCENESCAPE_DEBUG=1`` for the traceback. Any other exception is a bug and shows its traceback. Ctrl-C
stops a run with status 130 (what it finished is on disk: ``--resume RUN`` continues it).
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from scenescape.errors import ScenescapeError

_invocation: list[str] | None = None


def invocation() -> list[str] | None:
    """The command line of this invocation (``["scenescape", "generate", ...]``), recorded in run markers
    so an interrupted creation can say exactly which command starts it again."""
    return list(_invocation) if _invocation is not None else None


def plugin_option(fn: Any) -> Any:
    """``--allow-plugins``: consent, for this invocation only, to import ``module:Class`` backends named by
    the config or run folder (see :mod:`scenescape.registry`)."""

    def allow(ctx: click.Context, param: Any, value: bool) -> bool:
        if value:
            from scenescape.registry import allow_plugins

            allow_plugins()
        return value

    return click.option("--allow-plugins", is_flag=True, expose_value=False, callback=allow, is_eager=True,
                        help="Allow 'package.module:Class' backends named by the config or run folder (this "
                             "imports and runs that module). Or list trusted modules in SCENESCAPE_ALLOW_PLUGINS.")(fn)


class _Group(click.Group):
    def make_context(self, info_name: Any, args: list[str], parent: Any = None, **extra: Any) -> click.Context:
        global _invocation
        _invocation = ["scenescape", *[str(a) for a in args]]
        return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        from scenescape.registry import disallow_plugins

        try:
            return super().invoke(ctx)
        except ScenescapeError as e:
            if os.environ.get("SCENESCAPE_DEBUG"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        except KeyboardInterrupt:
            click.echo("interrupted: what was finished is on disk; continue with --resume RUN_FOLDER", err=True)
            sys.exit(130)
        finally:
            disallow_plugins()  # consent lasts one invocation (also for in-process callers)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="scenescape")
def cli() -> None:
    """Text or photo to an explorable 3D scene and walkthrough video; text to a 3D asset."""


def _register_commands() -> None:
    import importlib

    for mod in ("scenescape.cli.scene", "scenescape.cli.models", "scenescape.cli.object", "scenescape.cli.batch",
                "scenescape.cli.evaluate", "scenescape.cli.view"):
        try:
            m = importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name == mod:  # that command group is not built yet
                continue
            raise
        for command in getattr(m, "COMMANDS", []):
            cli.add_command(command)


_register_commands()


def main() -> None:
    cli(prog_name="scenescape")


if __name__ == "__main__":
    main()
