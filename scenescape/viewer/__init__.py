"""Browser viewer of a run (``scenescape view RUN`` / ``--object RUN``), built on three.js.

:func:`build_view_html` makes one self-contained HTML page: the bundled viewer (``static/viewer.js``: three.js
r187 from npm with its ``GLTFLoader`` and ``OrbitControls`` plus ``src/main.js``, built by ``npm run build`` in
this folder), a GLB of the run's mesh with its cameras as glTF camera nodes (written by
:func:`scenescape.io.meshes.save_mesh`, so the page shows exactly what the files hold), and the frames as PNG
data URIs. The page needs no server and no network; :func:`serve` also serves it on localhost.

The page shows the mesh with its colours, every camera as a frustum (the current one highlighted) joined by
the path, the frames on a slider (the view jumps to that camera, the frame is shown top right) and a play
button that flies the path (positions interpolated, rotations slerped, at the run's fps). ``#status`` holds
``data-loaded``, ``data-vertices``, ``data-faces``, ``data-cameras``, ``data-frames`` and ``data-drawn`` (the
fraction of the canvas the first view covers) for tests.
"""

from __future__ import annotations

import base64
import html
import io
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from scenescape.errors import InputError

STATIC = Path(__file__).parent / "static"
BUNDLE = STATIC / "viewer.js"


def _png_data_uri(image: Any) -> str:
    from PIL import Image

    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(np.asarray(arr, np.float64) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _glb_bytes(mesh: Any, frame: str, cameras: list[Any]) -> bytes:
    from scenescape.io.meshes import save_mesh

    with tempfile.TemporaryDirectory() as d:
        p = save_mesh(mesh, Path(d) / "view.glb", frame=frame, cameras=cameras)
        return p.read_bytes()


def _find_mesh(run: Path) -> Path:
    for name in ("mesh.glb", "mesh.ply", "mesh.obj"):
        if (run / name).is_file():
            return run / name
    raise InputError(f"'{run}' has no mesh.glb, mesh.ply or mesh.obj; is it a finished run folder?")


def scene_view_data(run: str | Path, max_frames: int | None = None) -> dict[str, Any]:
    """The viewer's data of a scene run folder: mesh, cameras (``cameras.json``), frames (``frames/``)."""
    from scenescape.io.meshes import load_mesh
    from scenescape.pipelines.runs import RunFolder

    run = Path(run)
    if not run.is_dir():
        raise InputError(f"run folder '{run}' does not exist")
    rf = RunFolder(run)
    cams = rf.load_cameras()
    if not cams:
        raise InputError(f"'{run}' has no cameras.json; is it a scene run folder? (use --object for object runs)")
    mesh = load_mesh(_find_mesh(run), frame="scene")
    frames = []
    for i in range(len(cams) if max_frames is None else min(len(cams), max_frames)):
        p = rf.frame_path(i)
        if p.is_file():
            frames.append("data:image/png;base64," + base64.b64encode(p.read_bytes()).decode("ascii"))
    fps = 10.0
    try:
        import yaml

        cfg = yaml.safe_load((run / "config.yaml").read_text()) if (run / "config.yaml").is_file() else {}
        fps = float(((cfg or {}).get("output") or {}).get("fps", fps))
    except Exception:  # the fps is cosmetic; a config this cannot read is reported by the pipeline itself
        pass
    return {"title": f"scenescape: {run.name}", "glb": _glb_bytes(mesh, "scene", cams), "frames": frames,
            "fps": fps}


def object_view_data(run: str | Path, max_frames: int | None = None) -> dict[str, Any]:
    """The viewer's data of an object run folder: mesh, the orbit-video cameras (from ``config.yaml``) and
    the video's RGB half as frames."""
    from scenescape.io import read_video
    from scenescape.io.meshes import load_mesh
    from scenescape.pipelines.object.export import orbit_cameras
    from scenescape.pipelines.object.pipeline import ObjectConfig

    run = Path(run)
    if not run.is_dir():
        raise InputError(f"run folder '{run}' does not exist")
    if not (run / "config.yaml").is_file():
        raise InputError(f"'{run}' has no config.yaml; is it an object run folder?")
    cfg = ObjectConfig.load(run / "config.yaml")
    o = cfg.output
    n_cams, size = o.video_frames, o.video_size
    frames = []
    if (run / "video.mp4").is_file():  # the video decides (an --export may have changed frames and size)
        video = read_video(run / "video.mp4")
        n_cams, size = len(video), int(video.shape[1])
        n = len(video) if max_frames is None else min(len(video), max_frames)
        frames = [_png_data_uri(video[i][:, : video.shape[2] // 2]) for i in range(n)]
    cams = orbit_cameras(cfg.camera.eval_radius, cfg.camera.eval_elevation, cfg.camera.eval_fov, size, n_cams)
    mesh = load_mesh(_find_mesh(run), frame="object")
    return {"title": f"scenescape object: {run.name}", "glb": _glb_bytes(mesh, "object", cams), "frames": frames,
            "fps": float(o.video_fps)}


def build_view_html(data: dict[str, Any]) -> str:
    """One self-contained HTML page (viewer script and data inline) of :func:`scene_view_data` output."""
    if not BUNDLE.is_file():
        raise InputError(f"the viewer bundle {BUNDLE} is missing; rebuild it with `npm ci && npm run build` "
                         f"in {BUNDLE.parent.parent}")
    payload = {"title": data.get("title", "scenescape"), "glb": base64.b64encode(data["glb"]).decode("ascii"),
               "frames": list(data.get("frames", [])), "fps": float(data.get("fps", 10.0))}
    js_data = json.dumps(payload).replace("</", "<\\/")
    script = BUNDLE.read_text(encoding="utf-8").replace("</script", "<\\/script")
    title = html.escape(str(payload["title"]))
    return ("<!doctype html>\n<html><head><meta charset=\"utf-8\">\n"
            f"<title>{title}</title>\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            "<style>html,body{margin:0;height:100%;overflow:hidden;background:#202024}canvas{display:block}</style>\n"
            "</head><body>\n"
            f"<script>window.SCENESCAPE_VIEW = {js_data};</script>\n"
            f"<script>{script}</script>\n"
            "</body></html>\n")


def write_view_html(data: dict[str, Any], path: str | Path) -> Path:
    from scenescape.io import atomic_write_text

    atomic_write_text(path, build_view_html(data))
    return Path(path)


def make_server(page: str, host: str = "127.0.0.1", port: int = 8000) -> Any:
    """A ``ThreadingHTTPServer`` serving ``page`` at ``/`` (and ``/index.html``); call ``serve_forever()``."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    body = page.encode("utf-8")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404, "the viewer is at /")
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
            return

    try:
        return ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        raise InputError(f"cannot serve on {host}:{port} ({e}); pass another --port (0 picks a free one)") from e


__all__ = ["BUNDLE", "build_view_html", "make_server", "object_view_data", "scene_view_data", "write_view_html"]
