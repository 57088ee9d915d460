"""Object mode speed on the CPU: hash-grid throughput and seconds per SDS training step at 64x64.

Measured:

1. hash-grid encoding throughput (points per second), forward only and forward + backward, for the
   CPU preset's grid (12 levels x 2^16, max resolution 512) and the GPU preset's (16 levels x 2^19, 2048);
2. seconds per full SDS training step (render 64x64 with the configs/object/sds-cpu-small.yaml NeRF,
   48+16 samples per ray, guidance, backward, Adam) with the *tiny random-weight* Stable Diffusion of
   ``scenescape.testing.tiny`` scored at 64x64 and at 512x512 (its native size);
3. seconds per SDS guidance step with a *real-size* SD-2.1-base UNet and VAE (public architecture
   configs, random weights, no download): 64x64 render -> 512x512 -> VAE encode with gradients ->
   UNet (batch 2 for CFG) at 64x64 latents -> gradient back to the render. Skip with ``--skip-real``.

Usage: ``python benchmarks/object_speed.py [--threads 1] [--skip-real] [--no-write]``.
Appends a dated section to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# stabilityai/stable-diffusion-2-1-base unet/config.json and vae/config.json (architecture only)
UNET_SD21_BASE = dict(
    act_fn="silu", attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=1024,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4, layers_per_block=2,
    mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    use_linear_projection=True,
)
VAE_SD = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512], down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, in_channels=3, latent_channels=4, layers_per_block=2,
    norm_num_groups=32, out_channels=3, sample_size=512,
)


def _time(fn, reps: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def hashgrid_throughput(levels: int, log2_t: int, max_res: int, n: int = 2 ** 17) -> dict:
    from scenescape.fields.hashgrid import HashGridEncoding

    enc = HashGridEncoding(levels, 2, log2_t, 16, max_res)
    x = torch.rand(n, 3)

    def fwd() -> None:
        with torch.no_grad():
            enc(x)

    def fwd_bwd() -> None:
        enc.zero_grad(set_to_none=True)
        enc(x).square().sum().backward()

    f = statistics.median(_time(fwd, 5))
    fb = statistics.median(_time(fwd_bwd, 3))
    return {"grid": f"{levels} x 2^{log2_t}, max res {max_res}", "params": enc.num_parameters,
            "fwd": n / f, "fwd_bwd": n / fb}


def sds_step_tiny(model_res: int, steps: int = 5) -> float:
    from scenescape.pipelines.object import ObjectConfig, ObjectPipeline
    from scenescape.testing.tiny import make_tiny_sd

    with tempfile.TemporaryDirectory() as tmp:
        folder = make_tiny_sd(Path(tmp) / "sd")
        cfg = ObjectConfig.load(ROOT / "configs/object/sds-cpu-small.yaml", [
            "resolution=64", "progress=false", "device=cpu",
            f"guidance.options={{model: '{folder}', resolution: {model_res}, mode: sds}}"])
        pipe = ObjectPipeline(cfg)
        fld, bg = pipe.build_models()
        opt = pipe._optimizer(fld, bg)
        guidance = pipe.build_guidance()
        g = torch.Generator().manual_seed(0)
        step = [0]

        def one() -> None:
            pipe.train_step(step[0], "a ceramic mug", fld, bg, opt, guidance, g)
            step[0] += 1

        return statistics.median(_time(one, steps))


def sds_step_real_size(reps: int = 2) -> dict:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from scenescape.backends.guidance import (
        ScoreDistillationConfig,
        ScoreDistillationGuidance,
        scaled_linear_alphas_cumprod,
    )
    from scenescape.backends.guidance import StableDiffusionScoreModel as SDModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**UNET_SD21_BASE).eval().requires_grad_(False)
    vae = AutoencoderKL(**VAE_SD).eval().requires_grad_(False)
    m = SDModel.__new__(SDModel)  # the real score model class, built from configs instead of from_pretrained
    m.device, m.dtype, m.unet, m.vae = torch.device("cpu"), torch.float32, unet, vae
    m.alphas_cumprod = scaled_linear_alphas_cumprod()
    m.vae_scale, m.scaling_factor, m.resolution, m.latent_input = 8, 0.18215, 512, False
    m.negative_prompt = ""
    emb = torch.randn(1, 77, 1024)
    m._emb_cache = {"": emb, "a ceramic mug, front view": emb + 0.1}
    guide = ScoreDistillationGuidance()
    guide.cfg, guide.model = ScoreDistillationConfig(), m
    img = torch.rand(1, 64, 64, 3, requires_grad=True)
    g = torch.Generator().manual_seed(0)

    def one() -> None:
        img.grad = None
        guide.step(img, ["a ceramic mug, front view"], {"step": 0, "max_steps": 1, "generator": g}).backward()

    times = _time(one, reps)
    return {"unet_params": sum(p.numel() for p in unet.parameters()), "vae_params": sum(p.numel() for p in vae.parameters()),
            "seconds": statistics.median(times)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--skip-real", action="store_true", help="skip the real-size UNet/VAE step (needs ~8 GB RAM)")
    ap.add_argument("--no-write", action="store_true")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    grids = [hashgrid_throughput(12, 16, 512), hashgrid_throughput(16, 19, 2048)]
    for r in grids:
        print(f"hash grid {r['grid']}: fwd {r['fwd']:.3g} pts/s, fwd+bwd {r['fwd_bwd']:.3g} pts/s", flush=True)
    tiny64 = sds_step_tiny(64)
    print(f"SDS step, tiny SD scored at 64x64: {tiny64:.3f} s", flush=True)
    tiny512 = sds_step_tiny(512)
    print(f"SDS step, tiny SD scored at 512x512: {tiny512:.3f} s", flush=True)
    real = None if a.skip_real else sds_step_real_size()
    if real:
        print(f"SDS guidance step, real-size SD-2.1-base UNet + VAE: {real['seconds']:.2f} s", flush=True)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "", f"## Object speed: hash grid and SDS step on the CPU ({now})", "",
        f"`python benchmarks/object_speed.py --threads {a.threads}` -- CPU ({platform.processor() or platform.machine()}), "
        f"{a.threads} torch thread(s), torch {torch.__version__}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the end (timings are upper bounds when other jobs share the machine).", "",
        "| hash grid (2 features/level) | parameters | forward (points/s) | forward + backward (points/s) |",
        "|---|---:|---:|---:|",
    ]
    for r in grids:
        lines.append(f"| {r['grid']} | {r['params']:,} | {r['fwd']:,.0f} | {r['fwd_bwd']:,.0f} |")
    lines += [
        "", "| SDS step at 64x64 render (sds-cpu-small NeRF, 48+16 samples/ray) | seconds/step |", "|---|---:|",
        f"| full training step, tiny random-weight SD scored at 64x64 (8x8 latents) | {tiny64:.3f} |",
        f"| full training step, tiny random-weight SD scored at 512x512 (64x64 latents) | {tiny512:.3f} |",
    ]
    if real:
        lines.append(f"| guidance only (render 64x64 -> 512 -> VAE encode + UNet x2 (CFG) + backward), real-size "
                     f"SD-2.1-base architecture, random weights ({real['unet_params'] / 1e6:.0f}M UNet, "
                     f"{real['vae_params'] / 1e6:.0f}M VAE) | {real['seconds']:.2f} |")
    lines.append("")
    text = "\n".join(lines)
    print(text)
    if not a.no_write:
        with open(ROOT / "benchmarks" / "RESULTS.md", "a") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
