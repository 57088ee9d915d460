"""Mesh files (scenescape.io.meshes): world frames, colour encodings, glTF structure, the format registry."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import torch

from scenescape.geometry.camera import Camera
from scenescape.geometry.mesh import SceneMesh
from scenescape.io.meshes import (
    MESH_FORMATS,
    MeshFileData,
    MeshFormat,
    load_mesh,
    register_mesh_format,
    save_mesh,
)
from scenescape.io.world import linear_to_srgb, srgb_to_linear


def _glb_json(path):
    raw = path.read_bytes()
    (n,) = struct.unpack_from("<I", raw, 12)
    return json.loads(raw[20:20 + n])


def _analytic_object_mesh():
    from scenescape.fields.nerf import AnalyticField
    from scenescape.pipelines.object.export import extract_mesh

    return extract_mesh(AnalyticField(), resolution=40)


def test_exported_objects_face_plus_z_in_gltf_and_stand_up_in_ply(tmp_path):
    import trimesh

    from scenescape.pipelines.object.export import orbit_cameras

    mesh = _analytic_object_mesh()  # its small red sphere is on the front (+z) and top (-y) of the object frame
    cams = orbit_cameras(2.0, 0.0, 40.0, 32, 4)  # azimuths -180, -90, 0, 90: the third is in front
    glb = save_mesh(mesh, tmp_path / "o.glb", frame="object", cameras=cams)
    ply = save_mesh(mesh, tmp_path / "o.ply", frame="object")
    scene = trimesh.load(str(glb), process=False)
    (g,) = scene.geometry.values()
    red = np.asarray(g.visual.vertex_attributes["color"])[:, 0] > 0.5
    red &= np.asarray(g.visual.vertex_attributes["color"])[:, 2] < 0.2
    assert red.sum() > 10
    front_top = np.asarray(g.vertices)[red].mean(0)
    assert front_top[2] > 0.1 and front_top[1] > 0.1  # glTF: front +Z, up +Y
    doc = _glb_json(glb)
    cam_nodes = [n for n in doc["nodes"] if "camera" in n]
    assert len(cam_nodes) == 4 and cam_nodes[2]["translation"][2] > 1.9  # the azimuth-0 camera is on +Z
    p = trimesh.load(str(ply), process=False)
    pc = np.asarray(p.visual.vertex_colors)
    vp = np.asarray(p.vertices)[(pc[:, 0] > 186) & (pc[:, 2] < 124)]  # the same red vertices (sRGB bytes)
    assert vp[:, 2].mean() > 0.1 and vp[:, 1].mean() < -0.1  # PLY (Blender): up +Z, front -Y
    back = load_mesh(glb, frame="object")
    assert torch.allclose(back.vertices, mesh.vertices, atol=1e-5)


def test_glb_is_clean_gltf_with_linear_colours_and_targets(tmp_path):
    cam = Camera(20, 20, 8, 8, 16, 16)
    colours = torch.rand(16, 16, 3)
    mesh = SceneMesh.from_rgbd(colours, torch.rand(16, 16) + 2, cam)
    extra = SceneMesh(mesh.vertices, mesh.faces, mesh.colors)
    extra.append(torch.zeros(1, 3), torch.zeros(0, 3, dtype=torch.int64), torch.zeros(1, 3))  # unreferenced
    path = save_mesh(extra, tmp_path / "m.glb", cameras=[cam])
    doc = _glb_json(path)
    assert all("target" in bv for bv in doc["bufferViews"])
    prim = doc["meshes"][0]["primitives"][0]
    assert doc["accessors"][prim["attributes"]["POSITION"]]["count"] == mesh.num_vertices  # unused one dropped
    color = doc["accessors"][prim["attributes"]["COLOR_0"]]
    assert color["componentType"] == 5126 and color["type"] == "VEC3"
    assert doc["materials"][0]["extensions"] == {"KHR_materials_unlit": {}}
    (c,) = doc["cameras"]
    assert abs(c["perspective"]["yfov"] - 2 * np.arctan(8 / 20)) < 1e-9
    back = load_mesh(path)
    assert float((back.colors - mesh.colors).abs().max()) < 1e-5  # sRGB -> linear -> sRGB keeps them


def test_srgb_linear_pair_matches_the_standard():
    x = np.linspace(0, 1, 1001)
    assert np.allclose(linear_to_srgb(srgb_to_linear(x)), x, atol=1e-12)
    assert abs(srgb_to_linear(0.5) - 0.21404114) < 1e-7  # IEC 61966-2-1
    assert srgb_to_linear(0.04045) == pytest.approx(0.04045 / 12.92)


def test_a_new_format_is_one_function_pair_and_one_registration(tmp_path):
    def save_xyz(path, data: MeshFileData):
        np.savez(open(path, "wb"), v=data.vertices, f=data.faces, c=data.colors)

    def load_xyz(path):
        with np.load(path) as z:
            return MeshFileData(z["v"], z["f"], z["c"])

    register_mesh_format(MeshFormat(".xyzmesh", "z", save_xyz, load_xyz))
    try:
        mesh = SceneMesh.from_rgbd(torch.rand(8, 8, 3), torch.rand(8, 8) + 1, Camera(10, 10, 4, 4, 8, 8))
        back = load_mesh(save_mesh(mesh, tmp_path / "a.xyzmesh"))
        assert torch.allclose(back.vertices, mesh.vertices, atol=1e-6) and torch.equal(back.faces, mesh.faces)
    finally:
        MESH_FORMATS.pop(".xyzmesh")
    with pytest.raises(ValueError, match="must end in one of"):
        save_mesh(mesh, tmp_path / "a.stl")
