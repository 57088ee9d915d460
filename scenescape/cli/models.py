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

import dataclasses
import sys
from typing import Any

import click

from scenescape.config import ConfigError, from_dict, load_config, to_dict

# Config section -> registry attribute in scenescape.backends.
_SECTIONS = {"depth": "DEPTH", "inpainter": "INPAINTERS", "text_to_image": "TEXT_TO_IMAGE", "guidance": "GUIDANCE"}
# Registered names known to load a model, for classes that do not say so with ``MODEL_KIND``.
_KNOWN_KINDS = {
    ("depth", "transformers"): "transformers",
    ("inpainter", "diffusers"): "diffusers",
    ("text_to_image", "diffusers"): "diffusers",
    ("guidance", "stable_diffusion"): "diffusers",
}
_MODEL_KEYS = ("model", "model_id", "pretrained_model_name_or_path")


@dataclasses.dataclass
class Requirement:
    """One model a config needs: where in the config, which backend, which id, which kind."""

    section: str
    backend: str
    model_id: str
    kind: str


def _sections(data: Any, path: str = "") -> list[tuple[str, str, dict]]:
    """Every ``{name, options, ...}`` mapping (a backend section) in a plain config dict: (dotted path, name, options)."""
    out: list[tuple[str, str, dict]] = []
    if isinstance(data, dict):
        if {"name", "options"} <= set(data) and isinstance(data.get("options"), dict):
            out.append((path, str(data["name"] or ""), data["options"]))
            return out
        for k, v in data.items():
            out.extend(_sections(v, f"{path}.{k}" if path else str(k)))
    return out


def required_models(cfg: Any) -> list[Requirement]:
    """The models a (scene or object) config needs, from its backend sections.

    A backend needs a model when its class has ``MODEL_KIND`` (``"diffusers"`` or
    ``"transformers"``) or is one of the built-in model backends; the id is the section's
    ``options.model`` or the class's default.
    """
    import scenescape.backends as backends

    reqs: list[Requirement] = []
    for path, name, options in _sections(to_dict(cfg)):
        if not name:
            continue
        leaf = path.rsplit(".", 1)[-1]
        reg_name = _SECTIONS.get(leaf)
        if reg_name is None:
            continue
        cls = getattr(backends, reg_name).get(name)
        kind = getattr(cls, "MODEL_KIND", None) or _KNOWN_KINDS.get((leaf, name))
        if kind is None:
            continue
        cfg_cls = getattr(cls, "Config", None)
        if cfg_cls is not None and dataclasses.is_dataclass(cfg_cls):
            from_dict(cfg_cls, options, where=f"{path}.options")  # unknown option keys are errors here too
        model_id = None
        for key in _MODEL_KEYS:
            if options.get(key):
                model_id = str(options[key])
                break
        if model_id is None:
            if cfg_cls is not None and dataclasses.is_dataclass(cfg_cls):
                defaults = cfg_cls()
                for key in _MODEL_KEYS:
                    if getattr(defaults, key, None):
                        model_id = str(getattr(defaults, key))
                        break
        if model_id:
            reqs.append(Requirement(path, name, model_id, kind))
    return reqs


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
