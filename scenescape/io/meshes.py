"""Mesh files: one save/load function pair per format, registered by suffix (:data:`MESH_FORMATS`).

Every file is in the Z-up world of :mod:`scenescape.io.world`, converted to the axes its readers assume:

| suffix | axes in the file | colours | cameras |
|---|---|---|---|
| ``.ply`` | Z up (Blender's/MeshLab's PLY import, nerfstudio, open3d) | sRGB ``uchar red green blue alpha`` | - |
| ``.obj`` | Y up ``(X, Z, -Y)`` (Blender's OBJ import default) | sRGB ``v x y z r g b`` | - |
| ``.glb`` | Y up ``(X, Z, -Y)`` (glTF 2.0) | linear float ``COLOR_0`` (glTF spec), unlit | glTF camera nodes |

:func:`save_mesh` writes atomically and drops vertices no face uses; :func:`load_mesh` converts back to library
coordinates (``frame`` must match the one written) and sRGB colours. A new format is one
``save(path, data)`` / ``load(path) -> MeshFileData`` pair and one :func:`register_mesh_format` line.
"""

from __future__ import annotations

import io
import json
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from scenescape.errors import InputError
from scenescape.io.files import atomic_path
from scenescape.io.world import (
    GLTF_FROM_WORLD,
    c2w_opengl,
    linear_to_srgb,
    points_from_world,
    points_to_world,
    srgb_to_linear,
    w2c_to_world,
)


@dataclass
class MeshFileData:
    """What a mesh file holds, in the file's own axes.

    ``vertices`` ``(N, 3)`` float32, ``faces`` ``(M, 3)`` int64, ``colors`` ``(N, 3)`` float32 sRGB in [0, 1]
    (or None), ``cameras``: dicts ``{"c2w": (4, 4) camera-to-world with OpenGL camera axes in the file's axes,
    "yfov": radians, "aspect": w/h of the field of view, "extras": {...}}`` (formats without cameras ignore
    them).
    """

    vertices: np.ndarray
    faces: np.ndarray
    colors: np.ndarray | None = None
    cameras: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MeshFormat:
    suffix: str
    up: str  # "z": the file holds the Z-up world; "y": it holds (X, Z, -Y) of it
    save: Callable[[Path, MeshFileData], None]
    load: Callable[[Path], MeshFileData]
    description: str = ""


MESH_FORMATS: dict[str, MeshFormat] = {}


def register_mesh_format(fmt: MeshFormat) -> MeshFormat:
    if not fmt.suffix.startswith(".") or fmt.up not in ("y", "z"):
        raise ValueError(f"mesh format {fmt.suffix!r}: suffix must start with '.', up must be 'y' or 'z'")
    MESH_FORMATS[fmt.suffix.lower()] = fmt
    return fmt


def _format(path: Path) -> MeshFormat:
    fmt = MESH_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError(f"mesh path {str(path)!r} must end in one of {sorted(MESH_FORMATS)}")
    return fmt


# ---------------------------------------------------------------------------------------------- trimesh formats
def _trimesh(data: MeshFileData) -> Any:
    import trimesh

    rgba = None
    if data.colors is not None:
        c = np.clip(np.round(np.asarray(data.colors, np.float64) * 255.0), 0, 255).astype(np.uint8)
        rgba = np.concatenate([c, np.full((c.shape[0], 1), 255, np.uint8)], axis=1)
    return trimesh.Trimesh(vertices=np.asarray(data.vertices, np.float32), faces=data.faces, vertex_colors=rgba,
                           process=False, validate=False)


def _load_trimesh(path: Path, **kwargs: Any) -> MeshFileData:
    import trimesh

    loaded = trimesh.load(str(path), process=False, **kwargs)
    if isinstance(loaded, trimesh.Scene):
        geoms = list(loaded.dump())
        if not geoms:
            raise InputError(f"{path} holds no mesh")
        loaded = trimesh.util.concatenate(geoms)
    v = np.asarray(loaded.vertices, dtype=np.float32)
    colors = None
    vis = getattr(loaded, "visual", None)
    if vis is not None and getattr(vis, "kind", None) == "vertex":
        vc = np.asarray(vis.vertex_colors)
        if vc.ndim == 2 and vc.shape[0] == v.shape[0] and vc.shape[1] >= 3:
            colors = vc[:, :3].astype(np.float32) / (255.0 if vc.dtype == np.uint8 else 1.0)
    return MeshFileData(v, np.asarray(loaded.faces, dtype=np.int64), colors)


