"""``scenescape object``: text to a 3D asset by score distillation (SDS/SJC) on a NeRF.

Examples::

    scenescape object "a ceramic mug" --config configs/object/sds-gpu.yaml --out runs/mug
    scenescape object "a ceramic mug" --steps 200 guidance.options.mode=sjc seed=3
    scenescape object --resume runs/mug                # continue an interrupted run (its saved config)
    scenescape object --resume runs/mug --steps 20000  # ... and train it for longer
    scenescape object --export runs/mug output.mesh_threshold=20   # re-export mesh and video
    scenescape object --image photo.png --config configs/object/realfusion-gpu.yaml --out runs/bear
    scenescape object --image photo.png "a teddy bear" --mask mask.png image.reference.elevation=10
"""

from __future__ import annotations

import click

from scenescape.cli import invocation, plugin_option


@click.command("object", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("prompt", required=False)
@click.argument("overrides", nargs=-1)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML preset (e.g. configs/object/sds-gpu.yaml); key=value arguments override it.")
@click.option("--steps", type=int, default=None, help="Number of optimisation steps (overrides the config).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Run folder (default runs/object-<prompt>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="Continue the run in this folder from its config, prompt and checkpoint.pt (--steps and "
                   "output.* overrides may change).")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder (only one scenescape made).")
@click.option("--export", "export_dir", type=click.Path(file_okay=False), default=None,
              help="Re-export mesh and video of an existing run folder from its checkpoint, then exit.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--image", "image_path", type=click.Path(dir_okay=False), default=None,
              help="Image to object (RealFusion): a photo of the object (RGBA: alpha = mask); PROMPT is then optional.")
@click.option("--mask", "mask_path", type=click.Path(dir_okay=False), default=None,
              help="Object mask for --image (white = object, the photo's size); default: alpha or GrabCut.")
@plugin_option
def object_cmd(prompt: str | None, overrides: tuple[str, ...], config_path: str | None, steps: int | None,
               out_dir: str | None, resume_dir: str | None, overwrite: bool, export_dir: str | None,
               quiet: bool, image_path: str | None = None, mask_path: str | None = None) -> None:
    """Optimise a NeRF for PROMPT by score distillation; write mesh (GLB/OBJ/PLY), orbit video, checkpoint.

    Extra KEY=VALUE arguments override config keys (e.g. seed=3 resolution=64 guidance.options.mode=sjc).
    """
    from scenescape.pipelines.object.pipeline import (
        ObjectConfig,
        ObjectPipeline,
        check_prompt,
        export_run,
        resume_run,
    )

    if export_dir is not None or resume_dir is not None:
        items = list(overrides)
        if prompt is not None:  # with --export / --resume every positional argument is an override
            items = [prompt, *items]
        bad = [o for o in items if "=" not in o]
        if bad:
            what = "--export" if export_dir is not None else "--resume"
            raise click.UsageError(f"{what} takes the run's saved prompt; extra arguments must be key=value "
                                   f"overrides, got {bad}")
        if image_path is not None or mask_path is not None:
            raise click.UsageError("--image / --mask start a new run; --resume and --export use the run's own")
        if export_dir is not None:
            if resume_dir is not None or overwrite or out_dir or config_path or steps is not None:
                raise click.UsageError("--export takes only the run folder and output.* overrides")
            not_written: dict[str, str] = {}
            files = export_run(export_dir, items, not_written)
            for name, path in files.items():
                click.echo(f"{name}: {path}")
            _warn_not_written(not_written)
            return
        given = {"--config": config_path, "--out": out_dir, "--overwrite": overwrite or None}
        extra = [k for k, v in given.items() if v]
        if extra:
            raise click.UsageError(f"--resume continues with the run's saved config and prompt; do not pass {extra}")
        if steps is not None:
            items.append(f"steps={steps}")
        if quiet:
            items.append("progress=false")
        result = resume_run(resume_dir, items)
        _report(result)
        return
    if image_path is not None and prompt is not None and "=" in prompt and " " not in prompt.strip():
        overrides, prompt = (prompt, *overrides), None  # --image photo.png key=value ...: no prompt
    if mask_path is not None and image_path is None:
        raise click.UsageError("--mask needs --image")
    if prompt is None and image_path is None:
        raise click.UsageError('a PROMPT is required, e.g. scenescape object "a ceramic mug"')
    if prompt is not None and "=" in prompt and " " not in prompt.strip():
        raise click.UsageError(f"the first argument must be the prompt, got the override {prompt!r}")
    if prompt is not None:
        prompt = check_prompt(prompt)
    items = list(overrides)
    bad = [o for o in items if "=" not in o]
    if bad:
        raise click.UsageError(f"extra arguments must be key=value overrides, got {bad}")
    if steps is not None:
        items.append(f"steps={steps}")
    if quiet:
        items.append("progress=false")
    if image_path is not None:
        items.append(f"image.path={_yaml_str(image_path)}")
        if mask_path is not None:
            items.append(f"image.mask={_yaml_str(mask_path)}")
    cfg = ObjectConfig.load(config_path, items)
    from scenescape.backends.models import preflight_models

    preflight_models(cfg)  # every model checked before any is loaded; no hub retries when offline
    result = ObjectPipeline(cfg).run(prompt, out_dir, overwrite=overwrite, command=invocation())
    _report(result)


def _report(result: object) -> None:
    click.echo(f"run folder: {result.out_dir}")  # type: ignore[attr-defined]
    for name, path in result.files.items():  # type: ignore[attr-defined]
        click.echo(f"{name}: {path}")
    _warn_not_written(result.not_written)  # type: ignore[attr-defined]


def _warn_not_written(not_written: dict[str, str]) -> None:
    """One ``warning:`` line per documented output (mesh, video) that was not written, with why."""
    for name, why in not_written.items():
        click.echo(f"warning: {name} not written: {why}", err=True)


def _yaml_str(text: str) -> str:
    """A path as a quoted YAML scalar (override values are parsed as YAML)."""
    return "'" + text.replace("'", "''") + "'"


COMMANDS = [object_cmd]
