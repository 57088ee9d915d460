"""Peak memory of one scene frame of each GPU preset, measured on the CPU in fp32 with real-size models.

The networks are the real architectures (SD-2 inpainting UNet, SD VAE, OpenCLIP ViT-H text tower,
DPT-Large or Depth Anything V2) built from their public configs (the dicts of
``benchmarks/frame_cost.py``) with random weights on the CPU in float32: weights, activations and
optimiser states have their real sizes, only the values are random. Each component runs in a FRESH
subprocess (``ru_maxrss`` is a high-water mark) under an address-space limit, so one component's peak
never hides another's and a runaway allocation fails there instead of taking the machine:

* ``text``: text encoder forward (batch 2 with guidance);
* ``unet``: one denoising step on the preset's canvas (batch 2 with guidance; later steps reuse it);
* ``vae``: encode + decode of the canvas, and with decoder finetuning one Adam step of the decoder
  (forward + backward at the canvas size);
* ``depth``: the depth model's forward at its input size, and with depth finetuning one Adam step;
* text-to-image (presets with a text-to-image first frame): its UNet's weights are resident during the run
  (used at frame 0 only); the SD-2.1-base UNet is the inpainting UNet's architecture with 4 input channels
  instead of 9, so the inpainting UNet's weights are counted once more (the ``t2i`` component measures
  them on its own when asked);
* ``geometry``: the preset's geometry for one 512x512 frame (render at the preset's supersampling,
  masks, alignment with seam correction, extend) on a mesh of about 1M faces, with the oracle backends.

A frame's peak is composed as ``base + sum(weights of every resident model) + max(component working set)``
(the models of a frame are loaded together and called one after another; working set = the component's
peak minus its weights), reported next to the components. Geometry is reported apart.

Usage: ``python benchmarks/scene_memory.py [--presets gpu-fast,gpu-quality,scenescape-faithful]
[--components text,unet,vae,depth,t2i,geometry] [--limit-gb 14] [--no-write]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
COMPONENTS = ("text", "unet", "vae", "depth", "geometry", "t2i")
DEFAULT_COMPONENTS = ("text", "unet", "vae", "depth", "geometry")


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def preset_plan(name: str) -> dict:
    """What one steady-state frame of preset ``name`` runs (sizes, steps, models)."""
    sys.path.insert(0, str(HERE))
    from frame_cost import DEPTH_MODELS

    from scenescape.backends.depth.transformers import TransformersDepth
    from scenescape.backends.inpaint.diffusers import DiffusersInpainter
    from scenescape.config import from_dict, load_config
    from scenescape.pipelines.scene import SceneConfig

    cfg = load_config(SceneConfig, ROOT / "configs" / f"{name}.yaml")
    inp = from_dict(DiffusersInpainter.Config, cfg.inpainter.options)
    dep = from_dict(TransformersDepth.Config, cfg.depth.options)
    arch, dsize = DEPTH_MODELS[dep.model]
    canvas = -(-(cfg.width + 2 * inp.outpaint_border) // 8) * 8
    return {"canvas": canvas, "batch": 2 if inp.guidance > 1 else 1, "decoder_ft": inp.decoder_finetune_steps,
            "depth_arch": arch, "depth_size": dsize, "depth_ft": dep.finetune_steps,
            "t2i": bool(cfg.text_to_image.name), "supersample": cfg.mask.supersample,
            "border_fix": cfg.mask.border_fix, "width": cfg.width, "height": cfg.height}


def run_component(component: str, plan: dict) -> dict:
    """In this (fresh) process: build, record the weights' RSS, run once, record the peak."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("SCENE_MEMORY_THREADS", "2"))))
    sys.path.insert(0, str(HERE))
    import frame_cost as fc

    base = _rss_mb()
    t0 = time.perf_counter()
    if component == "geometry":
        _geometry_frame(plan)
        return {"base_mb": base, "weights_mb": 0.0, "peak_mb": _peak_mb(), "seconds": time.perf_counter() - t0}
    torch.manual_seed(0)
    if component == "text":
        from transformers import CLIPTextConfig, CLIPTextModel

        model = CLIPTextModel(CLIPTextConfig(**fc.CLIP_H_TEXT)).eval()
        weights = _rss_mb()
        with torch.no_grad():
            model(input_ids=torch.zeros(plan["batch"], 77, dtype=torch.long))
    elif component in ("unet", "t2i"):
        from diffusers import UNet2DConditionModel

        ucfg = dict(fc.UNET_SD2, in_channels=9 if component == "unet" else 4)
        model = UNet2DConditionModel(**ucfg).eval()
        weights = _rss_mb()
        if component == "unet":
            lat = plan["canvas"] // 8
            with torch.no_grad():
                model(torch.randn(plan["batch"], 9, lat, lat), torch.tensor([500] * plan["batch"]),
                      encoder_hidden_states=torch.randn(plan["batch"], 77, 1024))
    elif component == "vae":
        from diffusers import AutoencoderKL

        model = AutoencoderKL(**fc.VAE_SD).eval()
        weights = _rss_mb()
        c = plan["canvas"]
        with torch.no_grad():
            z = model.encode(torch.rand(1, 3, c, c) * 2 - 1).latent_dist.mean
            model.decode(z)
        if plan["decoder_ft"]:
            model.requires_grad_(False)
            model.decoder.requires_grad_(True)
            opt = torch.optim.Adam([p for p in model.decoder.parameters()], lr=1e-4)
            out = model.decode(z).sample
            ((out - torch.rand_like(out)) ** 2).mean().backward()
            opt.step()
    elif component == "depth":
        model = fc.build_depth_model(plan["depth_arch"], "cpu").eval()
        weights = _rss_mb()
        s = plan["depth_size"]
        x = torch.rand(1, 3, s, s)
        with torch.no_grad():
            model(pixel_values=x)
        if plan["depth_ft"]:
            model.train()
            opt = torch.optim.Adam(model.parameters(), lr=1e-7)
            pred = model(pixel_values=x).predicted_depth
            (pred - torch.rand_like(pred)).abs().mean().backward()
            opt.step()
    else:
        raise SystemExit(f"unknown component {component!r}; choose from {COMPONENTS}")
    return {"base_mb": base, "weights_mb": weights - base, "peak_mb": _peak_mb(), "seconds": time.perf_counter() - t0}


