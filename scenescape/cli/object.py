"""``scenescape object``: text to a 3D asset by score distillation (SDS/SJC) on a NeRF.

Examples::

    scenescape object "a ceramic mug" --config configs/object/sds-gpu.yaml --out runs/mug
    scenescape object "a ceramic mug" --steps 200 guidance.options.mode=sjc seed=3
    scenescape object "a ceramic mug" --out runs/mug --resume      # continue an interrupted run
    scenescape object --export runs/mug output.mesh_threshold=20   # re-export mesh and video
"""

from __future__ import annotations

import click

from scenescape.errors import InputError


@click.command("object", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("prompt", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML preset (e.g. configs/object/sds-gpu.yaml); key=value arguments override it.")
@click.option("--steps", type=int, default=None, help="Number of optimisation steps (overrides the config).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default runs/object-<prompt>).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its checkpoint.pt.")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Re-export mesh and video of an existing run folder from its checkpoint, then exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def object_cmd(prompt: str | None, overrides: tuple[str, ...], config_path: str | None, steps: int | None,
               out_dir: str | None, resume: bool, export_dir: str | None, quiet: bool) -> None:
    """Optimise a NeRF for PROMPT by score distillation; write mesh (GLB/OBJ/PLY), orbit video, checkpoint.

    Extra KEY=VALUE arguments override config keys (e.g. seed=3 resolution=64 guidance.options.mode=sjc).
    """
    from scenescape.pipelines.object.pipeline import ObjectConfig, ObjectPipeline, export_run

    if export_dir is not None:
        items = list(overrides)
        if prompt is not None:  # with --export every positional argument is an override
            items = [prompt, *items]
        not_written: dict[str, str] = {}
        files = export_run(export_dir, items, not_written)
        for name, path in files.items():
            click.echo(f"{name}: {path}")
        _warn_not_written(not_written)
        return
    if prompt is None:
        raise click.UsageError('a PROMPT is required, e.g. scenescape object "a ceramic mug"')
    if not prompt.strip():
        raise InputError('prompt must be a non-empty text, e.g. scenescape object "a ceramic mug"')
    if "=" in prompt and " " not in prompt.strip():
        raise click.UsageError(f"the first argument must be the prompt, got the override {prompt!r}")
    items = list(overrides)
    bad = [o for o in items if "=" not in o]
    if bad:
        raise click.UsageError(f"extra arguments must be key=value overrides, got {bad}")
    if steps is not None:
        items.append(f"steps={steps}")
    if quiet:
        items.append("progress=false")
    cfg = ObjectConfig.load(config_path, items)
    from scenescape.backends.models import preflight_models

    preflight_models(cfg)  # every model checked before any is loaded; no hub retries when offline
    result = ObjectPipeline(cfg).run(prompt, out_dir, resume=resume)
    click.echo(f"run folder: {result.out_dir}")
    for name, path in result.files.items():
        click.echo(f"{name}: {path}")
    _warn_not_written(result.not_written)


def _warn_not_written(not_written: dict[str, str]) -> None:
    """One ``warning:`` line per documented output (mesh, video) that was not written, with why."""
    for name, why in not_written.items():
        click.echo(f"warning: {name} not written: {why}", err=True)


COMMANDS = [object_cmd]
