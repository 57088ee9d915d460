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
    from scenescape.pipelines.scene.inputs import load_start_inputs

    return load_start_inputs(cfg, image, init_depth)


def _prior_notice(cfg: Any, image: Any, depth: Any, quiet: bool) -> None:
    """A photo without depth whose first depth comes from the layout prior: say what that means."""
    if image is None or depth is not None:
        return
    name = cfg.first_depth.name or cfg.depth.name
    if name != "prior":
        return
    click.echo("warning: the photo has no depth, so its depth is the offline layout prior: a guess of a floor, "
               "side walls and a far wall from the image's vanishing lines and horizon, not a measurement; "
               "objects in the photo become flat paint on those planes. "
               "For real geometry pass --init-depth DEPTH (.npy z-depth or 16-bit PNG in mm) or use a depth "
               "model (--config configs/gpu-quality.yaml, or first_depth.name=transformers; see `scenescape models`).",
               err=True)


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
    from scenescape.backends.models import preflight_models
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
        preflight_models(cfg)  # every model checked before any is loaded; no hub retries when offline
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
    preflight_models(cfg)  # every model checked before any is loaded; no hub retries when offline
    _prior_notice(cfg, img, depth, quiet)
    pipe = ScenePipeline.from_config(cfg)
    result = _run_pipeline(pipe, quiet, prompt=cfg.prompt, init_image=img, init_depth=depth, out_dir=out_dir,
                           overwrite=overwrite, start_camera=start, command=invocation())
    _report(result, quiet)


def _load_camera(path: str | Path) -> Any:
    from scenescape.pipelines.scene.inputs import load_start_camera

    return load_start_camera(path)


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

# preset -> (distance parameter, angle parameter) that fit_preset_to_run may shorten
_FIT = {"forward": ("step", None), "backward": ("step", None), "lateral": ("step", None),
        "forward_yaw": ("step", None), "scenescape": ("step", None), "spiral": ("step", None),
        "orbit": (None, "angle_step")}


def fit_preset_to_run(name: str, frames: int, run_cameras: list[Any], scene_scale: float) -> dict[str, float]:
    """Preset parameters that keep a re-render where the run's cameras were.

    A preset's default per-frame motion is made for generating (it walks into new space); a re-render
    of the saved mesh should stay where the run saw, or it shows empty (black) space and the edges of
    the mesh. The total motion over ``frames`` is therefore capped: a translation (``step``) at the
    run's largest camera distance from its first camera (at least 0.05 x ``scene_scale``), an orbit's
    angle (``angle_step``, turning the way the run turned) at the run's largest yaw from its first camera
    (at least 0.05 rad) and its ``radius`` so that the sideways travel (radius x angle) stays within that distance.
    Returns only the parameters that had to shrink (``{}``: the defaults fit).
    """
    import inspect

    import numpy as np

    from scenescape.trajectories import PRESETS

    if name not in _FIT or len(run_cameras) < 1 or frames < 2:
        return {}
    dist_key, angle_key = _FIT[name]
    defaults = {k: p.default for k, p in inspect.signature(PRESETS[name]).parameters.items()
                if p.default is not inspect.Parameter.empty}
    c2w = [np.linalg.inv(c.world_to_camera.double().cpu().numpy()) for c in run_cameras]
    centres = np.stack([m[:3, 3] for m in c2w])
    dirs = np.stack([m[:3, 2] for m in c2w])
    reach = float(np.linalg.norm(centres - centres[0], axis=1).max())
    # signed turn about the first camera's down axis (an orbit turns by -angle_step per frame about it)
    yaw = np.arctan2(np.cross(dirs[0], dirs) @ c2w[0][:3, 1], dirs @ dirs[0])
    k = int(np.argmax(np.abs(yaw)))
    turn, sign = float(abs(yaw[k])), (-1.0 if yaw[k] > 0 else 1.0)
    out: dict[str, float] = {}
    steps = frames - 1
    if dist_key is not None:
        cap = max(reach, 0.05 * scene_scale) / (scene_scale * steps)
        if cap < defaults[dist_key]:
            out[dist_key] = cap
    if angle_key is not None:
        angle = min(max(turn, 0.05) / steps, defaults[angle_key])
        if angle < defaults[angle_key]:
            out[angle_key] = sign * angle  # turning the way the run turned
        # an orbit also moves the camera sideways by radius x angle: no further than the run went
        radius = max(reach, 0.05 * scene_scale) / (angle * steps * scene_scale)
        if radius < defaults["radius"]:
            out["radius"] = radius
    return out


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
@click.option("--fit/--no-fit", default=True, show_default=True,
              help="Shorten a preset's motion so the path stays where the run's cameras (cameras.json next to "
                   "MESH) were; --no-fit keeps the preset's own per-frame motion.")