def _geometry_frame(plan: dict) -> None:
    """One frame's geometry at the preset's settings on a ~1M-face mesh (oracle colour and depth)."""
    import dataclasses

    import torch

    from scenescape.evaluation import OracleDepth, OracleInpainter, default_camera, make_world
    from scenescape.geometry.camera import Camera
    from scenescape.geometry.mesh import SceneMesh
    from scenescape.pipelines import SceneConfig
    from scenescape.pipelines.scene import warp_inpaint_step
    from scenescape.trajectories import TrajectoryConfig, build_trajectory

    w = make_world("room")
    size = plan["width"]
    cam0 = default_camera(w, size, size, 500.0 * size / 512)
    side = 707  # a start view of ~1M faces with the same field of view
    big = Camera(cam0.fx * side / size, cam0.fy * side / size, side / 2, side / 2, side, side,
                 cam0.world_to_camera)
    img, dep = w.render(big)
    mesh = SceneMesh.from_rgbd(img, dep, big)
    cams = build_trajectory(TrajectoryConfig(name="backward", params={"step": 0.02}), cam0, 3)
    cfg = SceneConfig(width=size, height=size, focal=cam0.fx)
    mcfg = dataclasses.replace(cfg.mask, supersample=plan["supersample"], border_fix=plan["border_fix"])
    prev_depth = w.render(cams[1])[1].numpy() if plan["border_fix"] else None
    with torch.no_grad():
        warp_inpaint_step(mesh, cams[2], depth=OracleDepth(world=w), inpainter=OracleInpainter(world=w), seed=1,
                          mask=mcfg, align=cfg.align, composite_cfg=cfg.composite, mesh_cfg=cfg.mesh,
                          prev_cam=cams[1], prev_depth=prev_depth, frame=2)


def measure(preset: str, component: str, limit_gb: float, timeout: float) -> dict:
    cmd = [sys.executable, __file__, "--child", preset, component]
    env = dict(os.environ, SCENE_MEMORY_LIMIT_GB=str(limit_gb))
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"did not finish in {timeout:.0f} s"}
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
    if p.returncode != 0 or not lines:
        tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["?"]
        return {"error": f"exit {p.returncode}: {tail[0][:160]}"}
    return json.loads(lines[-1])


