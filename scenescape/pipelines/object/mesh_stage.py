"""Magic3D stage 2: refine a DMTet mesh extracted from the stage-1 NeRF with SDS at high resolution.

Pure torch, no compiled extension:

* geometry: :class:`scenescape.fields.dmtet.DMTetGeometry` -- SDF and deformation per vertex of a
  tetrahedral grid made here, initialised from the stage-1 density (the zero level set starts at the
  stage-1 mesh's iso-level); marching tetrahedra gives a differentiable mesh every step;
* appearance: a copy of the stage-1 NeRF field, queried at the surface points for its albedo (the
  colour field keeps training); the background model is carried over too;
* rendering: :mod:`scenescape.geometry.diffrender` -- z-buffer visibility from the project's rasteriser,
  differentiable barycentrics, analytic silhouette antialiasing; albedo / lambertian / textureless
  shading with interpolated vertex normals and the stage-1 light distribution;
* loss: the configured guidance (SDS at ``mesh.resolution`` -- 512x512 in SD's latent space on the
  GPU preset) + ``mesh.normal_consistency`` x mean(1 - cos) of adjacent face normals.

Files in the run folder: ``mesh_checkpoint.pt`` (SDF, deformation, colour field, background, optimiser,
generator, step; ``torch.load(weights_only=True)``), ``validation/mesh_step_XXXXXX.png`` and the refined
mesh ``refined.{glb,obj,ply}`` with vertex colours. Step numbers continue after stage 1 (the first
stage-2 step is ``config.steps``), so ``stop_after``/resume count both stages together.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F  # noqa: N812

from scenescape.config import to_dict
from scenescape.errors import RunError
from scenescape.fields.dmtet import DMTetGeometry
from scenescape.fields.nerf import Background, NeRFField
from scenescape.fields.volume import camera_ray_bundle
from scenescape.geometry.camera import Camera
from scenescape.geometry.diffrender import antialias, rasterize_diff, vertex_normals
from scenescape.geometry.mesh import SceneMesh
from scenescape.geometry.tetra import edge_face_pairs
from scenescape.io import atomic_path, save_image

MESH_CHECKPOINT = "mesh_checkpoint.pt"
MESH_FORMAT = "scenescape-object-mesh-v1"


@dataclasses.dataclass
class MeshRender:
    """``rgb (B, H, W, 3)``, ``opacity (B, H, W)`` (antialiased coverage)."""

    rgb: torch.Tensor
    opacity: torch.Tensor


def _pixel_values(attr: torch.Tensor, frags: Any) -> torch.Tensor:
    fv = frags.faces.index_select(0, frags.face_index.reshape(-1).index_select(0, frags.pix))
    a = attr.index_select(0, fv.reshape(-1)).view(-1, 3, attr.shape[1])
    return (frags.bary[..., None] * a).sum(1)


def render_mesh_views(verts: torch.Tensor, faces: torch.Tensor, color_field: NeRFField, background: Background,
                      cameras: list[Camera], *, shading: str = "albedo", lights: torch.Tensor | None = None,
                      ambient: float = 0.1, bg_colors: torch.Tensor | None = None) -> MeshRender:
    """Differentiable renders of the mesh ``verts (N, 3)``, ``faces (M, 3)`` (world, OpenCV) coloured by
    ``color_field``'s albedo at the surface points; ``lights (B, 3)`` positions, ``bg_colors (B, 3)``."""
    dev = verts.device
    vn = vertex_normals(verts, faces) if shading != "albedo" else None
    rgbs, ops = [], []
    for i, cam in enumerate(cameras):
        h, w = cam.height, cam.width
        _, dirs, _ = camera_ray_bundle(cam, device=dev)
        bgc = None if bg_colors is None else bg_colors[i].to(dev).expand(h * w, 3)
        img = background(dirs, bgc).reshape(h * w, 3)
        alpha = torch.zeros(h * w, 1, device=dev)
        if faces.shape[0]:
            fr = rasterize_diff(verts, faces, cam)
            pos = _pixel_values(verts, fr)
            _, albedo = color_field(pos)
            color = albedo
            if vn is not None:
                n = F.normalize(_pixel_values(vn, fr), dim=-1, eps=1e-8)
                light = (cam.center if lights is None else lights[i]).to(dev)
                diffuse = (n * F.normalize(light[None] - pos, dim=-1)).sum(-1, keepdim=True).clamp(min=0)
                shade = ambient + (1 - ambient) * diffuse
                color = albedo * shade if shading == "lambertian" else shade.expand(-1, 3)
            img = img.index_put((fr.pix,), color)
            alpha = alpha.index_put((fr.pix,), torch.ones(fr.pix.numel(), 1, device=dev))
            both = antialias(torch.cat([img, alpha], 1).view(h, w, 4), fr).view(h * w, 4)
            img, alpha = both[:, :3], both[:, 3:]
        rgbs.append(img.view(h, w, 3))
        ops.append(alpha.view(h, w))
    return MeshRender(torch.stack(rgbs), torch.stack(ops))


