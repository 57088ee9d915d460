"""Open a run's outputs in the tools users open them with, and record what they show (run by hand).

    python benchmarks/interop.py [--run RUN] [--object-run RUN] [--blender-python PY] [--nerfstudio-python PY]

* gltf-validator (npm ``gltf-validator``, installed under benchmarks/out/npm if missing) on the scene GLB and
  an object GLB: errors / warnings / infos / hints.
* Blender as the ``bpy`` module (``--blender-python``: a Python with ``pip install bpy``, kept in its own venv):
  ``mesh.glb`` and ``mesh.ply`` imported with default settings; upright (the first camera's up is +Z), the two
  coinciding (bounding boxes), colours shown (PSNR of a Workbench render at the first camera against frame 0,
  for the GLB and the PLY).
* nerfstudio's dataparser on the run folder (``--nerfstudio-python``: a Python with nerfstudio installed); if
  none is given, its conventions are reproduced here (see ``_nerfstudio_reproduced``): points of the PLY in
  front of the cameras, depth scale against the PLY.
* headless Chromium: a screenshot of ``scenescape view`` (benchmarks/out/interop/view.png) and the page's status.

Appends a section to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "interop"

VALIDATOR_JS = r"""
const v = require('gltf-validator'); const fs = require('fs');
const data = new Uint8Array(fs.readFileSync(process.argv[2]));
v.validateBytes(data).then(r => console.log(JSON.stringify({version: v.version(), errors: r.issues.numErrors,
  warnings: r.issues.numWarnings, infos: r.issues.numInfos, hints: r.issues.numHints,
  messages: r.issues.messages.map(m => m.code + ' ' + m.message + ' ' + (m.pointer || ''))})));
"""

BLENDER_SCRIPT = r"""
import json, sys
import bpy
import numpy as np

run, out_dir = sys.argv[1], sys.argv[2]
res = {"blender": bpy.app.version_string}
bpy.ops.wm.read_factory_settings(use_empty=True)
bpy.ops.import_scene.gltf(filepath=run + "/mesh.glb")
glb_objs = [o for o in bpy.context.scene.objects if o.type == "MESH"]
cams = sorted([o for o in bpy.context.scene.objects if o.type == "CAMERA"], key=lambda o: o.name)
bpy.ops.wm.ply_import(filepath=run + "/mesh.ply")
ply_objs = [o for o in bpy.context.scene.objects if o.type == "MESH" and o not in glb_objs]
def world_verts(o):
    m = np.array(o.matrix_world)
    v = np.array([p.co[:] for p in o.data.vertices])
    return v @ m[:3, :3].T + m[:3, 3]
g, p = world_verts(glb_objs[0]), world_verts(ply_objs[0])
res["vertices"] = [len(g), len(p)]
res["max_vertex_distance_glb_vs_ply"] = float(np.abs(g - p).max()) if g.shape == p.shape else None
res["bbox_glb"] = [g.min(0).round(4).tolist(), g.max(0).round(4).tolist()]
res["bbox_ply"] = [p.min(0).round(4).tolist(), p.max(0).round(4).tolist()]
res["cameras_imported"] = len(cams)
cam0 = cams[0]
up = np.array(cam0.matrix_world)[:3, 1]  # a Blender camera's local +Y is its up
res["first_camera_up_in_blender"] = up.round(4).tolist()
res["color_attributes"] = {"glb": [a.name + ":" + a.data_type for a in glb_objs[0].data.color_attributes],
                           "ply": [a.name + ":" + a.data_type for a in ply_objs[0].data.color_attributes]}
scene = bpy.context.scene
scene.camera = cam0
scene.render.engine = "BLENDER_WORKBENCH"
scene.display.shading.light = "FLAT"
scene.display.shading.color_type = "VERTEX"
try:
    scene.view_settings.view_transform = "Standard"
except TypeError:
    pass
scene.display_settings.display_device = "sRGB"
w, h = int(sys.argv[3]), int(sys.argv[4])
scene.render.resolution_x, scene.render.resolution_y, scene.render.resolution_percentage = w, h, 100
scene.render.image_settings.file_format = "PNG"
for name, show in (("glb", glb_objs), ("ply", ply_objs)):
    for o in glb_objs + ply_objs:
        o.hide_render = o not in show
    scene.render.filepath = out_dir + f"/blender_{name}.png"
    bpy.ops.render.render(write_still=True)