def _child(preset: str, component: str) -> None:
    lim = float(os.environ.get("SCENE_MEMORY_LIMIT_GB", "0"))
    if lim > 0:  # a runaway allocation raises here instead of pushing the shared machine out of memory
        b = int(lim * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (b, b))
    plan = preset_plan(preset)
    needed = {"text": True, "unet": True, "vae": True, "depth": True, "t2i": plan["t2i"], "geometry": True}
    if not needed[component]:
        print(json.dumps({"skipped": True}))
        return
    print(json.dumps({**run_component(component, plan), "plan": plan}))


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="gpu-fast,gpu-quality,scenescape-faithful")
    ap.add_argument("--components", default=",".join(DEFAULT_COMPONENTS))
    ap.add_argument("--limit-gb", type=float, default=14.0, help="address-space limit of each child process")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per component")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    results: dict[str, dict[str, dict]] = {}
    cache: dict[tuple, dict] = {}
    plan_of: dict[str, dict] = {}
    for preset in args.presets.split(","):
        plan = plan_of[preset] = preset_plan(preset)
        results[preset] = {}
        for comp in args.components.split(","):
            # components with the same inputs measure the same thing: run once
            key = (comp, json.dumps({k: plan[k] for k in _deps(comp)}, sort_keys=True))
            if key not in cache:
                cache[key] = measure(preset, comp, args.limit_gb, args.timeout)
                print(preset, comp, cache[key], flush=True)
            results[preset][comp] = cache[key]
    lines = ["| preset | component | weights (GB) | peak of its process (GB) | working set (GB) | s |",
             "|---|---|---:|---:|---:|---:|"]
    summary = ["| preset | models: base + all weights + largest working set (GB) | geometry peak (GB) |",
               "|---|---:|---:|"]
    for preset, comps in results.items():
        base = weights = work = 0.0
        complete = True
        for comp, r in comps.items():
            if r.get("skipped"):
                continue
            if "error" in r:
                lines.append(f"| {preset} | {comp} | - | - | - | {r['error']} |")
                complete &= comp == "geometry"
                continue
            ws = r["peak_mb"] - r["base_mb"] - r["weights_mb"]
            lines.append(f"| {preset} | {comp} | {r['weights_mb'] / 1024:.2f} | {r['peak_mb'] / 1024:.2f} | "
                         f"{ws / 1024:.2f} | {r['seconds']:.0f} |")
            if comp != "geometry":
                base = max(base, r["base_mb"])
                weights += r["weights_mb"]
                work = max(work, ws)
        if plan_of[preset]["t2i"] and "t2i" not in comps and "weights_mb" in comps.get("unet", {}):
            weights += comps["unet"]["weights_mb"]  # the text-to-image UNet: same size, resident
            lines.append(f"| {preset} | t2i (= unet weights) | {comps['unet']['weights_mb'] / 1024:.2f} | - | - | - |")
        geo = comps.get("geometry", {})
        gtxt = f"{geo['peak_mb'] / 1024:.2f}" if "peak_mb" in geo else "n/a"
        mtxt = f"{(base + weights + work) / 1024:.2f}" + ("" if complete else " (incomplete)")
        summary.append(f"| {preset} | {mtxt} | {gtxt} |")
    print("\n".join(summary + [""] + lines))
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        section = "\n".join([
            "", f"## Scene memory: one frame per preset, real-size fp32 models on the CPU ({when})", "",
            f"`python benchmarks/scene_memory.py --presets {args.presets} --components {args.components}` -- "
            f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, load average {load0} at start; each "
            "component in a fresh subprocess (ru_maxrss), random weights, float32. A frame's model peak = base + all "
            "weights + the largest working set (the models are resident together and called in turn).", "",
            *summary, "", *lines, ""])
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(section)


def _deps(comp: str) -> tuple[str, ...]:
    return {"text": ("batch",), "unet": ("canvas", "batch"), "vae": ("canvas", "decoder_ft"),
            "depth": ("depth_arch", "depth_size", "depth_ft"), "t2i": ("t2i",),
            "geometry": ("supersample", "border_fix", "width")}[comp]


if __name__ == "__main__":
    main()
