"""``scenescape models``: which models a config needs and whether each is available offline.

::

    scenescape models                                   # the default scene config
    scenescape models --config configs/gpu-quality.yaml
    scenescape models --config configs/gpu-quality.yaml depth.options.model=Intel/dpt-large
    scenescape models --config configs/gpu-quality.yaml --download   # fetch what is missing
    scenescape models --object --config configs/object/sd.yaml

Exit status 0 when every model is present (a local folder, or the Hugging Face cache), 1 when one
is missing (the command that fetches it is printed), 2 on a bad config.
"""

from __future__ import annotations

import sys
from typing import Any

import click

from scenescape.backends.models import Requirement, required_models
from scenescape.config import ConfigError, load_config


def _load(config_path: str | None, overrides: tuple[str, ...], object_mode: bool) -> Any:
    if object_mode:
        from scenescape.pipelines.object import ObjectConfig as cls
    else:
        from scenescape.pipelines.scene import SceneConfig as cls
    return load_config(cls, config_path, list(overrides))


@click.command("models")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML preset (default: the built-in defaults).")
@click.option("--object", "object_mode", is_flag=True, help="Check an object-mode config instead of a scene config.")
@click.option("--download", is_flag=True, help="Download the missing models into the Hugging Face cache.")
@click.argument("overrides", nargs=-1)
def models(config_path: str | None, object_mode: bool, download: bool, overrides: tuple[str, ...]) -> None:
    """List the models a config needs and whether each is available locally.

    OVERRIDES are key=value settings, e.g. depth.options.model=Intel/dpt-large.
    Exits 1 if a model is missing (and prints how to fetch it).
    """
    from scenescape.backends.models import download_model, fetch_command, hub_offline, model_status
    from scenescape.errors import ModelNotFoundError

    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"'{item}' is not a key=value override (for example depth.options.model=Intel/dpt-large)")
    cfg = _load(config_path, overrides, object_mode)
    reqs = required_models(cfg)
    if not reqs:
        click.echo("This config needs no downloaded models (classical backends only).")
        return
    missing: list[Requirement] = []
    for r in reqs:
        st = model_status(r.model_id, r.kind)
        if not st.present and download:
            try:
                download_model(r.model_id, r.kind)
            except ModelNotFoundError as e:
                click.echo(f"error: {e}", err=True)
            st = model_status(r.model_id, r.kind)
        state = f"present ({st.source}: {st.location})" if st.present else f"MISSING ({st.location})"
        click.echo(f"{r.section:<14} {r.backend:<14} {r.model_id}  {state}")
        if not st.present:
            missing.append(r)
    if missing:
        click.echo("", err=True)
        click.echo(f"{len(missing)} model(s) missing{' (HF_HUB_OFFLINE is set)' if hub_offline() else ''}. "
                   "Fetch on a machine with network access:", err=True)
        for r in missing:
            if r.model_id.startswith(("/", ".", "~")):
                click.echo(f"  {r.model_id}: the folder is missing; pass an existing model folder", err=True)
            else:
                click.echo(f"  {fetch_command(r.model_id, r.kind)}", err=True)
        click.echo("or run `scenescape models --download` with the same arguments.", err=True)
        sys.exit(1)


COMMANDS = [models]
__all__ = ["COMMANDS", "Requirement", "required_models"]