print("RESULT " + json.dumps(res))
"""

NERFSTUDIO_SCRIPT = r"""
import json, sys
from pathlib import Path
import numpy as np
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.data.utils.data_utils import get_depth_image_from_path
run = Path(sys.argv[1])
cfg = NerfstudioDataParserConfig(data=run, load_3D_points=True)
parser = cfg.setup()
out = parser.get_dataparser_outputs(split="train")
pts = out.metadata["points3D_xyz"].numpy()
c2w = out.cameras.camera_to_worlds.numpy()
front = np.zeros(len(pts), bool)
for m in c2w:
    front |= ((pts - m[:3, 3]) @ m[:3, :3])[:, 2] < 0
scale = out.dataparser_scale * out.metadata["depth_unit_scale_factor"]
d = get_depth_image_from_path(out.metadata["depth_filenames"][0], int(out.cameras.height[0]),
                              int(out.cameras.width[0]), scale).numpy()[..., 0]
d_file = np.load(run / "depth" / "0000.npy")  # scenescape's own depth, scene units
print("RESULT " + json.dumps({"points_in_front": float(front.mean()), "dataparser_scale": float(out.dataparser_scale),
                             "depth0_median_read_by_nerfstudio_over_scene_depth":
                                 float(np.median(d)) / float(out.dataparser_scale) / float(np.median(d_file))}))
