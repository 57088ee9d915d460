"""Peak memory of one optimisation step of every GPU object preset, real-size Stable Diffusion 2.1, fp32, CPU.

No weights are downloaded: the UNet, VAE and CLIP text encoder are built with random weights from the
SD 2.1 base config dicts below (the architecture -- and so the memory -- of
``stabilityai/stable-diffusion-2-1-base``). The product's own code runs the step: the object pipeline's
``train_step`` (or the Magic3D mesh stage's) with ``StableDiffusionGuidance`` whose score model holds
those modules.

Each measurement runs in a fresh subprocess and reads ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` (peak
resident set size; tracemalloc does not see torch's allocations). Three parts per preset:

* ``field``: the NeRF / mesh part alone -- one step whose guidance is a stand-in loss on the rendered
  images (render, normals, regularisers, backward, Adam), peak RSS minus the RSS after imports;
* ``model``: the score model alone -- weights plus one guidance step (resize to 512, VAE encode with
  gradients, CFG UNet pass, backward through the encoder) on a random image of the preset's render size;
* ``step``: the real step, both together (what a GPU would hold, in fp32; fp16 halves the model part).

Usage: ``python benchmarks/object_memory.py [--presets sds-gpu sjc-gpu ...] [--parts field model step]
[--no-write]``. Appends a dated table to ``benchmarks/RESULTS.md``. Needs ~12 GB free RAM for ``step``.
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
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# stabilityai/stable-diffusion-2-1-base, unet/config.json (architecture keys)
SD21_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
    block_out_channels=(320, 640, 1280, 1280),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    cross_attention_dim=1024, attention_head_dim=(5, 10, 20, 20), use_linear_projection=True,
    norm_num_groups=32, act_fn="silu", flip_sin_to_cos=True, freq_shift=0, downsample_padding=1,
)
# vae/config.json
SD21_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32, act_fn="silu", sample_size=512, scaling_factor=0.18215,
)
# text_encoder/config.json (OpenCLIP ViT-H/14 text tower)
SD21_TEXT = dict(
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512, layer_norm_eps=1e-5,
)

PRESETS = {
    "sds-gpu": ("configs/object/sds-gpu.yaml", "nerf"),
    "sjc-gpu": ("configs/object/sjc-gpu.yaml", "nerf"),
}
MESH_PRESETS = {  # Magic3D: stage 1 is a NeRF step, stage 2 a mesh step
    "magic3d-gpu (stage 1)": ("configs/object/magic3d-gpu.yaml", "nerf"),
    "magic3d-gpu (stage 2)": ("configs/object/magic3d-gpu.yaml", "mesh"),
}
BARS_GB = {"sds-gpu": 12.0, "magic3d-gpu (stage 2)": 16.0}


def _rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2  # ru_maxrss is KiB on Linux


def build_sd21_guidance(options: dict):
    """A ``StableDiffusionGuidance`` whose score model holds real-size SD 2.1 modules with random weights."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from scenescape.backends.guidance import StableDiffusionGuidance, StableDiffusionScoreModel
    from scenescape.backends.guidance.base import scaled_linear_alphas_cumprod
    from scenescape.testing.tiny import _write_tokenizer

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD21_UNET)
    vae = AutoencoderKL(**SD21_VAE)
    text = CLIPTextModel(CLIPTextConfig(**SD21_TEXT))
    tok_dir = Path(tempfile.mkdtemp(prefix="sd21-tok-"))
    _write_tokenizer(tok_dir)  # a byte-level vocabulary: ids < 600, valid for the real-size embedding table
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    opts = {k: v for k, v in options.items() if k in {f.name for f in
                                                     __import__("dataclasses").fields(StableDiffusionGuidance.Config)}}
    cfg = StableDiffusionGuidance.Config(**{**opts, "device": "cpu", "dtype": "fp32"})
    model = StableDiffusionScoreModel.from_modules(unet, vae, text, tokenizer, scaled_linear_alphas_cumprod(),
                                                   resolution=cfg.resolution, latent_input=cfg.latent_input,
                                                   negative_prompt=cfg.negative_prompt, model_id="sd21-random")
    guidance = StableDiffusionGuidance(cfg, model=model)
    return guidance


class _StandIn:
    """Guidance stand-in for the field part: a loss with a gradient on every rendered pixel."""

    def step(self, images, prompts, info):
        return (images.float() ** 2).mean()


