"""``scenescape object``: text to a 3D asset by score distillation (SDS/SJC) on a NeRF.

Examples::

    scenescape object "a ceramic mug" --config configs/object/sds-gpu.yaml --out runs/mug
    scenescape object "a ceramic mug" --steps 200 guidance.options.mode=sjc seed=3
    scenescape object --resume runs/mug                # continue an interrupted run (its saved config)
    scenescape object --resume runs/mug --steps 20000  # ... and train it for longer
    scenescape object --export runs/mug output.mesh_threshold=20   # re-export mesh and video
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
@plugin_option
def object_cmd(prompt: str | None, overrides: tuple[str, ...], config_path: str | None, steps: int | None,
               out_dir: str | None, resume_dir: str | None, overwrite: bool, export_dir: str | None,
               quiet: bool) -> None:
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
        if export_dir is not None:
            if resume_dir is not None or overwrite or out_dir or config_path or steps is not None:
                raise click.UsageError("--export takes only the run folder and output.* overrides")
            files = export_run(export_dir, items)
            for name, path in files.items():
                click.echo(f"{name}: {path}")
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
    if prompt is None:
        raise click.UsageError('a PROMPT is required, e.g. scenescape object "a ceramic mug"')
    if "=" in prompt and " " not in prompt.strip():
        raise click.UsageError(f"the first argument must be the prompt, got the override {prompt!r}")
    prompt = check_prompt(prompt)
    items = list(overrides)
    bad = [o for o in items if "=" not in o]
    if bad:
        raise click.UsageError(f"extra arguments must be key=value overrides, got {bad}")
    if steps is not None:
        items.append(f"steps={steps}")
    if quiet:
        items.append("progress=false")
    cfg = ObjectConfig.load(config_path, items)
    result = ObjectPipeline(cfg).run(prompt, out_dir, overwrite=overwrite, command=invocation())
    _report(result)


def _report(result: object) -> None:
    click.echo(f"run folder: {result.out_dir}")  # type: ignore[attr-defined]
    for name, path in result.files.items():  # type: ignore[attr-defined]
        click.echo(f"{name}: {path}")


COMMANDS = [object_cmd]
