"""Scene-mode commands: ``generate``, ``demo``, ``render``, ``export``.

``scenescape generate [PROMPT] [--config FILE] [--image PATH] [--init-depth PATH] [--trajectory NAME|FILE]
[--frames N] [--out DIR] [--resume DIR] [--overwrite] [--quiet] [key=value ...]``

Arguments of the form ``key=value`` (``seed=3``, ``inpainter.options.method=ns``) are config
overrides; any other argument is the prompt.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Any

import click

from scenescape.cli import invocation, plugin_option
from scenescape.errors import InputError, RunError, ScenescapeError

_OVERRIDE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*=")


def _split_args(args: tuple[str, ...]) -> tuple[str | None, list[str]]:
    prompt_parts = [a for a in args if not _OVERRIDE.match(a)]
    overrides = [a for a in args if _OVERRIDE.match(a)]
    if len(prompt_parts) > 1:
        raise click.UsageError(f"more than one prompt argument {prompt_parts}; quote the prompt")
    return (prompt_parts[0] if prompt_parts else None), overrides


def _echo(msg: str, quiet: bool) -> None:
    if not quiet:
        click.echo(msg)


def _show_warnings(quiet: bool) -> Any:
    """Print Python warnings (image converted, resized ...) as one ``warning: ...`` line each."""

    def show(message: Any, category: Any, filename: Any, lineno: Any, file: Any = None, line: Any = None) -> None:
        click.echo(f"warning: {message}", err=True)

    warnings.showwarning = show  # type: ignore[assignment]
    return show


def default_out_dir(prompt: str | None, root: str | Path = "runs") -> Path:
    """``runs/<slugified prompt>-<UTC timestamp>``."""
    from scenescape.io import slugify

    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path(root) / f"{slugify(prompt or '', default='scene')}-{stamp}"


def _build_config(config_path: str | None, overrides: list[str], prompt: str | None, frames: int | None,
                  trajectory: str | None) -> Any:
    from scenescape.config import from_dict, load_yaml, merge_dicts, overrides_to_dict
    from scenescape.pipelines.scene import SceneConfig

    data: dict = load_yaml(config_path) if config_path else {}
    data = merge_dicts(data, overrides_to_dict(overrides))
    if prompt is not None:
        data["prompt"] = prompt
    if frames is not None:
        data["frames"] = frames
    if trajectory is not None:
        from scenescape.trajectories import TrajectoryConfig

        t = TrajectoryConfig.parse(trajectory)
        data["trajectory"] = {"name": t.name, "params": {}, "file": t.file}
    return from_dict(SceneConfig, data)


def _check_trajectory(cfg: Any) -> int | None:
    """Validate a trajectory file or preset name before anything is written; a file's frame count."""
    from scenescape.trajectories import get_preset, load_trajectory_file

    tcfg = cfg.trajectory
    if tcfg.file:
        if not Path(tcfg.file).is_file():
            raise InputError(f"trajectory file '{tcfg.file}' does not exist")
        try:
            items = load_trajectory_file(tcfg.file)
        except ScenescapeError:
            raise
        except Exception as e:  # a parser error of a malformed file: name the file
            raise InputError(f"trajectory file '{tcfg.file}' is malformed ({type(e).__name__}: {e})") from e
        return sum(int(getattr(s, "frames", None) or 1) for s in items)
    get_preset(tcfg.name)  # an unknown preset is an error naming the nearest one
    return None


def _load_inputs(cfg: Any, image: str | None, init_depth: str | None) -> tuple[Any, Any]:
    import numpy as np

    from scenescape.io import load_depth, load_image

    if init_depth and not image:
        raise InputError("--init-depth needs --image (the photo the depth belongs to)")
    if not image:
        return None, None
    p = Path(image)
    if not p.is_file():
        raise InputError(f"image '{p}' does not exist (check the --image path)")
    raw = load_image(p)  # EXIF orientation applied; any mode -> RGB with its range kept
    h0, w0 = raw.shape[:2]
    img = load_image(p, size=(cfg.width, cfg.height)) if (w0, h0) != (cfg.width, cfg.height) else raw
    depth = None
    if init_depth:
        depth = load_depth(init_depth, shape=(h0, w0))
        if (w0, h0) != (cfg.width, cfg.height):
            from scenescape.io import fit_to_size

            warnings.warn(f"depth '{init_depth}' cropped and resized from {w0}x{h0} to {cfg.width}x{cfg.height} "
                          "with the image", stacklevel=2)
            depth = fit_to_size(depth, (cfg.width, cfg.height), nearest=True).astype(np.float32)
    return img, depth