def child(preset: str, part: str, overrides: list[str] | None = None) -> dict:
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    path, stage = {**PRESETS, **MESH_PRESETS}[preset]
    from scenescape.pipelines.object import ObjectConfig

    cfg = ObjectConfig.load(ROOT / path, ["device=cpu", "progress=false", *(overrides or [])])
    base = _rss_gb()
    t0 = time.time()
    out: dict = {"preset": preset, "part": part}
    guidance = None
    if part in ("model", "step"):
        guidance = build_sd21_guidance(dict(cfg.guidance.options))
        out["weights_gb"] = _rss_gb() - base
    g = torch.Generator().manual_seed(0)
    if part == "model":
        size = cfg.mesh.resolution if stage == "mesh" else cfg.resolution  # type: ignore[attr-defined]
        img = torch.rand(1, size, size, 3, requires_grad=True)
        loss = guidance.step(img, ["a ceramic mug, front view"], {"step": 0, "max_steps": cfg.steps, "generator": g})
        loss.backward()
    elif stage == "nerf":
        from scenescape.pipelines.object import ObjectPipeline

        pipe = ObjectPipeline(cfg, guidance=guidance or _StandIn())
        fld, bg = pipe.build_models()
        opt = pipe._optimizer(fld, bg)
        # a step after the albedo-only phase (shading and normals on), all hash-grid levels live
        step = max(cfg.shading.albedo_steps, cfg.nerf.grid_start_step + cfg.nerf.levels * cfg.nerf.grid_update_steps)
        step = min(step, cfg.steps - 1)
        pipe.train_step(step, "a ceramic mug", fld, bg, opt, pipe.build_guidance(), g)
    else:
        from scenescape.pipelines.object.mesh_stage import memory_probe_step

        memory_probe_step(cfg, guidance or _StandIn(), g)
    out["peak_gb"] = _rss_gb() - base
    out["seconds"] = time.time() - t0
    return out


def measure(preset: str, part: str, overrides: list[str] | None = None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    extra = [a for o in (overrides or []) for a in ("--override", o)]
    p = subprocess.run([sys.executable, __file__, "--child", preset, part, *extra], capture_output=True, text=True,
                       env=env, cwd=ROOT)
    if p.returncode != 0:
        return {"preset": preset, "part": part, "error": p.stderr.strip().splitlines()[-1] if p.stderr else "failed"}
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--child", nargs=2, metavar=("PRESET", "PART"), help=argparse.SUPPRESS)
    ap.add_argument("--presets", nargs="*", default=None)
    ap.add_argument("--parts", nargs="*", default=["field", "model", "step"])
    ap.add_argument("--override", action="append", default=[], help="config key=value for every preset")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(*a.child, a.override)))
        return 0
    known = {**PRESETS}
    if (ROOT / "configs/object/magic3d-gpu.yaml").exists():
        known.update(MESH_PRESETS)
    names = a.presets or list(known)
    rows = {}
    for name in names:
        for part in a.parts:
            r = measure(name, part, a.override)
            rows[name, part] = r
            print(json.dumps(r), flush=True)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = ["", f"## Object mode: peak memory of one optimisation step, fp32 on the CPU ({now})", "",
             "`python benchmarks/object_memory.py` -- real-size Stable Diffusion 2.1 base architecture (UNet, VAE, "
             "CLIP text encoder built from their configs with random weights, fp32), peak RSS of a fresh process per "
             "part minus its RSS after imports (`resource.getrusage` ru_maxrss); a step after the albedo-only phase "
             f"(shading, normals, all hash-grid levels). CPU ({platform.machine()}, shared machine)."
             + (f" Overrides: `{' '.join(a.override)}`." if a.override else ""), "",
             "| preset | field part (GB) | model weights (GB) | model part (GB) | full step (GB) | bar | |",
             "|---|---:|---:|---:|---:|---:|---|"]

    def cell(r: dict | None, key: str = "peak_gb") -> str:
        if r is None:
            return "-"
        return "error" if "error" in r else f"{r[key]:.2f}"

    ok = True
    for name in names:
        f, m, s = rows.get((name, "field")), rows.get((name, "model")), rows.get((name, "step"))
        bar = BARS_GB.get(name)
        verdict = ""
        if bar is not None and s is not None and "error" not in s:
            passed = s["peak_gb"] <= bar
            ok &= passed
            verdict = "PASS" if passed else "FAIL"
        lines.append(f"| {name} | {cell(f)} | {cell(m, 'weights_gb') if m else '-'} | {cell(m)} | {cell(s)} | "
                     f"{'' if bar is None else f'<= {bar:.0f}'} | {verdict} |")
    text = "\n".join(lines + [""])
    print(text)
    if not a.no_write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as fh:
            fh.write(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
