"""Command line: ``scenescape generate | demo | render | export | models | object | view``.

User errors (:class:`~scenescape.errors.ScenescapeError`: bad input, bad config, a missing model, a
run-folder conflict) are printed as one ``error: ...`` line and exit with status 2; set
``SCENESCAPE_DEBUG=1`` for the traceback. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import os
import sys

import click

from scenescape.errors import ScenescapeError


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except ScenescapeError as e:
            if os.environ.get("SCENESCAPE_DEBUG"):
                raise
            click.echo(f"error: {e}", err=True)
            sys.exit(2)


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