def _save_ply(path: Path, data: MeshFileData) -> None:
    path.write_bytes(_trimesh(data).export(file_type="ply", encoding="binary"))


def _load_ply(path: Path) -> MeshFileData:
    return _load_trimesh(path)


def _save_obj(path: Path, data: MeshFileData) -> None:
    from trimesh.exchange.obj import export_obj

    text = export_obj(_trimesh(data), include_normals=False, include_color=data.colors is not None,
                      include_texture=False, digits=9)
    path.write_text(text, encoding="utf-8")


def _load_obj(path: Path) -> MeshFileData:
    return _load_trimesh(path, maintain_order=True)


# ---------------------------------------------------------------------------------------------- glTF binary
_ARRAY_BUFFER, _ELEMENT_ARRAY_BUFFER = 34962, 34963
_FLOAT, _UBYTE, _USHORT, _UINT = 5126, 5121, 5123, 5125
_COMPONENTS = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}
_DTYPES = {5120: np.int8, _UBYTE: np.uint8, 5122: np.int16, _USHORT: np.uint16, _UINT: np.uint32, _FLOAT: np.float32}


def _quaternion_xyzw(r: np.ndarray) -> list[float]:
    """Unit quaternion ``[x, y, z, w]`` of a ``(3, 3)`` rotation (glTF node rotation order)."""
    m = np.asarray(r, dtype=np.float64)
    t = np.trace(m)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, 0.25 * s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) * 2
        q = [0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif m[1, 1] > m[2, 2]:
        s = math.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2]) * 2
        q = [(m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = math.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1]) * 2
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s, (m[1, 0] - m[0, 1]) / s]
    qa = np.asarray(q)
    qa = qa / np.linalg.norm(qa)
    return [float(x) for x in qa]


def _quaternion_matrix(q: Sequence[float]) -> np.ndarray:
    x, y, z, w = (float(a) for a in q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def _save_glb(path: Path, data: MeshFileData) -> None:
    v = np.ascontiguousarray(data.vertices, dtype=np.float32)
    f = np.ascontiguousarray(data.faces, dtype=np.uint32)
    blobs: list[bytes] = []
    views: list[dict[str, Any]] = []
    offset = 0

    def view(arr: np.ndarray, target: int) -> int:
        nonlocal offset
        b = arr.tobytes()
        views.append({"buffer": 0, "byteOffset": offset, "byteLength": len(b), "target": target})
        pad = -len(b) % 4
        blobs.append(b + b"\x00" * pad)
        offset += len(b) + pad
        return len(views) - 1

    accessors: list[dict[str, Any]] = [
        {"bufferView": view(v, _ARRAY_BUFFER), "componentType": _FLOAT, "count": int(v.shape[0]), "type": "VEC3",
         "min": [float(x) for x in v.min(0)], "max": [float(x) for x in v.max(0)]},
    ]
    attributes = {"POSITION": 0}
    if data.colors is not None:
        lin = srgb_to_linear(data.colors).astype(np.float32)  # glTF: COLOR_0 is linear
        accessors.append({"bufferView": view(np.ascontiguousarray(lin), _ARRAY_BUFFER), "componentType": _FLOAT,
                          "count": int(lin.shape[0]), "type": "VEC3"})
        attributes["COLOR_0"] = len(accessors) - 1
    accessors.append({"bufferView": view(f.reshape(-1), _ELEMENT_ARRAY_BUFFER), "componentType": _UINT,
                      "count": int(f.size), "type": "SCALAR"})
    doc: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "scenescape"},
        "extensionsUsed": ["KHR_materials_unlit"],
        "scene": 0,
        "scenes": [{"name": "scene", "nodes": [0]}],
        "nodes": [{"name": "mesh", "mesh": 0}],
        # unlit: the baked vertex colours are shown as they are; double-sided: scenes are seen from inside
        "materials": [{"name": "vertex_colors", "doubleSided": True,
                       "pbrMetallicRoughness": {"baseColorFactor": [1.0, 1.0, 1.0, 1.0], "metallicFactor": 0.0,
                                                "roughnessFactor": 1.0},
                       "extensions": {"KHR_materials_unlit": {}}}],
        "meshes": [{"name": "mesh", "primitives": [{"attributes": attributes, "indices": len(accessors) - 1,
                                                    "material": 0, "mode": 4}]}],
        "accessors": accessors,
        "bufferViews": views,
    }
    if data.cameras:
        extent = float(np.linalg.norm(v.max(0) - v.min(0))) if v.size else 1.0
        doc["cameras"] = []
        for i, cam in enumerate(data.cameras):
            c2w = np.asarray(cam["c2w"], dtype=np.float64)
            doc["cameras"].append({"name": f"camera_{i:04d}", "type": "perspective",
                                   "perspective": {"yfov": float(cam["yfov"]), "aspectRatio": float(cam["aspect"]),
                                                   "znear": max(extent, 1e-6) * 1e-3,
                                                   "zfar": max(extent, 1e-6) * 100.0}})
            doc["nodes"].append({"name": f"camera_{i:04d}", "camera": i,
                                 "translation": [float(x) for x in c2w[:3, 3]],
                                 "rotation": _quaternion_xyzw(c2w[:3, :3]),
                                 "extras": dict(cam.get("extras") or {})})
            doc["scenes"][0]["nodes"].append(len(doc["nodes"]) - 1)
    binary = b"".join(blobs)
    doc["buffers"] = [{"byteLength": len(binary)}]
    js = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    js += b" " * (-len(js) % 4)
    body = struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(binary), 0x004E4942) + binary
    path.write_bytes(struct.pack("<III", 0x46546C67, 2, 12 + len(body)) + body)