def _run_pipeline(pipe: Any, quiet: bool, **kwargs: Any) -> Any:
    times: list[float] = []

    def on_frame(i: int, seconds: float) -> None:
        times.append(seconds)

    result = pipe.run(progress=not quiet, on_frame=on_frame, **kwargs)
    return result


def _report(result: Any, quiet: bool) -> None:
    run = result.run_dir
    if not quiet:
        t = result.timings
        n = len(result.frames)
        per = sum(result.frame_times) / max(len(result.frame_times), 1)
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in t.items() if v > 0.005)
        click.echo(f"{n} frames, {per:.2f} s/frame; stages: {stages}")
    if run is not None:
        click.echo(f"run folder: {run}")
        if (run / "video.mp4").exists():
            click.echo(f"video: {run / 'video.mp4'}")
        for name in ("mesh.glb", "mesh.ply", "mesh.obj"):
            if (run / name).exists():
                click.echo(f"mesh: {run / name}")


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, metavar="[PROMPT] [KEY=VALUE]...")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="YAML preset (see configs/).")
@click.option("--image", type=click.Path(dir_okay=False), help="Start from this photo.")
@click.option("--init-depth", type=click.Path(dir_okay=False), help="Z-depth of --image (.npy, or 16-bit PNG in mm).")
@click.option("--camera", "camera_path", type=click.Path(dir_okay=False),
              help="Start camera JSON (Camera.to_dict); default: focal/width/height of the config at the origin.")
