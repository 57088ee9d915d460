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
* ``t2i`` (presets with a text-to-image first frame): the SD-2.1-base UNet (the inpainting UNet's
  architecture with 4 input channels instead of 9) and one denoising step at the first frame's size; its
  text encoder and VAE are the inpainting pipeline's architectures (the ``text`` and ``vae`` rows);
* ``geometry``: the preset's geometry for one 512x512 frame (render at the preset's supersampling,
  masks, alignment with seam correction, extend) on a mesh of about 1M faces, with the oracle backends.

Which models are resident in which phase is not assumed: :func:`residency` runs the real
:class:`~scenescape.pipelines.scene.ScenePipeline` built from the preset (every model replaced by a tiny
random-weight one of the same kind, ``scenescape.testing``) for three frames and, at every backend call,
lists the networks alive in the process (``gc``). A phase's peak is then composed as
``base + sum(weights of every network alive in it) + max(working set of the components called in it)``
(working set = the component's peak minus its weights); the frame peak is the larger phase (frame 0: the
text-to-image model + depth; frames >= 1: the inpainter + depth). Geometry is reported apart.
``--reuse-results`` takes the per-component numbers of the latest "Scene memory" section of RESULTS.md
instead of measuring them again (the sizes of the components only change with the architectures).

Usage: ``python benchmarks/scene_memory.py [--presets gpu-fast,gpu-quality,scenescape-faithful]
[--components text,unet,vae,depth,t2i,geometry] [--limit-gb 14] [--reuse-results] [--no-write]``.
"""

from __future__ import annotations

import argparse
import dataclasses
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
DEFAULT_COMPONENTS = ("text", "unet", "vae", "depth", "t2i", "geometry")


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
            "t2i": bool(cfg.text_to_image.name), "t2i_batch": _t2i_batch(cfg), "supersample": cfg.mask.supersample,
            "border_fix": cfg.mask.border_fix, "width": cfg.width, "height": cfg.height}


def _t2i_batch(cfg) -> int:
    if not cfg.text_to_image.name:
        return 0
    from scenescape.backends.t2i.diffusers import DiffusersTextToImage
    from scenescape.config import from_dict

    return 2 if from_dict(DiffusersTextToImage.Config, cfg.text_to_image.options).guidance > 1 else 1


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
        # one denoising step: the inpainter's on its canvas, the text-to-image model's at the frame size
        ch, lh, lw, b = ((9, plan["canvas"] // 8, plan["canvas"] // 8, plan["batch"]) if component == "unet" else
                         (4, plan["height"] // 8, plan["width"] // 8, plan["t2i_batch"]))
        with torch.no_grad():
            model(torch.randn(b, ch, lh, lw), torch.tensor([500] * b), encoder_hidden_states=torch.randn(b, 77, 1024))
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


# the real backends' roles -> the components whose working sets a call of that backend reaches
CALLS = {"text_to_image": ("text", "t2i", "vae"), "inpainter": ("text", "unet", "vae"), "depth": ("depth",),
         "first_depth": ("depth",)}


def held_networks() -> list[str]:
    """The networks alive in this process now (after a gc pass), as component names, one per instance."""
    import gc
    import warnings

    import torch

    gc.collect()
    held = []
    with warnings.catch_warnings():  # isinstance on some deprecated module objects warns
        warnings.simplefilter("ignore")
        objs = [o for o in gc.get_objects() if isinstance(o, torch.nn.Module)]
    for o in objs:
        name = type(o).__name__
        if name == "UNet2DConditionModel":
            held.append("unet" if o.config.in_channels == 9 else "t2i")
        elif name == "AutoencoderKL":
            held.append("vae")
        elif name == "CLIPTextModel":
            held.append("text")
        elif name.endswith("ForDepthEstimation"):
            held.append("depth")
        elif name == "CLIPModel":
            held.append("clip")
    return sorted(held)


def residency(preset: str, folder: str | os.PathLike, frames: int = 3, size: int = 64) -> list[dict]:
    """Run preset ``preset`` through the real scene pipeline with tiny models of the same kinds.

    Returns one record per backend call: ``{"frame", "role", "held": [component, ...]}`` where ``held``
    lists every network alive in the process at the call (:func:`held_networks`). The tiny models are
    saved under ``folder``; the preset's options are kept except for the model ids, one diffusion step,
    at most one finetuning step, the size (``size`` px) and the CPU.
    """
    from scenescape.backends.base import BackendConfig
    from scenescape.config import load_config
    from scenescape.pipelines.scene import SceneConfig, ScenePipeline
    from scenescape.testing import make_tiny_clip, make_tiny_depth, make_tiny_sd

    try:  # no progress bars from the tiny loads
        from diffusers.utils import logging as dlog

        dlog.disable_progress_bar()
    except ImportError:
        pass
    folder = Path(folder)
    cfg = load_config(SceneConfig, ROOT / "configs" / f"{preset}.yaml")

    def tiny(section: BackendConfig, model: str, **caps: int) -> BackendConfig:
        if section.name not in ("diffusers", "transformers"):
            return section
        opts = dict(section.options, model=model, device="cpu", dtype="fp32") if section.name == "diffusers" else \
            dict(section.options, model=model, device="cpu")
        for k, cap in caps.items():
            if k in opts or k == "steps":
                opts[k] = min(int(opts.get(k, cap)), cap)
        return BackendConfig(section.name, opts)

    depth_kind = "dpt" if "dpt" in str(cfg.depth.options.get("model", "")).lower() else "depth_anything"
    clip = make_tiny_clip(folder / "clip") if cfg.inpainter.clip else ""
    cfg.text_to_image = tiny(cfg.text_to_image, make_tiny_sd(folder / "t2i"), steps=1)
    cfg.inpainter = dataclasses.replace(
        cfg.inpainter, **vars(tiny(cfg.inpainter, make_tiny_sd(folder / "inp", inpainting=True), steps=1,
                                   decoder_finetune_steps=1)), clip=clip)
    cfg.depth = tiny(cfg.depth, make_tiny_depth(folder / "depth", kind=depth_kind), finetune_steps=1)
    if cfg.first_depth.name:
        cfg.first_depth = tiny(cfg.first_depth, make_tiny_depth(folder / "depth1", kind=depth_kind), finetune_steps=1)
    cfg = dataclasses.replace(cfg, width=size, height=size, focal=cfg.focal * size / cfg.width, frames=frames,
                              device="cpu", seed=0)
    pipe = ScenePipeline.from_config(cfg)
    log: list[dict] = []
    state = {"frame": 0}
    for role, meth in (("text_to_image", "generate"), ("inpainter", "inpaint"), ("inpainter", "generate"),
                       ("depth", "estimate"), ("first_depth", "estimate")):
        obj = getattr(pipe, role)
        if obj is None or not hasattr(obj, meth):
            continue

        def wrapped(*a, _f=getattr(obj, meth), _role=role, **k):
            out = _f(*a, **k)  # the networks a call loads are alive at its end (and held through it)
            log.append({"frame": state["frame"], "role": _role, "held": held_networks()})
            return out

        setattr(obj, meth, wrapped)

    def on_frame(i: int, _s: float) -> None:
        state["frame"] = i + 1

    pipe.run(cfg.prompt or "a room", progress=False, on_frame=on_frame)
    return log


def phases(log: list[dict]) -> dict[str, dict]:
    """Per phase (``frame 0``, ``frames >= 1``): the most networks alive at once, and the components called."""
    out: dict[str, dict] = {}
    for rec in log:
        key = "frame 0" if rec["frame"] == 0 else "frames >= 1"
        ph = out.setdefault(key, {"held": [], "calls": set()})
        if sum(_w(c) for c in rec["held"]) >= sum(_w(c) for c in ph["held"]):
            ph["held"] = rec["held"]
        ph["calls"].update(CALLS[rec["role"]])
    return out


def _w(component: str) -> float:
    """A rough size order, only to pick the heaviest set of networks of a phase."""
    return {"unet": 3.4, "t2i": 3.4, "text": 1.4, "vae": 0.5, "depth": 0.3, "clip": 1.7}.get(component, 0.0)


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


def reused_components(preset: str, path: Path = HERE / "RESULTS.md") -> dict[str, dict]:
    """Per-component numbers of ``preset`` from the latest "Scene memory" section of RESULTS.md that has them."""
    text = path.read_text(encoding="utf-8")
    sections = [part.split("\n## ", 1)[0] for part in text.split("## Scene memory: one frame per preset")[1:]]
    for section in reversed(sections):
        title = "Scene memory: one frame per preset" + section.splitlines()[0]
        out: dict[str, dict] = {}
        for line in section.splitlines():
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 6 and cells[0] == preset and cells[1] in COMPONENTS:
                try:
                    w, peak, ws = (float(c) for c in cells[2:5])
                    sec = float(cells[5].split()[0])
                except (ValueError, IndexError):
                    continue
                out[cells[1]] = {"weights_mb": w * 1024, "peak_mb": peak * 1024, "base_mb": (peak - w - ws) * 1024,
                                 "seconds": sec, "reused": title}
        if out:
            return out
    raise SystemExit(f"--reuse-results: RESULTS.md has no 'Scene memory' rows of {preset}; measure it first")


def compose(comps: dict[str, dict], ph: dict[str, dict]) -> tuple[dict[str, dict], list[str]]:
    """Each phase's peak from the components' numbers and what the pipeline held and called in it.

    Returns ``({phase: {"peak_mb", "held", "largest"}}, notes)``. A network with no measured row is an
    error (the phase is marked incomplete), except the text-to-image UNet, which falls back on the
    inpainting UNet's row (same architecture, 4 input channels instead of 9) with a note.
    """
    notes: list[str] = []
    rows = dict(comps)
    if "t2i" not in rows and "unet" in rows and any("t2i" in p["held"] for p in ph.values()):
        rows["t2i"] = rows["unet"]
        notes.append("t2i: no row of its own; the inpainting UNet's weights and working set are used")
    out = {}
    for name, p in ph.items():
        missing = sorted({c for c in p["held"] + sorted(p["calls"]) if c not in rows or "error" in rows[c]})
        base = max((rows[c]["base_mb"] for c in p["calls"] if c in rows and "error" not in rows[c]), default=0.0)
        weights = sum(rows[c]["weights_mb"] for c in p["held"] if c in rows and "error" not in rows[c])
        work = {c: rows[c]["peak_mb"] - rows[c]["base_mb"] - rows[c]["weights_mb"]
                for c in p["calls"] if c in rows and "error" not in rows[c]}
        largest = max(work, key=work.get) if work else None
        out[name] = {"peak_mb": base + weights + (work[largest] if largest else 0.0), "held": p["held"],
                     "largest": largest, "missing": missing}
    return out, notes


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        _child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", default="gpu-fast,gpu-quality,scenescape-faithful")
    ap.add_argument("--components", default=",".join(DEFAULT_COMPONENTS))
    ap.add_argument("--limit-gb", type=float, default=14.0, help="address-space limit of each child process")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per component")
    ap.add_argument("--reuse-results", action="store_true",
                    help="take the components' numbers from the latest Scene memory section of RESULTS.md; "
                         "measure only the residency and the components missing there")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    import tempfile

    load0 = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    results: dict[str, dict[str, dict]] = {}
    cache: dict[tuple, dict] = {}
    plan_of: dict[str, dict] = {}
    phase_of: dict[str, dict] = {}
    for preset in args.presets.split(","):
        plan = plan_of[preset] = preset_plan(preset)
        with tempfile.TemporaryDirectory(prefix="scene-memory-") as tmp:
            phase_of[preset] = phases(residency(preset, tmp))
        print(preset, {k: (v["held"], sorted(v["calls"])) for k, v in phase_of[preset].items()}, flush=True)
        reused = reused_components(preset) if args.reuse_results else {}
        results[preset] = {}
        for comp in args.components.split(","):
            if comp in reused:
                results[preset][comp] = reused[comp]
                continue
            # components with the same inputs measure the same thing: run once
            key = (comp, json.dumps({k: plan[k] for k in _deps(comp)}, sort_keys=True))
            if key not in cache:
                cache[key] = measure(preset, comp, args.limit_gb, args.timeout)
                print(preset, comp, cache[key], flush=True)
            results[preset][comp] = cache[key]
    lines = ["| preset | component | weights (GB) | peak of its process (GB) | working set (GB) | s |",
             "|---|---|---:|---:|---:|---:|"]
    summary = ["| preset | frame 0: networks alive, largest working set | GB | frames >= 1: networks alive, "
               "largest working set | GB | frame peak (GB) | geometry peak (GB) |",
               "|---|---|---:|---|---:|---:|---:|"]
    notes_all: list[str] = []
    for preset, comps in results.items():
        for comp, r in comps.items():
            if r.get("skipped"):
                continue
            if "error" in r:
                lines.append(f"| {preset} | {comp} | - | - | - | {r['error']} |")
                continue
            ws = r["peak_mb"] - r["base_mb"] - r["weights_mb"]
            src = " (reused)" if r.get("reused") else ""
            lines.append(f"| {preset} | {comp} | {r['weights_mb'] / 1024:.2f} | {r['peak_mb'] / 1024:.2f} | "
                         f"{ws / 1024:.2f} | {r['seconds']:.0f}{src} |")
            if r.get("reused") and r["reused"] not in notes_all:
                notes_all.append(r["reused"])
        models = {k: v for k, v in comps.items() if k != "geometry"}
        per, notes = compose(models, phase_of[preset])
        notes_all += [f"{preset}: {n}" for n in notes]
        cells = []
        for name in ("frame 0", "frames >= 1"):
            p = per.get(name)
            if p is None:
                cells += ["-", "-"]
                continue
            inc = f" (incomplete: {', '.join(p['missing'])})" if p["missing"] else ""
            cells += [f"{' + '.join(p['held'])}; {p['largest']}", f"{p['peak_mb'] / 1024:.2f}{inc}"]
        peak = max((p["peak_mb"] for p in per.values()), default=float("nan"))
        geo = comps.get("geometry", {})
        gtxt = f"{geo['peak_mb'] / 1024:.2f}" if "peak_mb" in geo else "n/a"
        summary.append(f"| {preset} | {' | '.join(cells)} | {peak / 1024:.2f} | {gtxt} |")
    note_lines = [f"* {n}" for n in notes_all]
    if any(r.get("reused") for c in results.values() for r in c.values()):
        note_lines.insert(0, "* rows marked (reused) are taken from the section named here (same architectures):")
    print("\n".join(summary + [""] + lines + [""] + note_lines))
    if not args.no_write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        flags = " --reuse-results" if args.reuse_results else ""
        section = "\n".join([
            "", f"## Scene memory: one frame per preset, real-size fp32 models on the CPU ({when})", "",
            f"`python benchmarks/scene_memory.py --presets {args.presets} --components {args.components}{flags}` -- "
            f"{platform.machine()} {platform.system()}, {os.cpu_count()} cores, load average {load0} at start; each "
            "component in a fresh subprocess (ru_maxrss), random weights, float32. The networks alive per phase are "
            "those the real scene pipeline held (tiny models of the same kinds, 3 frames, gc); a phase's peak = "
            "base + their weights + the largest working set of the components it called.", "",
            *summary, "", *lines, "", *note_lines, ""])
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(section)


def _deps(comp: str) -> tuple[str, ...]:
    return {"text": ("batch",), "unet": ("canvas", "batch"), "vae": ("canvas", "decoder_ft"),
            "depth": ("depth_arch", "depth_size", "depth_ft"), "t2i": ("t2i", "t2i_batch", "width", "height"),
            "geometry": ("supersample", "border_fix", "width")}[comp]


if __name__ == "__main__":
    main()