def read_glb(path: str | Path) -> tuple[dict[str, Any], bytes]:
    """``(json document, binary chunk)`` of a GLB file."""
    raw = Path(path).read_bytes()
    if len(raw) < 20 or raw[:4] != b"glTF":
        raise InputError(f"{path} is not a binary glTF (.glb) file")
    jlen, jtype = struct.unpack_from("<II", raw, 12)
    if jtype != 0x4E4F534A:
        raise InputError(f"{path}: the first GLB chunk is not JSON")
    doc = json.loads(raw[20:20 + jlen].decode("utf-8"))
    rest = 20 + jlen
    binary = b""
    if rest + 8 <= len(raw):
        blen, _ = struct.unpack_from("<II", raw, rest)
        binary = raw[rest + 8: rest + 8 + blen]
    return doc, binary


def _accessor(doc: dict[str, Any], binary: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    if "sparse" in acc or "bufferView" not in acc:
        raise InputError("GLB accessors without a bufferView (or sparse ones) are not supported")
    bv = doc["bufferViews"][acc["bufferView"]]
    if bv.get("buffer", 0) != 0:
        raise InputError("GLB files with external buffers are not supported")
    dtype = np.dtype(_DTYPES[acc["componentType"]])
    ncomp = _COMPONENTS[acc["type"]]
    start = bv.get("byteOffset", 0) + acc.get("byteOffset", 0)
    stride = bv.get("byteStride") or dtype.itemsize * ncomp
    count = acc["count"]
    rows = np.frombuffer(binary, dtype=np.uint8, count=stride * (count - 1) + dtype.itemsize * ncomp,
                         offset=start) if count else np.zeros(0, np.uint8)
    out = np.lib.stride_tricks.as_strided(rows, shape=(count, dtype.itemsize * ncomp), strides=(stride, 1))
    arr = np.ascontiguousarray(out).view(dtype).reshape(count, ncomp)
    if acc.get("normalized") and dtype != np.float32:
        arr = arr.astype(np.float32) / np.iinfo(dtype).max
    return arr


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return np.asarray(node["matrix"], dtype=np.float64).reshape(4, 4).T  # column-major
    m = np.eye(4)
    m[:3, :3] = _quaternion_matrix(node.get("rotation", [0, 0, 0, 1])) * np.asarray(node.get("scale", [1, 1, 1]))
    m[:3, 3] = node.get("translation", [0, 0, 0])
    return m


def _load_glb(path: Path) -> MeshFileData:
    doc, binary = read_glb(path)
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {"nodes": list(range(len(doc.get("nodes", []))))}
    vs, fs, cs, cams = [], [], [], []
    n = 0
    any_colour = False
    stack = [(i, np.eye(4)) for i in scene.get("nodes", [])]
    while stack:
        i, parent = stack.pop(0)
        node = doc["nodes"][i]
        m = parent @ _node_matrix(node)
        stack.extend((c, m) for c in node.get("children", []))
        if "camera" in node:
            cam = doc["cameras"][node["camera"]]
            p = cam.get("perspective", {})
            cams.append({"c2w": m, "yfov": p.get("yfov"), "aspect": p.get("aspectRatio"),
                         "extras": node.get("extras", {}), "name": node.get("name")})
        if "mesh" not in node:
            continue
        for prim in doc["meshes"][node["mesh"]]["primitives"]:
            if prim.get("mode", 4) != 4:
                continue
            pos = _accessor(doc, binary, prim["attributes"]["POSITION"]).astype(np.float64)
            pos = pos @ m[:3, :3].T + m[:3, 3]
            idx = (_accessor(doc, binary, prim["indices"]).reshape(-1, 3).astype(np.int64) if "indices" in prim
                   else np.arange(pos.shape[0], dtype=np.int64).reshape(-1, 3))
            col = np.full((pos.shape[0], 3), 0.5)
            if "COLOR_0" in prim["attributes"]:
                any_colour = True
                col = linear_to_srgb(_accessor(doc, binary, prim["attributes"]["COLOR_0"])[:, :3])
            vs.append(pos)
            fs.append(idx + n)
            cs.append(col)
            n += pos.shape[0]
    if not vs:
        raise InputError(f"{path} holds no triangle mesh")
    return MeshFileData(np.concatenate(vs).astype(np.float32), np.concatenate(fs),
                        np.concatenate(cs).astype(np.float32) if any_colour else None, cams)


register_mesh_format(MeshFormat(".ply", "z", _save_ply, _load_ply, "binary PLY, sRGB uchar vertex colours"))
register_mesh_format(MeshFormat(".obj", "y", _save_obj, _load_obj, "OBJ with 'v x y z r g b' sRGB colours"))
register_mesh_format(MeshFormat(".glb", "y", _save_glb, _load_glb, "glTF 2.0 binary, linear COLOR_0, cameras"))


# ---------------------------------------------------------------------------------------------- public API
def _file_axes(fmt: MeshFormat) -> np.ndarray:
    return GLTF_FROM_WORLD if fmt.up == "y" else np.eye(3)


def camera_entries(cameras: Sequence[Any], frame: Any = "scene", axes: np.ndarray | None = None) -> list[dict[str, Any]]:
    """glTF-style camera dicts (see :class:`MeshFileData`) of library cameras, in ``axes @ world``."""
    a = np.eye(4)
    a[:3, :3] = np.eye(3) if axes is None else axes
    out = []
    for i, cam in enumerate(cameras):
        w2c = w2c_to_world(cam.world_to_camera.double().cpu().numpy(), frame)
        yfov = 2.0 * math.atan(0.5 * cam.height / cam.fy)
        aspect = (cam.width / cam.fx) / (cam.height / cam.fy)
        out.append({"c2w": a @ c2w_opengl(w2c), "yfov": yfov, "aspect": aspect,
                    "extras": {"frame": i, "fx": float(cam.fx), "fy": float(cam.fy), "cx": float(cam.cx),
                               "cy": float(cam.cy), "width": int(cam.width), "height": int(cam.height)}})
    return out


def save_mesh(mesh: Any, path: str | Path, frame: Any = "scene", cameras: Sequence[Any] | None = None) -> Path:
    """Write ``mesh`` (a :class:`~scenescape.geometry.mesh.SceneMesh`) to ``path`` by suffix, atomically.

    Args:
        mesh: the mesh, in library coordinates of ``frame``.
        path: ``.ply``, ``.obj`` or ``.glb`` (see :data:`MESH_FORMATS`).
        frame: ``"scene"`` (OpenCV world of the first camera), ``"object"``, ``"world"`` or a 3x3 rotation
            (see :mod:`scenescape.io.world`).
        cameras: library cameras to embed where the format can (glTF camera nodes).
    """
    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _save_npz(mesh, path)
    fmt = _format(path)
    if mesh.num_faces == 0:
        raise InputError("cannot export an empty mesh (no faces)")
    v = mesh.vertices.detach().cpu().double().numpy()
    f = mesh.faces.detach().cpu().numpy().astype(np.int64)
    c = mesh.colors.detach().cpu().double().numpy()
    used = np.unique(f)  # vertices no face uses are dropped (viewers and validators flag them)
    if used.size < v.shape[0]:
        remap = np.full(v.shape[0], -1, np.int64)
        remap[used] = np.arange(used.size)
        v, c, f = v[used], c[used], remap[f]
    axes = _file_axes(fmt)
    vf = (points_to_world(v, frame) @ axes.T).astype(np.float32)
    data = MeshFileData(vf, f, c.astype(np.float32),
                        camera_entries(cameras, frame, axes) if cameras else [])
    with atomic_path(path) as tmp:
        fmt.save(tmp, data)
    return path


def _save_npz(mesh: Any, path: Path) -> Path:
    """Exact checkpoint in library coordinates (float32 vertices/colours, int64 faces), atomic, no pickle."""
    buf = io.BytesIO()
    np.savez(buf, format=np.array("scenescape.SceneMesh/1"),
             vertices=mesh.vertices.detach().cpu().numpy(), faces=mesh.faces.detach().cpu().numpy(),
             colors=mesh.colors.detach().cpu().numpy())
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.getvalue())
    return path