@click.option("--trajectory", help="Preset name (scenescape, forward, backward, ...) or a trajectory file.")
@click.option("--frames", type=int, help="Number of frames.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/<prompt>-<time>).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), help="Continue the run in this folder.")
@click.option("--overwrite", is_flag=True, help="Replace an existing run folder.")
@click.option("--quiet", is_flag=True, help="No progress bar or timings (for scripts).")
@plugin_option
def generate(args: tuple[str, ...], config_path: str | None, image: str | None, init_depth: str | None,
             camera_path: str | None, trajectory: str | None, frames: int | None, out: str | None,
             resume_dir: str | None, overwrite: bool, quiet: bool) -> None:
    """Make a walkthrough video and scene mesh from PROMPT and/or --image.

    Extra KEY=VALUE arguments override the config (e.g. seed=3 inpainter.options.method=ns).
    """
    from scenescape.pipelines.scene import SceneConfig, ScenePipeline

    _show_warnings(quiet)
    prompt, overrides = _split_args(args)
    if resume_dir is not None:
        given = {"PROMPT": prompt, "--config": config_path, "--image": image, "--init-depth": init_depth,
                 "--camera": camera_path, "--trajectory": trajectory, "--frames": frames, "--out": out,
                 "key=value": overrides or None}
        extra = [k for k, v in given.items() if v]
        if extra:
            raise click.UsageError(f"--resume continues with the run's saved config and inputs; do not pass {extra}")
        if overwrite:
            raise click.UsageError("choose either --resume or --overwrite")
        from scenescape.pipelines.runs import RunFolder
        from scenescape.registry import check_plugins

        run = RunFolder.open_existing(resume_dir)  # marker, lock, inputs verified; nothing written
        try:
            cfg = SceneConfig.load(run.config_path)
        except ValueError as e:
            raise RunError(f"cannot resume: the run's config '{run.config_path}' is invalid: {e}") from e
        check_plugins(cfg)
        pipe = ScenePipeline.from_config(cfg)
        _echo(f"resuming {run.path}", quiet)
        result = _run_pipeline(pipe, quiet, out_dir=run.path, resume=True)
        _report(result, quiet)
        return

    cfg = _build_config(config_path, overrides, prompt, frames, trajectory)
    from scenescape.registry import check_plugins

    check_plugins(cfg)
    if "\x00" in cfg.prompt:
        raise InputError("the prompt contains a NUL character; remove it")
    n_file = _check_trajectory(cfg)
    if n_file is not None and frames is None and not any(o.startswith("frames=") for o in overrides):
        import dataclasses

        cfg = dataclasses.replace(cfg, frames=n_file)  # a trajectory file sets the number of frames
    img, depth = _load_inputs(cfg, image, init_depth)
    start = None
    if camera_path:
        start = _load_camera(camera_path)
    out_dir = Path(out) if out else default_out_dir(cfg.prompt or (Path(image).stem if image else None))
    from scenescape.pipelines.runs import RunFolder

    RunFolder.check_new(out_dir, overwrite)  # before the backends load (writes nothing)
    pipe = ScenePipeline.from_config(cfg)
    result = _run_pipeline(pipe, quiet, prompt=cfg.prompt, init_image=img, init_depth=depth, out_dir=out_dir,
                           overwrite=overwrite, start_camera=start, command=invocation())
    _report(result, quiet)


def _load_camera(path: str | Path) -> Any:
    from scenescape.geometry.camera import Camera, cameras_from_json
    from scenescape.io import read_json

    p = Path(path)
    if not p.is_file():
        raise InputError(f"camera file '{p}' does not exist")
    try:
        data = read_json(p)
    except Exception as e:
        raise InputError(f"camera file '{p}' is not valid JSON: {e}") from e
    try:
        if isinstance(data, dict) and "fx" in data:
            return Camera.from_dict(data)
        return cameras_from_json(data)[0]
    except ScenescapeError as e:
        raise InputError(f"camera file '{p}': {e}") from e
    except (ValueError, KeyError, TypeError, IndexError, AttributeError) as e:
        what = f"missing key {e}" if isinstance(e, KeyError) else f"{type(e).__name__}: {e}"
        raise InputError(f"camera file '{p}' is malformed ({what}); it must hold a camera as written by "
                         "Camera.to_dict (fx, fy, cx, cy, width, height, world_to_camera) or a cameras.json") from e


# ---------------------------------------------------------------------------------------------
# demo
# ---------------------------------------------------------------------------------------------

def find_demo_samples() -> Path | None:
    """``samples/demo`` of a source checkout (next to the ``scenescape`` package), if it is there."""
    import scenescape

    root = Path(scenescape.__file__).resolve().parent.parent
    d = root / "samples" / "demo"
    if all((d / n).is_file() for n in ("image.png", "depth.npy", "camera.json")):
        return d
    return None


def demo_start_frame(size: int = 512) -> tuple[Any, Any, Any, str]:
    """``(image, depth, camera, source)`` of the demo's first frame.

    From ``samples/demo/`` when running from a source checkout at its size; otherwise (an installed
    package, or another size) rendered on the fly from :mod:`scenescape.evaluation`'s room - the same
    procedure ``samples/make_samples.py`` uses, so the result is the same.
    """
    from scenescape.geometry.camera import Camera
    from scenescape.io import load_depth, load_image, read_json

    d = find_demo_samples()
    if d is not None:
        cam = Camera.from_dict(read_json(d / "camera.json"))
        if cam.width == size and cam.height == size:
            img = load_image(d / "image.png")
            depth = load_depth(d / "depth.npy", shape=(cam.height, cam.width))
            return img, depth, cam, str(d)
    from scenescape.evaluation import default_camera, make_world

    cam = default_camera("room", size, size, 500.0 * size / 512)
    img, depth = make_world("room").render(cam)
    return img.numpy(), depth.numpy(), cam, "synthetic room of scenescape.evaluation (rendered)"


def demo_config(frames: int = 60, size: int = 512, overrides: list[str] | None = None) -> Any:
    """The offline demo's config: classical backends, forward walk with SceneScape's yaw sweep."""
    from scenescape.config import apply_overrides
    from scenescape.evaluation import suggest_trajectory
    from scenescape.pipelines.scene import SceneConfig

    traj = suggest_trajectory("room", "forward_yaw")
    traj.params["step"] = 0.03
    cfg = SceneConfig(
        seed=0, prompt="", width=size, height=size, focal=500.0 * size / 512, frames=frames,
        trajectory=traj, scene_scale=1.0,
    )
    return apply_overrides(cfg, list(overrides or []))


@click.command()
@click.argument("overrides", nargs=-1, metavar="[KEY=VALUE]...")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default runs/demo-<time>).")
@click.option("--frames", type=int, default=60, show_default=True)
@click.option("--size", type=int, default=512, show_default=True, help="Width and height in pixels.")
@click.option("--overwrite", is_flag=True)
@click.option("--quiet", is_flag=True)
@plugin_option
def demo(overrides: tuple[str, ...], out: str | None, frames: int, size: int, overwrite: bool, quiet: bool) -> None:
    """Offline walkthrough from the shipped start frame with the classical backends (no model weights).

    The start frame is samples/demo/ of a source checkout; an installed package renders the same frame
    from scenescape.evaluation. KEY=VALUE arguments override the config.
    """
    from scenescape.pipelines.scene import ScenePipeline

    _show_warnings(quiet)
    if frames < 1 or size < 16:
        raise click.UsageError("--frames must be >= 1 and --size >= 16")
    cfg = demo_config(frames, size, list(overrides))
    out_dir = Path(out) if out else default_out_dir("demo")
    from scenescape.pipelines.runs import RunFolder

    RunFolder.check_new(out_dir, overwrite)
    img, depth, cam, source = demo_start_frame(size)
    _echo(f"start frame: {source}", quiet)
    pipe = ScenePipeline.from_config(cfg)
    t0 = time.perf_counter()
    result = _run_pipeline(pipe, quiet, init_image=img, init_depth=depth, start_camera=cam, out_dir=out_dir,
                           overwrite=overwrite, command=invocation())
    _echo(f"total {time.perf_counter() - t0:.1f} s", quiet)
    _report(result, quiet)


