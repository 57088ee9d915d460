"""``scenescape evaluate RUN [--clip MODEL] [--prompt TEXT] [--json out.json] [--report out.html]``."""

from __future__ import annotations

import click


@click.command()
@click.argument("run", metavar="RUN", type=click.Path(file_okay=False))
@click.option("--clip", "clip", help="CLIP model (hub id or folder) for the CLIP score and its drift.")
@click.option("--prompt", help="Text for the CLIP score (default: the run's prompt).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Write every number to this JSON file.")
@click.option("--report", "report_path", type=click.Path(dir_okay=False),
              help="Write an HTML report (plots + thumbnails; needs the eval extra: matplotlib).")
@click.option("--measures", help=f"Comma-separated subset of: {', '.join(('consistency_3d', 'photometric', 'camera', 'style', 'seams', 'clip'))}.")
@click.option("--flow", "flow_method", type=click.Choice(["dis", "farneback"]), default="dis", show_default=True)
@click.option("--features", type=click.Choice(["sift", "orb"]), default="sift", show_default=True)
@click.option("--device", default="auto", show_default=True, help="Device of the CLIP model.")
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def evaluate(run: str, clip: str | None, prompt: str | None, json_path: str | None, report_path: str | None,
             measures: str | None, flow_method: str, features: str, device: str, quiet: bool) -> None:
    """Measure a scene (or object) RUN folder: 3D and photometric consistency, camera control, style and
    colour drift, seam visibility, and with --clip the CLIP score of every frame."""
    from pathlib import Path

    from scenescape.errors import InputError
    from scenescape.evaluation.measures import evaluate_run, headline, load_run
    from scenescape.io import write_json

    if report_path and Path(report_path).suffix.lower() not in (".html", ".htm"):
        raise InputError(f"--report '{report_path}' must end in .html")
    if report_path:
        from scenescape.evaluation.measures.report import _require_matplotlib

        _require_matplotlib()  # fail before the measures run, not after
    import time

    t0 = time.perf_counter()
    data = load_run(run)
    t_load = time.perf_counter() - t0
    wanted = [m.strip() for m in measures.split(",") if m.strip()] if measures else None
    result = evaluate_run(data, clip=clip, prompt=prompt, measures=wanted, device=device, flow_method=flow_method,
                          features=features)
    result["seconds"] = {"load": round(t_load, 3), **result["seconds"]}
    if report_path:
        from scenescape.evaluation.measures.report import write_report

        t0 = time.perf_counter()
        write_report(result, data.frames, report_path)
        result["seconds"]["report"] = round(time.perf_counter() - t0, 3)
    if json_path:
        write_json(json_path, result)
    if not quiet:
        click.echo(f"{result['run']}: {result['frames']} frames, {result['size'][0]}x{result['size'][1]}")
        for label, v in headline(result).items():
            click.echo(f"  {label:<46} {v:.4g}" if isinstance(v, float) else f"  {label:<46} {v}")
        for name, why in result["skipped"].items():
            click.echo(f"  not measured: {name} ({why})")
        click.echo(f"  seconds: {sum(result['seconds'].values()):.1f}")
        if json_path:
            click.echo(f"json: {json_path}")
        if report_path:
            click.echo(f"report: {report_path}")


COMMANDS = [evaluate]