def _load_npz(path: Path, device: Any = None) -> Any:
    import torch

    from scenescape.geometry.mesh import SceneMesh

    if not path.exists():
        raise InputError(f"mesh checkpoint not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("vertices", "faces", "colors") if k not in z.files]
            if missing:
                raise InputError(f"{path} is not a SceneMesh checkpoint (missing {missing})")
            v, f, c = z["vertices"], z["faces"], z["colors"]
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"cannot read mesh checkpoint '{path}' ({type(e).__name__}: {e})") from e
    return SceneMesh(torch.from_numpy(v), torch.from_numpy(f), torch.from_numpy(c), device=device or "cpu")


def read_mesh_file(path: str | Path) -> tuple[MeshFileData, MeshFormat]:
    """The raw content of a mesh file (file axes, sRGB colours) and its format."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"mesh file not found: {path}")
    fmt = _format(path)
    try:
        return fmt.load(path), fmt
    except InputError:
        raise
    except (ValueError, KeyError, IndexError, EOFError, struct.error, UnicodeDecodeError) as e:
        raise InputError(f"cannot read mesh file '{path}' as {fmt.suffix} ({type(e).__name__}: {e}); "
                         "is it truncated or another format?") from e


def load_mesh(path: str | Path, frame: Any = "scene", device: Any = None) -> Any:
    """Read a mesh file (or a ``.npz`` checkpoint) into a :class:`~scenescape.geometry.mesh.SceneMesh` in
    library coordinates of ``frame`` (the frame it was written with). Colours default to grey."""
    import torch

    from scenescape.geometry.mesh import SceneMesh

    path = Path(path)
    if path.suffix.lower() == ".npz":
        return _load_npz(path, device)
    data, fmt = read_mesh_file(path)
    v = points_from_world(np.asarray(data.vertices, np.float64) @ _file_axes(fmt), frame).astype(np.float32)
    colors = None if data.colors is None else torch.from_numpy(np.asarray(data.colors, np.float32))
    return SceneMesh(torch.from_numpy(v), torch.from_numpy(np.asarray(data.faces, np.int64)), colors,
                     device=device or "cpu")


def to_trimesh(mesh: Any, frame: Any = None) -> Any:
    """``trimesh.Trimesh`` (no processing, vertex order kept) with RGBA uint8 sRGB vertex colours; library
    coordinates, or the Z-up file world of ``frame`` when given."""
    v = mesh.vertices.detach().cpu().double().numpy()
    if frame is not None:
        v = points_to_world(v, frame)
    return _trimesh(MeshFileData(v.astype(np.float32), mesh.faces.detach().cpu().numpy(),
                                 mesh.colors.detach().cpu().numpy()))


__all__ = ["MESH_FORMATS", "MeshFileData", "MeshFormat", "camera_entries", "load_mesh", "read_glb",
           "read_mesh_file", "register_mesh_format", "save_mesh", "to_trimesh"]