def normal_consistency(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - cos`` between the normals of faces sharing an edge."""
    if faces.shape[0] < 2:
        return verts.sum() * 0
    p = verts[faces]
    fn = F.normalize(torch.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0], dim=-1), dim=-1, eps=1e-12)
    pairs = edge_face_pairs(faces)
    if pairs.shape[0] == 0:
        return verts.sum() * 0
    return (1 - (fn[pairs[:, 0]] * fn[pairs[:, 1]]).sum(-1)).mean()


class MeshStage:
    """Stage-2 state and step for an :class:`~scenescape.pipelines.object.pipeline.ObjectPipeline`."""

    def __init__(self, pipe: Any, fld: NeRFField, bg: Background):
        cfg = pipe.config
        self.pipe = pipe
        self.cfg = cfg
        m = cfg.mesh
        self.geometry = DMTetGeometry(m.tet_resolution, cfg.nerf.bound, m.max_deform).to(pipe.device)
        self.color = copy.deepcopy(fld).to(pipe.device)
        self.background = copy.deepcopy(bg).to(pipe.device)
        groups = [{"params": [self.geometry.sdf], "lr": m.lr_sdf, "base_lr": m.lr_sdf},
                  {"params": [self.geometry.deform], "lr": m.lr_deform, "base_lr": m.lr_deform},
                  {"params": list(self.color.parameters()), "lr": m.lr_color, "base_lr": m.lr_color}]
        bgp = list(self.background.parameters())
        if bgp:
            groups.append({"params": bgp, "lr": cfg.optim.lr_background, "base_lr": cfg.optim.lr_background})
        self.opt = torch.optim.Adam(groups, betas=cfg.optim.betas, eps=cfg.optim.eps)
        self._stage1 = fld
        self.seconds = 0.0

    def init_geometry(self) -> float:
        """Initialise the SDF from the stage-1 density (see :class:`MeshStageConfig.threshold`); returns the
        iso-level used."""
        from scenescape.pipelines.object.export import auto_threshold

        m = self.cfg.mesh
        was = self._stage1.training
        self._stage1.eval()
        try:
            logd = self.geometry.log_density(self._stage1.density)
            if m.threshold is not None:
                tau = float(m.threshold)
            elif m.init_views > 0:
                tau = self._silhouette_level(logd)
            elif self.cfg.output.mesh_threshold is not None:
                tau = float(self.cfg.output.mesh_threshold)
            else:
                tau = auto_threshold((logd.exp() - 1e-6).clamp(min=0).cpu().numpy())
            self.geometry.set_level(logd, tau)
            return tau
        finally:
            self._stage1.train(was)

    @torch.no_grad()
    def _silhouette_level(self, logd: torch.Tensor, iterations: int = 18) -> float:
        """The density iso-level whose mesh covers as many pixels as the stage-1 NeRF's silhouette
        (opacity > 0.5) on ``mesh.init_views`` views: bisection in log density (coverage falls as the
        level rises)."""
        from scenescape.fields.volume import render_cameras
        from scenescape.geometry.raster import rasterize
        from scenescape.pipelines.object.pipeline import eval_cameras

        cfg, m = self.cfg, self.cfg.mesh
        n1 = (m.init_views + 1) // 2
        n2 = m.init_views - n1
        top = 0.5 * (cfg.camera.eval_elevation + max(cfg.camera.elevation))
        cams = eval_cameras(cfg, n1, size=m.init_size)
        if n2:
            cams += eval_cameras(cfg, n2, size=m.init_size, offset=180.0 / n2, elevation=top)
        dev = self.pipe.device
        op = render_cameras(self._stage1, self.background, cams, cfg.render, shading="albedo", perturb=False,
                            device=dev).opacity
        target = int((op > 0.5).sum())

        def coverage(level: float) -> int:
            self.geometry.set_level(logd, math.exp(level))
            if bool((self.geometry.sdf < 0).all()):
                return len(cams) * m.init_size ** 2
            verts, faces = self.geometry.mesh()
            if faces.shape[0] == 0:
                return 0
            return sum(int((rasterize(verts, faces, c)[0] >= 0).sum()) for c in cams)

        lo, hi = float(logd.min()), float(logd.max())
        best = (abs(coverage(hi) - target), hi)
        for _ in range(iterations):
            mid = 0.5 * (lo + hi)
            c = coverage(mid)
            best = min(best, (abs(c - target), mid))
            if c > target:
                lo = mid
            else:
                hi = mid
        return math.exp(best[1])

    # ------------------------------------------------------------------ training
    def train_step(self, step: int, prompt: str, guidance: Any, g: torch.Generator) -> dict[str, float]:
        """One stage-2 step (``step`` counts from the start of stage 1); random draws from ``g``."""
        from scenescape.pipelines.object.pipeline import (
            pick_shading,
            sample_backgrounds,
            sample_cameras,
            sample_lights,
            view_prompt,
        )

        cfg = self.cfg
        m = cfg.mesh
        local = step - cfg.steps
        f = cfg.optim.factor(local, m.steps)
        for grp in self.opt.param_groups:
            grp["lr"] = grp["base_lr"] * f
        sample = sample_cameras(dataclasses.replace(cfg, resolution=m.resolution), g)
        b = len(sample.cameras)
        prompts = [view_prompt(prompt, a, e, cfg.prompt) for a, e in zip(sample.azimuth, sample.elevation)]
        u = torch.rand(1, generator=g, dtype=torch.float64).item()
        shading = pick_shading(cfg.shading.probs, u) if local >= m.albedo_steps else "albedo"
        lights = sample_lights(cfg.shading, torch.stack([c.center for c in sample.cameras]), g)
        bg_colors = sample_backgrounds(cfg.background, b, g)
        verts, faces = self.geometry.mesh()
        if faces.shape[0] == 0:
            raise RunError("stage 2: the mesh is empty (no SDF sign change on the tet grid); lower "
                           "mesh.threshold or train stage 1 longer")
        r = render_mesh_views(verts, faces, self.color, self.background, sample.cameras, shading=shading,
                              lights=lights, ambient=cfg.shading.ambient, bg_colors=bg_colors)
        info = {"step": local, "max_steps": m.steps, "generator": g, "cameras": sample.cameras,
                "azimuth": sample.azimuth, "elevation": sample.elevation, "shading": shading, "lights": lights,
                "ambient": cfg.shading.ambient, "background": bg_colors}
        loss_g = guidance.step(r.rgb, prompts, info)
        loss = loss_g
        nc = torch.zeros(())
        if m.normal_consistency > 0:
            nc = normal_consistency(verts, faces)
            loss = loss + m.normal_consistency * nc
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": float(loss.detach()), "guidance": float(loss_g.detach()), "normal_consistency": float(nc.detach()),
                "faces": float(faces.shape[0]), "opacity": float(r.opacity.detach().mean())}

    @torch.no_grad()
    def render(self, cameras: list[Camera]) -> MeshRender:
        """Deterministic albedo renders (the configured background colour, or the MLP)."""
        bgc = None
        if self.cfg.background.kind != "mlp":
            bgc = torch.tensor(self.cfg.background.color).expand(len(cameras), 3)
        verts, faces = self.geometry.mesh()
        return render_mesh_views(verts, faces, self.color, self.background, cameras, bg_colors=bgc)

    @torch.no_grad()
    def export_mesh(self) -> SceneMesh:
        verts, faces = self.geometry.mesh()
        colors = torch.cat([self.color(verts[i:i + 65536])[1] for i in range(0, verts.shape[0], 65536)]) \
            if verts.shape[0] else verts.new_zeros(0, 3)
        return SceneMesh(verts.cpu(), faces.cpu(), colors.cpu())

    # ------------------------------------------------------------------ state
    def state(self, step: int, prompt: str, g: torch.Generator, losses: list[float]) -> dict[str, Any]:
        return {"format": MESH_FORMAT, "step": step, "prompt": prompt, "mesh_config": to_dict(self.cfg.mesh),
                "sdf": self.geometry.sdf.detach().cpu(), "deform": self.geometry.deform.detach().cpu(),
                "color": {k: v.detach().cpu() for k, v in self.color.state_dict().items()},
                "background": {k: v.detach().cpu() for k, v in self.background.state_dict().items()},
                "optimizer": self.opt.state_dict(), "generator": g.get_state(),
                "losses": [float(x) for x in losses]}

    def load_state(self, ck: dict[str, Any], prompt: str) -> tuple[int, list[float]]:
        if ck.get("format") != MESH_FORMAT:
            raise RunError("mesh_checkpoint.pt is not a scenescape stage-2 checkpoint")
        if ck.get("prompt") != prompt:
            raise RunError(f"cannot resume stage 2: the run was for prompt {ck.get('prompt')!r}, not {prompt!r}")
        saved, now = dict(ck["mesh_config"]), to_dict(self.cfg.mesh)
        diff = sorted(k for k in set(saved) | set(now) if k != "steps" and saved.get(k) != now.get(k))
        if diff:
            raise RunError(f"cannot resume stage 2: mesh settings differ from the saved run in {diff}")
        with torch.no_grad():
            self.geometry.sdf.copy_(ck["sdf"])
            self.geometry.deform.copy_(ck["deform"])
        self.color.load_state_dict(ck["color"])
        self.background.load_state_dict(ck["background"])
        self.opt.load_state_dict(ck["optimizer"])
        return int(ck["step"]), list(ck["losses"])


def load_mesh_checkpoint(path: Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise RunError(f"stage-2 checkpoint '{path}' cannot be read ({type(e).__name__}: {e})") from e


def run_mesh_stage(pipe: Any, prompt: str, out: Path, fld: NeRFField, bg: Background, guidance: Any,
                   resume: bool, stop_after: int | None, export: bool,
                   callback: Any = None) -> tuple[MeshStage, int, list[float], dict[str, str]]:
    """Run (or resume) stage 2 in the run folder ``out`` after stage 1 finished; returns
    ``(stage, last step, losses, files)``."""
    cfg = pipe.config
    total = cfg.steps + cfg.mesh.steps
    stage = MeshStage(pipe, fld, bg)
    ck_path = out / MESH_CHECKPOINT
    g = torch.Generator().manual_seed(cfg.seed + 1)
    if ck_path.exists():
        if not resume:
            raise RunError(f"'{out}' already holds a stage-2 run ({MESH_CHECKPOINT}); pass --resume to continue it")
        ck = load_mesh_checkpoint(ck_path)
        start, losses = stage.load_state(ck, prompt)
        g.set_state(ck["generator"])
    else:
        stage.init_geometry()
        start, losses = cfg.steps, []
    end = total if stop_after is None else min(total, max(stop_after, cfg.steps))
    bar = None
    if cfg.progress and end > start:
        from tqdm import tqdm

        bar = tqdm(total=end - start, desc="object stage 2", unit="step", dynamic_ncols=True)
    t0 = time.time()
    for step in range(start, end):
        stats = stage.train_step(step, prompt, guidance, g)
        losses.append(stats["loss"])
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{stats['loss']:.4g}", faces=int(stats["faces"]))
        if callback is not None:
            callback(step, stats)
        done = step + 1
        o = cfg.output
        if o.val_every and (done - cfg.steps) % o.val_every == 0:
            from scenescape.pipelines.object.pipeline import eval_cameras

            r = stage.render(eval_cameras(cfg, max(o.val_views, 1), size=cfg.mesh.resolution))
            save_image(out / "validation" / f"mesh_step_{done:06d}.png", torch.cat(list(r.rgb.cpu()), dim=1))
        if o.checkpoint_every and (done - cfg.steps) % o.checkpoint_every == 0 and done != end:
            _save(stage.state(done, prompt, g, losses), ck_path)
    if bar is not None:
        bar.close()
    _save(stage.state(end, prompt, g, losses), ck_path)
    files: dict[str, str] = {"mesh_checkpoint": str(ck_path)}
    if export and end == total:
        from scenescape.io.meshes import save_mesh
        from scenescape.pipelines.object.export import orbit_cameras

        mesh = stage.export_mesh()
        cams = orbit_cameras(cfg.camera.eval_radius, cfg.camera.eval_elevation, cfg.camera.eval_fov,
                             cfg.output.video_size, cfg.output.video_frames)
        for fmt in cfg.output.mesh_formats:
            p = out / f"refined.{fmt}"
            save_mesh(mesh, p, frame="object", cameras=cams)  # the same frame as mesh.* (faces +Z, y up)
            files[f"refined_{fmt}"] = str(p)
    stage.seconds = time.time() - t0
    return stage, end, losses, files


def _save(obj: dict[str, Any], path: Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def memory_probe_step(cfg: Any, guidance: Any, g: torch.Generator) -> dict[str, float]:
    """One stage-2 step from an untrained stage 1 (the starting blob) -- for benchmarks/object_memory.py."""
    from scenescape.pipelines.object.pipeline import ObjectPipeline

    pipe = ObjectPipeline(cfg, guidance=guidance)
    fld, bg = pipe.build_models()
    stage = MeshStage(pipe, fld, bg)
    stage.init_geometry()
    return stage.train_step(cfg.steps + cfg.mesh.albedo_steps, "a ceramic mug", guidance, g)


__all__ = ["MESH_CHECKPOINT", "MeshRender", "MeshStage", "memory_probe_step", "normal_consistency",
           "render_mesh_views", "run_mesh_stage"]
