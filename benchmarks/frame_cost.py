"""FLOPs per scene frame of each GPU preset at 512x512, next to SceneScape's recipe.

Counted with ``torch.utils.flop_counter.FlopCounterMode`` on REAL-SIZE architectures (SD-2 inpainting
UNet, SD VAE, OpenCLIP ViT-H text encoder, DPT-Large, Depth Anything V2) built from their public
configs (written below as dicts: the hub is not needed) with random weights on the ``meta`` device,
so nothing is allocated and the count takes seconds on a CPU. Each network call is counted once at
its real input shape and multiplied by how often a frame makes it; training steps are counted as
forward + backward (only the finetuned parameters require gradients, as in the real loops).

A steady-state frame (not frame 0) costs:

* text encoder: prompt (+ negative prompt with classifier-free guidance), once per frame;
* ``steps`` UNet evaluations on the latent canvas (batch 2 with guidance);
* VAE: one encode of the masked canvas, one decode; with decoder finetuning ``N`` forward+backward
  decoder steps and one more decode;
* depth: one forward (prediction) and, with depth finetuning, ``N`` forward+backward steps plus one
  forward (the error after finetuning, which the backend reports).

Rendering, masks and alignment are not neural-network FLOPs and are not counted (they take
milliseconds). SceneScape's recipe (anchors): 50 DDIM steps on a 600 px canvas with guidance, VAE
encode and decodes, 100 decoder finetune steps at 600 px, 300 DPT-Large finetune steps at 384 px.

Run:  python benchmarks/frame_cost.py            (prints a table, appends to benchmarks/RESULTS.md)
      python benchmarks/frame_cost.py --no-write
Exit status 1 if a must-show check fails (default preset <= 1/20 of SceneScape; faithful within 5%).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import math
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parents[1]
SCENESCAPE_ANCHOR_TFLOP = 1637.0  # anchors.md: ~1,637 TFLOP per frame

# ---------------------------------------------------------------------------------------------
# Public architecture configs (from the checkpoints' config.json files)
# ---------------------------------------------------------------------------------------------

UNET_SD2 = dict(  # stabilityai/stable-diffusion-2-inpainting unet/config.json (in_channels 4: 2-1-base)
    act_fn="silu", attention_head_dim=[5, 10, 20, 20], block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=1024,
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    downsample_padding=1, dual_cross_attention=False, flip_sin_to_cos=True, freq_shift=0, in_channels=9,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32, out_channels=4,
    sample_size=64, up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    use_linear_projection=True,
)
VAE_SD = dict(  # the SD 1.x/2.x VAE (vae/config.json)
    act_fn="silu", block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    in_channels=3, latent_channels=4, layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=512,
)
CLIP_H_TEXT = dict(  # OpenCLIP ViT-H/14 text tower as shipped with SD 2 (text_encoder/config.json)
    vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23, num_attention_heads=16,
    max_position_embeddings=77, hidden_act="gelu", projection_dim=512,
)
DPT_LARGE = dict(  # Intel/dpt-large config.json
    hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096, image_size=384,
    patch_size=16, backbone_out_indices=[5, 11, 17, 23], neck_hidden_sizes=[256, 512, 1024, 1024],
    fusion_hidden_size=256, reassemble_factors=[4, 2, 1, 0.5], readout_type="project", is_hybrid=False,
    qkv_bias=True, use_auxiliary_head=False, hidden_act="gelu",
)
DA2 = {  # depth-anything/Depth-Anything-V2-{Small,Base,Large}-hf config.json
    "small": dict(hidden=384, layers=12, heads=6, out=[3, 6, 9, 12], neck=[48, 96, 192, 384], fusion=64),
    "base": dict(hidden=768, layers=12, heads=12, out=[3, 6, 9, 12], neck=[96, 192, 384, 768], fusion=128),
    "large": dict(hidden=1024, layers=24, heads=16, out=[5, 12, 18, 24], neck=[256, 512, 1024, 1024], fusion=256),
}

# model id -> (architecture, input size the image processor gives a 512x512 image)
DEPTH_MODELS = {
    "Intel/dpt-large": ("dpt_large", 384),
    "depth-anything/Depth-Anything-V2-Small-hf": ("da2_small", 518),
    "depth-anything/Depth-Anything-V2-Base-hf": ("da2_base", 518),
    "depth-anything/Depth-Anything-V2-Large-hf": ("da2_large", 518),
}
SD_INPAINT_MODELS = {"stabilityai/stable-diffusion-2-inpainting", "sd2-community/stable-diffusion-2-inpainting"}


# ---------------------------------------------------------------------------------------------
# Counting
# ---------------------------------------------------------------------------------------------

def _count(fn) -> float:
    """FLOPs of ``fn()`` (forward, and backward if ``fn`` calls it)."""
    fc = FlopCounterMode(display=False)
    with fc:
        fn()
    return float(fc.get_total_flops())


@functools.cache
def _unet():
    from diffusers import UNet2DConditionModel

    with torch.device("meta"):
        return UNet2DConditionModel(**UNET_SD2).eval()


@functools.cache
def _vae():
    from diffusers import AutoencoderKL

    with torch.device("meta"):
        return AutoencoderKL(**VAE_SD).eval()


@functools.cache
def _clip():
    from transformers import CLIPTextConfig, CLIPTextModel

    with torch.device("meta"):
        return CLIPTextModel(CLIPTextConfig(**CLIP_H_TEXT)).eval()


@functools.cache
def _depth_model(arch: str):
    return build_depth_model(arch, "meta")


def build_depth_model(arch: str, device: str = "meta"):
    """The depth architecture ``arch`` with random weights on ``device`` (``meta``: nothing allocated)."""
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTConfig,
        DPTForDepthEstimation,
    )

    with torch.device(device):
        if arch == "dpt_large":
            return DPTForDepthEstimation(DPTConfig(**DPT_LARGE)).eval()
        a = DA2[arch.split("_", 1)[1]]
        backbone = Dinov2Config(
            hidden_size=a["hidden"], num_hidden_layers=a["layers"], num_attention_heads=a["heads"],
            mlp_ratio=4, patch_size=14, image_size=518, reshape_hidden_states=False,
            out_indices=a["out"], layer_norm_eps=1e-6,
        )
        cfg = DepthAnythingConfig(
            backbone_config=backbone, patch_size=14, reassemble_hidden_size=a["hidden"],
            neck_hidden_sizes=a["neck"], fusion_hidden_size=a["fusion"], head_hidden_size=32,
            depth_estimation_type="relative",
        )
        return DepthAnythingForDepthEstimation(cfg).eval()


def _meta(*shape: int) -> torch.Tensor:
    return torch.empty(*shape, device="meta")


@functools.cache
def text_encoder(batch: int) -> float:
    ids = torch.zeros(batch, 77, dtype=torch.long, device="meta")
    with torch.no_grad():
        return _count(lambda: _clip()(input_ids=ids))


@functools.cache
def unet_step(latent: int, batch: int) -> float:
    x, c = _meta(batch, UNET_SD2["in_channels"], latent, latent), _meta(batch, 77, 1024)
    t = torch.zeros(batch, dtype=torch.long, device="meta")
    with torch.no_grad():
        return _count(lambda: _unet()(x, t, encoder_hidden_states=c))


@functools.cache
def vae_encode(size: int) -> float:
    x = _meta(1, 3, size, size)
    with torch.no_grad():
        return _count(lambda: _vae().encode(x))


@functools.cache
def vae_decode(size: int) -> float:
    z = _meta(1, 4, size // 8, size // 8)
    with torch.no_grad():
        return _count(lambda: _vae().decode(z))


@functools.cache
def vae_decoder_train_step(size: int) -> float:
    vae = _vae()
    vae.requires_grad_(False)
    vae.decoder.requires_grad_(True)
    z = _meta(1, 4, size // 8, size // 8)
    target = _meta(1, 3, size, size)

    def step() -> None:
        out = vae.decode(z).sample
        ((out - target) ** 2).mean().backward()

    try:
        return _count(step)
    finally:
        vae.requires_grad_(False)


@functools.cache
def depth_forward(arch: str, size: int) -> float:
    x = _meta(1, 3, size, size)
    with torch.no_grad():
        return _count(lambda: _depth_model(arch)(pixel_values=x))


@functools.cache
def depth_train_step(arch: str, size: int) -> float:
    m = _depth_model(arch)
    m.requires_grad_(True)
    x = _meta(1, 3, size, size)
    target = _meta(1, size, size)

    def step() -> None:
        (m(pixel_values=x).predicted_depth - target).abs().mean().backward()

    try:
        return _count(step)
    finally:
        m.requires_grad_(False)


# ---------------------------------------------------------------------------------------------
# Recipes
# ---------------------------------------------------------------------------------------------

def frame_recipe(*, image: int = 512, steps: int, guidance: float, border: int, decoder_ft: int,
                 depth_model: str, depth_ft: int, depth_after_measure: bool) -> dict[str, float]:
    """FLOPs per steady-state frame, by component."""
    canvas = int(math.ceil((image + 2 * border) / 8) * 8)
    batch = 2 if guidance > 1 else 1
    arch, dsize = DEPTH_MODELS[depth_model]
    parts = {
        "text encoder": text_encoder(batch),
        f"UNet x{steps} ({canvas}px, batch {batch})": steps * unet_step(canvas // 8, batch),
        f"VAE encode + {2 if decoder_ft else 1} decode ({canvas}px)":
            vae_encode(canvas) + (2 if decoder_ft else 1) * vae_decode(canvas),
    }
    if decoder_ft:
        parts[f"decoder finetune x{decoder_ft} ({canvas}px)"] = decoder_ft * vae_decoder_train_step(canvas)
    n_fwd = 1 + (1 if depth_ft and depth_after_measure else 0)
    parts[f"depth {arch} x{n_fwd} fwd ({dsize}px)"] = n_fwd * depth_forward(arch, dsize)
    if depth_ft:
        parts[f"depth finetune x{depth_ft} ({dsize}px)"] = depth_ft * depth_train_step(arch, dsize)
    return parts


def scenescape_recipe() -> dict[str, float]:
    return frame_recipe(steps=50, guidance=7.5, border=44, decoder_ft=100, depth_model="Intel/dpt-large",
                        depth_ft=300, depth_after_measure=False)


def preset_recipe(path: Path) -> dict[str, float]:
    from scenescape.backends.depth.transformers import TransformersDepth
    from scenescape.backends.inpaint.diffusers import DiffusersInpainter
    from scenescape.config import from_dict, load_config
    from scenescape.pipelines.scene import SceneConfig

    cfg = load_config(SceneConfig, path)
    if cfg.inpainter.name != "diffusers" or cfg.depth.name != "transformers":
        raise SystemExit(f"{path}: frame_cost counts diffusers inpainting + transformers depth presets only")
    inp = from_dict(DiffusersInpainter.Config, cfg.inpainter.options)
    dep = from_dict(TransformersDepth.Config, cfg.depth.options)
    if inp.model not in SD_INPAINT_MODELS:
        raise SystemExit(f"{path}: no architecture config for inpainting model {inp.model}")
    if dep.model not in DEPTH_MODELS:
        raise SystemExit(f"{path}: no architecture config for depth model {dep.model}")
    if cfg.width != 512 or cfg.height != 512:
        raise SystemExit(f"{path}: frame_cost is defined at 512x512, the preset says {cfg.width}x{cfg.height}")
    return frame_recipe(steps=inp.steps, guidance=inp.guidance, border=inp.outpaint_border,
                        decoder_ft=inp.decoder_finetune_steps, depth_model=dep.model, depth_ft=dep.finetune_steps,
                        depth_after_measure=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--no-write", action="store_true", help="do not append to benchmarks/RESULTS.md")
    ap.add_argument("--presets", nargs="*", default=["gpu-quality", "gpu-fast", "scenescape-faithful"])
    args = ap.parse_args(argv)

    t0 = time.perf_counter()
    rows: dict[str, dict[str, float]] = {"SceneScape recipe": scenescape_recipe()}
    for name in args.presets:
        rows[name] = preset_recipe(ROOT / "configs" / f"{name}.yaml")
    totals = {k: sum(v.values()) / 1e12 for k, v in rows.items()}
    ss = totals["SceneScape recipe"]
    seconds = time.perf_counter() - t0

    lines = [f"## Frame cost: FLOPs per 512x512 scene frame ({datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC)",
             "",
             "`python benchmarks/frame_cost.py` -- torch FlopCounterMode on real-size SD-2 inpainting UNet / SD VAE /",
             "CLIP ViT-H text encoder / DPT-Large / Depth Anything V2 built from their public configs on the meta device",
             f"(random weights, no download; counted in {seconds:.0f} s on the CPU). Steady-state frame (not frame 0).",
             "",
             "| recipe | TFLOP / frame | vs SceneScape | breakdown (TFLOP) |",
             "|---|---:|---:|---|"]
    for name, parts in rows.items():
        br = "; ".join(f"{k}: {v / 1e12:,.1f}" for k, v in parts.items())
        lines.append(f"| {name} | {totals[name]:,.1f} | 1/{ss / totals[name]:.1f} | {br} |")
    checks = []
    ok = True
    if "gpu-quality" in totals:
        r = totals["gpu-quality"] / ss
        good = r <= 1 / 20
        ok &= good
        checks.append(f"- default preset (gpu-quality) = 1/{1 / r:.1f} of SceneScape per frame "
                      f"(must be <= 1/20): {'PASS' if good else 'FAIL'}")
    if "scenescape-faithful" in totals:
        d = totals["scenescape-faithful"] / ss - 1
        good = abs(d) <= 0.05
        ok &= good
        checks.append(f"- scenescape-faithful = {totals['scenescape-faithful']:,.1f} TFLOP, {d:+.2%} vs the SceneScape "
                      f"recipe (must be within 5%): {'PASS' if good else 'FAIL'}")
    a = ss / SCENESCAPE_ANCHOR_TFLOP - 1
    checks.append(f"- SceneScape recipe counted here: {ss:,.1f} TFLOP vs ~{SCENESCAPE_ANCHOR_TFLOP:,.0f} in the "
                  f"reference notes ({a:+.1%})")
    ssp = rows["SceneScape recipe"]
    ft = sum(v for k, v in ssp.items() if "finetune" in k) / 1e12
    checks.append(f"- SceneScape: {ft / ss:.0%} of its FLOPs are test-time finetuning")
    lines += ["", *checks, ""]
    text = "\n".join(lines)
    print(text)
    if not args.no_write:
        res = ROOT / "benchmarks" / "RESULTS.md"
        with open(res, "a", encoding="utf-8") as f:  # append only: other benchmarks write here too
            f.write("\n" + text + "\n")
        print(f"appended to {res}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