@click.option("--quiet", is_flag=True)
def render(mesh_path: str, trajectory: str, output: str, frames: int, camera_path: str | None,
           scene_scale: float | None, fps: float, supersample: int, fit: bool, quiet: bool) -> None:
    """Re-render a saved scene MESH (.ply/.glb/.obj/.npz) along any camera path into a video.

    Per frame this draws the whole final mesh (every frame's geometry), while generate draws the mesh
    as it grows, so a frame here costs more than one frame of generate (about 1.5x for the demo).
    """
    import numpy as np
    import torch

    from scenescape.geometry.camera import Camera
    from scenescape.geometry.raster import render_mesh
    from scenescape.io import read_json, write_gif, write_video
    from scenescape.io.meshes import load_mesh
    from scenescape.io.world import cameras_from_file_json
    from scenescape.trajectories import build_trajectory

    out = Path(output)
    if out.suffix.lower() not in (".mp4", ".gif"):
        raise InputError(f"output '{out}' must end in .mp4 or .gif")
    mesh = load_mesh(mesh_path)
    run_cams = None
    if (Path(mesh_path).parent / "cameras.json").is_file():
        run_cams = cameras_from_file_json(read_json(Path(mesh_path).parent / "cameras.json"))
    if camera_path:
        start = _load_camera(camera_path)
    elif run_cams:
        start = run_cams[0]
    else:
        start = Camera(500.0, 500.0, 256.0, 256.0, 512, 512)
    if scene_scale is None:
        w2c = start.world_to_camera
        z = (mesh.vertices @ w2c[:3, :3].T + w2c[:3, 3])[:, 2]
        z = z[z > 0]
        scene_scale = float(z.median()) if z.numel() else 1.0
    from scenescape.trajectories import looks_like_path

    spec: Any = trajectory
    if frames is None and not looks_like_path(trajectory):
        frames = 60
    if fit and run_cams and not looks_like_path(trajectory):
        params = fit_preset_to_run(trajectory, frames, run_cams, scene_scale)
        if params:
            from scenescape.trajectories import TrajectoryConfig

            spec = TrajectoryConfig(trajectory, params)
            shown = ", ".join(f"{k}={v:.3g}" for k, v in params.items())
            _echo(f"render: {trajectory} shortened to stay where the run's cameras were ({shown}); "
                  "--no-fit keeps the preset's own motion", quiet)
    cams = build_trajectory(spec, start, frames, scene_scale)
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
    from scenescape.io.meshes import load_mesh, save_mesh

    o = Path(out)
    if o.suffix.lower() not in (".ply", ".glb", ".obj"):
        raise InputError(f"OUT '{o}' must end in .ply, .glb or .obj")
    if o.exists() and not overwrite:
        raise InputError(f"'{o}' already exists; pass --overwrite to replace it")
    mesh = load_mesh(mesh_path)
    save_mesh(mesh, o)
    click.echo(f"mesh: {o} ({mesh.num_vertices} vertices, {mesh.num_faces} faces)")


COMMANDS = [generate, demo, render, export]