# ---------------------------------------------------------------------------------------------
# render / export
# ---------------------------------------------------------------------------------------------

@click.command()
@click.argument("mesh_path", metavar="MESH", type=click.Path(dir_okay=False))
@click.option("--trajectory", required=True, help="Preset name or trajectory file (explicit cameras, segments).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Video (.mp4 or .gif).")
@click.option("--frames", type=int, help="Number of frames (default: 60 for a preset, all of a file's cameras).")
@click.option("--camera", "camera_path", type=click.Path(dir_okay=False),
              help="Start camera JSON; default: the first camera of the run folder's cameras.json next to MESH, "
                   "else a 512x512 camera (focal 500) at the origin.")
@click.option("--scene-scale", type=float, help="Multiplies preset distances (default: median depth seen by the "
                                                 "start camera).")
@click.option("--fps", type=float, default=10.0, show_default=True)
@click.option("--supersample", type=int, default=1, show_default=True)
@click.option("--quiet", is_flag=True)
def render(mesh_path: str, trajectory: str, output: str, frames: int, camera_path: str | None,
           scene_scale: float | None, fps: float, supersample: int, quiet: bool) -> None:
    """Re-render a saved scene MESH (.ply/.glb/.obj/.npz) along any camera path into a video."""
    import numpy as np
    import torch

    from scenescape.geometry.camera import Camera, cameras_from_json
    from scenescape.geometry.mesh import SceneMesh
    from scenescape.geometry.raster import render_mesh
    from scenescape.io import read_json, write_gif, write_video
    from scenescape.trajectories import build_trajectory

    out = Path(output)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise InputError(f"output '{out}' must end in .mp4 or .gif")
    mesh = SceneMesh.load(mesh_path)
    if camera_path:
        start = _load_camera(camera_path)
    elif (Path(mesh_path).parent / "cameras.json").is_file():
        start = cameras_from_json(read_json(Path(mesh_path).parent / "cameras.json"))[0]
    else:
        start = Camera(500.0, 500.0, 256.0, 256.0, 512, 512)
    if scene_scale is None:
        w2c = start.world_to_camera
        z = (mesh.vertices @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
        z = z[z > 0]
        scene_scale = float(z.median()) if z.numel() else 1.0
    from scenescape.trajectories import looks_like_path

    if frames is None and not looks_like_path(trajectory):
        frames = 60
    cams = build_trajectory(trajectory, start, frames, scene_scale)
    images = []
    it = cams
    if not quiet:
        from tqdm.auto import tqdm

        it = tqdm(cams, desc="render", unit="frame")
    for cam in it:
        with torch.no_grad():
            r = render_mesh(mesh, cam, supersample=supersample)
        images.append(np.asarray(r.image.cpu().numpy(), np.float32))
    if out.suffix.lower() == ".gif":
        write_gif(out, images, fps=fps)
    else:
        write_video(out, images, fps=fps)
    click.echo(f"video: {out} ({len(images)} frames)")


@click.command()
@click.argument("mesh_path", metavar="MESH", type=click.Path(dir_okay=False))
@click.argument("out", metavar="OUT", type=click.Path(dir_okay=False))
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def export(mesh_path: str, out: str, overwrite: bool) -> None:
    """Convert a scene MESH (.ply/.glb/.obj/.npz) to OUT; the format follows OUT's suffix (.ply, .glb, .obj)."""
    from scenescape.geometry.mesh import SceneMesh

    o = Path(out)
    if o.suffix.lower() not in (".ply", ".glb", ".obj"):
        raise InputError(f"OUT '{o}' must end in .ply, .glb or .obj")
    if o.exists() and not overwrite:
        raise InputError(f"'{o}' already exists; pass --overwrite to replace it")
    mesh = SceneMesh.load(mesh_path)
    mesh.export(o)
    click.echo(f"mesh: {o} ({mesh.num_vertices} vertices, {mesh.num_faces} faces)")


COMMANDS = [generate, demo, render, export]