"""


def _sh(cmd, **kw):
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)


def make_scene_run(path: Path, frames: int, size: int) -> Path:
    if (path / "transforms.json").is_file():
        return path
    r = _sh([sys.executable, "-m", "scenescape", "demo", "--frames", frames, "--size", size, "--out", path,
             "--quiet", "--overwrite"], cwd=ROOT)
    if r.returncode != 0:
        raise SystemExit(r.stdout + r.stderr)
    return path


def make_object_glb(path: Path) -> Path:
    """An object GLB as object mode exports it (frame "object", orbit cameras), from the analytic test object."""
    from scenescape.fields.nerf import AnalyticField
    from scenescape.io.meshes import save_mesh
    from scenescape.pipelines.object.export import extract_mesh, orbit_cameras

    mesh = extract_mesh(AnalyticField(), resolution=64)
    return save_mesh(mesh, path, frame="object", cameras=orbit_cameras(2.0, 15.0, 40.0, 128, 12))


def validator(glbs: list[Path]) -> dict[str, dict]:
    npm = ROOT / "benchmarks" / "out" / "npm"
    if not (npm / "node_modules" / "gltf-validator").is_dir():
        r = _sh(["npm", "install", "--prefix", npm, "--no-audit", "--no-fund", "gltf-validator"])
        if r.returncode != 0:
            return {str(g): {"error": "npm install gltf-validator failed: " + r.stderr[-300:]} for g in glbs}
    script = npm / "validate.js"
    script.write_text(VALIDATOR_JS)
    out = {}
    for g in glbs:
        r = _sh(["node", script, g], cwd=npm)
        out[str(g)] = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(1.0 / max(mse, 1e-12))


def blender(run: Path, py: str | None) -> dict:
    if not py:
        return {"skipped": "no --blender-python given (pip install bpy into its own venv)"}
    from scenescape.io import load_image

    script = OUT / "blender_check.py"
    script.write_text(BLENDER_SCRIPT)
    frame0 = load_image(run / "frames" / "0000.png")
    h, w = frame0.shape[:2]
    t = time.time()
    r = _sh([py, script, run, OUT, w, h], timeout=900)
    m = re.search(r"^RESULT (.*)$", r.stdout, re.M)
    if not m:
        return {"error": (r.stdout + r.stderr)[-1500:]}
    res = json.loads(m.group(1))
    for name in ("glb", "ply"):
        img = load_image(OUT / f"blender_{name}.png")
        res[f"psnr_workbench_{name}_vs_frame0_db"] = round(psnr(img, frame0), 2)
    res["seconds"] = round(time.time() - t, 1)
    return res


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    v, c = np.cross(a, b), float(a @ b)
    if np.linalg.norm(v) < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + k + k @ k * (1 / (1 + c))


def _nerfstudio_reproduced(run: Path) -> dict:
    """nerfstudio 1.1.5's dataparser conventions, reproduced (when nerfstudio is not installed):
    nerfstudio_dataparser.py ``_generate_dataparser_outputs``: poses = transform_matrix per frame,
    ``auto_orient_and_center_poses(poses, method="up", center_method="poses")`` (camera_utils.py: up = mean of
    the poses' y axes rotated onto +Z, origin = mean camera centre), ``scale_factor = 1 / max|t|``; the PLY
    (``ply_file_path``, read with open3d) gets the same transform and scale (``_load_3D_points``); depth files
    are ``np.load(f) * depth_unit_scale_factor (1e-3) * dataparser_scale`` (data_utils.get_depth_image_from_path,
    datasets/depth_dataset.py)."""
    import open3d as o3d

    meta = json.loads((run / "transforms.json").read_text())
    poses = np.stack([np.asarray(f["transform_matrix"], np.float64) for f in meta["frames"]])
    up = poses[:, :3, 1].mean(0)
    rot = _rotation_between(up, np.array([0.0, 0.0, 1.0]))
    origin = poses[:, :3, 3].mean(0)
    tf = np.eye(4)
    tf[:3, :3], tf[:3, 3] = rot, -rot @ origin
    poses = tf @ poses
    scale = 1.0 / float(np.abs(poses[:, :3, 3]).max())
    poses[:, :3, 3] *= scale
    pts = np.asarray(o3d.io.read_point_cloud(str(run / meta["ply_file_path"])).points)
    pts = (pts @ tf[:3, :3].T + tf[:3, 3]) * scale
    front = np.zeros(len(pts), bool)
    ratios = []
    for k, m in enumerate(poses):
        cam = (pts - m[:3, 3]) @ m[:3, :3]  # OpenGL camera axes: in front is -z
        front |= cam[:, 2] < 0
        fr = meta["frames"][k]
        depth = np.load(run / fr["depth_file_path"]) * 1e-3 * scale
        z = -cam[:, 2]
        ok = z > 0
        u = fr["fl_x"] * cam[ok, 0] / z[ok] + fr["cx"]
        v = -fr["fl_y"] * cam[ok, 1] / z[ok] + fr["cy"]
        inside = (u >= 0) & (u < fr["w"]) & (v >= 0) & (v < fr["h"])
        ui, vi, zz = u[inside].astype(int), v[inside].astype(int), z[ok][inside]
        zmin = np.full((fr["h"], fr["w"]), np.inf)
        np.minimum.at(zmin, (vi, ui), zz)
        seen = np.isfinite(zmin)
        ratios.append(float(np.median(depth[seen] / zmin[seen])))
    return {"reproduced": True, "points_in_front_of_some_camera": round(float(front.mean()), 4),
            "dataparser_scale": round(scale, 5),
            "median_depth_over_ply_z_per_frame": [round(r, 4) for r in ratios]}


def nerfstudio(run: Path, py: str | None) -> dict:
    if py:
        script = OUT / "nerfstudio_check.py"
        script.write_text(NERFSTUDIO_SCRIPT)
        r = _sh([py, script, run], timeout=900)
        m = re.search(r"^RESULT (.*)$", r.stdout, re.M)
        res = json.loads(m.group(1)) if m else {"error": (r.stdout + r.stderr)[-1500:]}
        return {"nerfstudio": res, "reproduced": _nerfstudio_reproduced(run)}
    return {"reproduced": _nerfstudio_reproduced(run)}


def chromium_view(run: Path, object_run: Path | None) -> dict:
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if not exe:
        return {"skipped": "no chromium (apt-get install -y chromium)"}
    res = {}
    targets = [("scene", ["view", run]), *([("object", ["view", "--object", object_run])] if object_run else [])]
    for name, args in targets:
        page = OUT / f"view_{name}.html"
        r = _sh([sys.executable, "-m", "scenescape", *args, "--html", page], cwd=ROOT)
        if r.returncode != 0:
            res[name] = {"error": r.stderr[-500:]}
            continue
        flags = ["--headless", "--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
                 "--window-size=1024,768", "--virtual-time-budget=15000"]
        shot = OUT / f"view_{name}.png"
        _sh([exe, *flags, f"--screenshot={shot}", page.as_uri()], timeout=180)
        dom = _sh([exe, *flags, "--dump-dom", page.as_uri()], timeout=180).stdout
        m = re.search(r'<div id="status"([^>]*)>([^<]*)', dom)
        res[name] = {"screenshot": str(shot.relative_to(ROOT)), "page_bytes": page.stat().st_size,
                     "status": dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', m.group(1))) if m else None,
                     "text": m.group(2) if m else None}
    return res


def raycast_coverage(run: Path) -> dict:
    """open3d ray casting of ``mesh.ply`` at every camera of ``cameras.json`` (read as documented: OpenCV
    camera axes in the run's Z-up world, pixel centres at +0.5): coverage and PSNR against the frames."""
    import open3d as o3d

    from scenescape.io import load_image

    data = json.loads((run / "cameras.json").read_text())
    mesh = o3d.io.read_triangle_mesh(str(run / "mesh.ply"))
    v, f = np.asarray(mesh.vertices, np.float32), np.asarray(mesh.triangles, np.uint32)
    col = np.asarray(mesh.vertex_colors, np.float64)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor(v), o3d.core.Tensor(f))
    cov, ps = [], []
    for k, cam in enumerate(data["cameras"]):
        w2c = np.asarray(cam["world_to_camera"], np.float64)
        r, tv = w2c[:3, :3], w2c[:3, 3]
        w, h = int(cam["width"]), int(cam["height"])
        ys, xs = np.meshgrid(np.arange(h) + 0.5, np.arange(w) + 0.5, indexing="ij")
        d = np.stack([(xs - cam["cx"]) / cam["fx"], (ys - cam["cy"]) / cam["fy"], np.ones_like(xs)], -1)
        d = d.reshape(-1, 3) @ r
        o = np.broadcast_to(-r.T @ tv, d.shape)
        ans = scene.cast_rays(o3d.core.Tensor(np.concatenate([o, d], 1).astype(np.float32)))
        hit = np.isfinite(ans["t_hit"].numpy())
        prim = ans["primitive_ids"].numpy().astype(np.int64)[hit]
        uv = ans["primitive_uvs"].numpy().astype(np.float64)[hit]
        tri = f[prim].astype(np.int64)
        c = (1 - uv[:, :1] - uv[:, 1:]) * col[tri[:, 0]] + uv[:, :1] * col[tri[:, 1]] + uv[:, 1:] * col[tri[:, 2]]
        frame = load_image(run / "frames" / f"{k:04d}.png").reshape(-1, 3)[hit]
        cov.append(float(hit.mean()))
        ps.append(psnr(c, frame))
    worst = int(np.argmin(cov))
    return {"cameras": len(cov), "coverage_min": round(min(cov), 4), "coverage_min_camera": worst,
            "coverage_median": round(float(np.median(cov)), 4), "psnr_min_db": round(min(ps), 2),
            "psnr_median_db": round(float(np.median(ps)), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", type=Path, default=None, help="scene run folder (default: a fresh demo run)")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--object-run", type=Path, default=None, help="object run folder for `view --object`")
    ap.add_argument("--blender-python", default=None)
    ap.add_argument("--nerfstudio-python", default=None)
    ap.add_argument("--no-results", action="store_true", help="do not append to RESULTS.md")
    ap.add_argument("--only-raycast", action="store_true",
                    help="only the open3d ray-cast coverage / PSNR at every camera (no npm, Blender, nerfstudio)")
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    run = a.run or make_scene_run(OUT / "demo", a.frames, a.size)
    t = time.time()
    if a.only_raycast:
        report = {"raycast": raycast_coverage(run), "seconds": round(time.time() - t, 1)}
        print(json.dumps(report, indent=2))
        if not a.no_results:
            when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
            with open(ROOT / "benchmarks" / "RESULTS.md", "a") as fh:
                fh.write(f"\n## Interop: open3d ray casting at every camera of cameras.json ({when})\n\n"
                         f"`python benchmarks/interop.py --only-raycast --frames {a.frames} --size {a.size}` on "
                         f"{platform.machine()} {platform.system()} (run `{run.name}`): mesh.ply read by open3d, "
                         "rays through pixel centres as cameras.json documents. "
                         + json.dumps(report["raycast"]) + "\n")
        return
    object_glb = (a.object_run / "mesh.glb") if a.object_run and (a.object_run / "mesh.glb").is_file() \
        else make_object_glb(OUT / "object.glb")
    report = {
        "raycast": raycast_coverage(run),
        "validator": validator([run / "mesh.glb", object_glb]),
        "blender": blender(run, a.blender_python),
        "nerfstudio": nerfstudio(run, a.nerfstudio_python),
        "chromium": chromium_view(run, a.object_run),
    }
    report["seconds"] = round(time.time() - t, 1)
    (OUT / "interop.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    if a.no_results:
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    lines = [f"\n## Interop: validator, Blender, nerfstudio, Chromium ({when})\n",
             f"`python benchmarks/interop.py` on {platform.machine()} {platform.system()}, run `{run.name}` "
             f"({a.frames} frames, {a.size}x{a.size} demo unless --run). Full output: benchmarks/out/interop/"
             "interop.json.\n"]
    for g, v in report["validator"].items():
        lines.append(f"- gltf-validator {v.get('version', '?')} on `{Path(g).name}` ({Path(g).parent.name}): "
                     f"{v.get('errors')} errors, {v.get('warnings')} warnings, {v.get('infos')} infos, "
                     f"{v.get('hints')} hints" + (f" ({v['error']})" if "error" in v else ""))
    lines.append("- open3d ray casting at every camera: " + json.dumps(report["raycast"]))
    lines.append("- Blender: " + json.dumps(report["blender"]))
    lines.append("- nerfstudio: " + json.dumps(report["nerfstudio"]))
    lines.append("- Chromium `scenescape view`: " + json.dumps(report["chromium"]))
    with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
        f.write("\n".join(textwrap.fill(x, 110, subsequent_indent="  ") if x.startswith("- ") else x
                          for x in lines) + "\n")


if __name__ == "__main__":
    main()
