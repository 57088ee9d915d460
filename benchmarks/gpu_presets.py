"""Seconds per frame and peak memory of every scene preset, with random-weight models, through the product.

Model folders are written first (safetensors, loaded by the backends exactly like hub checkpoints):

* real size (default): the SD-2 inpainting pipeline (UNet, VAE, OpenCLIP ViT-H text tower), an SD-2.1-base
  text-to-image pipeline (for presets with a text-to-image first frame) and the depth models the presets
  name (DPT-Large, Depth Anything V2), built from the public architecture configs in
  ``benchmarks/frame_cost.py`` with random weights (fp16 on CUDA to halve the writing);
* ``--tiny``: the tiny random models of :mod:`scenescape.testing` (the CPU smoke test).

Then, for each preset, a FRESH subprocess runs ``ScenePipeline.from_config(configs/<preset>.yaml)`` with the
model ids pointed at those folders, ``frames`` frames at ``--size``, and reports the per-frame seconds
(``SceneResult.frame_times``; frame 0 apart, and frame 1, which loads the inpainter), the stage timings, and on CUDA ``torch.cuda.max_memory_allocated``
/ ``max_memory_reserved``; on the CPU the process's ``ru_maxrss``.

Usage: ``python benchmarks/gpu_presets.py [--tiny] [--size 512] [--frames 3] [--device auto|cuda|cpu] [--steps N] [--hold-all]
[--presets gpu-fast,gpu-quality,scenescape-faithful] [--models DIR] [--json OUT] [--write]``.
``benchmarks/gpu.sh`` runs it on a CUDA machine within a time budget.
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
PRESETS = ("gpu-fast", "gpu-quality", "scenescape-faithful")


def _real_sd(folder: Path, inpainting: bool, device: str) -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sys.path.insert(0, str(HERE))
    import frame_cost as fc

    from scenescape.testing.tiny import _write_tokenizer

    if (folder / "model_index.json").exists():
        return
    vocab = _write_tokenizer(folder / "tokenizer")
    tok = CLIPTokenizer.from_pretrained(str(folder / "tokenizer"))
    dtype = torch.float16 if device == "cuda" else torch.float32
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**dict(fc.UNET_SD2, in_channels=9 if inpainting else 4)).to(dtype)
        vae = AutoencoderKL(**fc.VAE_SD).to(dtype)
        text = CLIPTextModel(CLIPTextConfig(**dict(fc.CLIP_H_TEXT, vocab_size=max(vocab, 49408),
                                                   bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                                                   pad_token_id=tok.pad_token_id))).to(dtype)
    sched = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                          set_alpha_to_one=False, steps_offset=1)
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = cls(vae=vae, text_encoder=text, tokenizer=tok, unet=unet, scheduler=sched, safety_checker=None,
               feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(folder), safe_serialization=True)  # model_index.json last: a complete folder


def _real_depth(folder: Path, arch: str, device: str) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    import frame_cost as fc

    try:
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import DPTImageProcessor as Processor

    if (folder / "config.json").exists():
        return
    torch.manual_seed(0)
    model = fc.build_depth_model(arch, device).eval()
    if device == "cuda":
        model = model.half()
    size = 384 if arch == "dpt_large" else 518
    proc = Processor(do_resize=True, size={"height": size, "width": size}, keep_aspect_ratio=arch != "dpt_large",
                     ensure_multiple_of=32 if arch == "dpt_large" else 14, do_normalize=True,
                     image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5])
    model.save_pretrained(str(folder), safe_serialization=True)
    proc.save_pretrained(str(folder))


def prepare_models(models: Path, presets: list[str], tiny: bool, device: str) -> dict[str, str]:
    """Model folders for the presets; returns ``{hub id: folder}``."""
    sys.path.insert(0, str(HERE))
    from frame_cost import DEPTH_MODELS

    from scenescape.config import load_yaml

    models.mkdir(parents=True, exist_ok=True)
    ids: dict[str, str] = {}
    for name in presets:
        raw = load_yaml(ROOT / "configs" / f"{name}.yaml")
        for section in ("inpainter", "text_to_image", "depth"):
            sec = raw.get(section) or {}
            mid = (sec.get("options") or {}).get("model")
            if not sec.get("name") or not mid or mid in ids:
                continue
            folder = models / mid.replace("/", "--")
            t0 = time.perf_counter()
            if tiny:
                from scenescape.testing import make_tiny_depth, make_tiny_sd

                if section == "depth":
                    make_tiny_depth(folder, "dpt" if "dpt" in mid.lower() else "depth_anything")
                else:
                    make_tiny_sd(folder, inpainting=section == "inpainter")
            elif section == "depth":
                _real_depth(folder, DEPTH_MODELS[mid][0], device)
            else:
                folder.mkdir(parents=True, exist_ok=True)
                _real_sd(folder, section == "inpainter", device)
            ids[mid] = str(folder)
            print(f"model {mid}: {folder} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return ids


def run_preset(preset: str, ids: dict[str, str], size: int, frames: int, device: str, steps: int = 0,
               hold_all: bool = False) -> dict:
    """In this (fresh) process: one preset, ``frames`` frames.

    ``steps`` > 0 overrides the diffusion steps (a short CPU check of the memory); ``hold_all`` loads every
    model before frame 0 and keeps it (what the pipeline did before the diffusers backends loaded on first
    use and the text-to-image model was released after frame 0), for comparison.
    """
    import torch

    from scenescape.config import load_yaml
    from scenescape.pipelines import ScenePipeline

    raw = load_yaml(ROOT / "configs" / f"{preset}.yaml")
    over = [f"width={size}", f"height={size}", f"focal={500.0 * size / 512}", f"frames={frames}", f"device={device}"]
    for section in ("inpainter", "text_to_image", "depth"):
        sec = raw.get(section) or {}
        mid = (sec.get("options") or {}).get("model")
        if sec.get("name") and mid in ids:
            over.append(f"{section}.options.model={ids[mid]}")
            if steps > 0 and section != "depth":
                over.append(f"{section}.options.steps={steps}")
    cuda = device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    pipe = ScenePipeline.from_config(ROOT / "configs" / f"{preset}.yaml", over)
    if hold_all:
        for b in (pipe.text_to_image, pipe.inpainter):
            if b is not None and hasattr(b, "release"):
                b.pipe  # noqa: B018 - loads the weights now
                b.release = lambda: None
    t_build = time.perf_counter() - t0
    res = pipe.run(prompt="a cave with glowing crystals", progress=False)
    out = {"preset": preset, "size": size, "frames": frames, "device": device, "build_s": t_build, "steps": steps,
           "hold_all": hold_all,
           "frame_times": [float(t) for t in res.frame_times], "timings": {k: float(v) for k, v in res.timings.items()},
           "faces": int(res.mesh.num_faces)}
    if cuda:
        torch.cuda.synchronize()
        out["cuda_max_allocated_gb"] = torch.cuda.max_memory_allocated() / 2**30
        out["cuda_max_reserved_gb"] = torch.cuda.max_memory_reserved() / 2**30
        out["gpu"] = torch.cuda.get_device_name(0)
    out["max_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="tiny random models (CPU smoke test)")
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--device", default="auto", choices=["auto", "cuda", "cpu"])
    ap.add_argument("--presets", default=",".join(PRESETS))
    ap.add_argument("--models", default=str(ROOT / "benchmarks" / "out" / "models"))
    ap.add_argument("--timeout", type=float, default=600.0, help="seconds per preset")
    ap.add_argument("--steps", type=int, default=0, help="diffusion steps (0: the presets' own)")
    ap.add_argument("--hold-all", action="store_true",
                    help="load every model up front and keep it (the behaviour before lazy loading), to compare")
    ap.add_argument("--json", default="")
    ap.add_argument("--write", action="store_true", help="append a section to benchmarks/RESULTS.md")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = ap.parse_args()
    import torch

    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    presets = args.presets.split(",")
    if args.child:
        ids = json.loads(os.environ["GPU_PRESETS_IDS"])
        print("RESULT " + json.dumps(run_preset(args.child, ids, args.size, args.frames, device, args.steps,
                                                 args.hold_all)), flush=True)
        return
    t0 = time.perf_counter()
    ids = prepare_models(Path(args.models) / ("tiny" if args.tiny else "real"), presets, args.tiny, device)
    t_models = time.perf_counter() - t0
    results = []
    for preset in presets:
        cmd = [sys.executable, __file__, "--child", preset, "--size", str(args.size), "--frames", str(args.frames),
               "--device", device, "--steps", str(args.steps)] + (["--hold-all"] if args.hold_all else [])
        env = dict(os.environ, GPU_PRESETS_IDS=json.dumps(ids))
        t1 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout, env=env)
            lines = [ln[7:] for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
            r = json.loads(lines[-1]) if p.returncode == 0 and lines else {
                "preset": preset, "error": f"exit {p.returncode}: {(p.stderr.strip().splitlines() or ['?'])[-1][:200]}"}
        except subprocess.TimeoutExpired:
            r = {"preset": preset, "error": f"did not finish in {args.timeout:.0f} s"}
        r["wall_s"] = time.perf_counter() - t1
        results.append(r)
        print(json.dumps(r), flush=True)
    # the diffusion inpainter loads on its first call (frame 1): steady s/frame from frame 2 when there is one
    first = 2 if args.frames > 2 else 1
    lines = [f"| preset | s/frame (frames {first}..{args.frames - 1}) | frame 0 s | frame 1 s (loads the inpainter) | "
             "peak memory (GB) | wall s (incl. load) |", "|---|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['preset']} | {r['error']} | | | | {r['wall_s']:.0f} |")
            continue
        ft = r["frame_times"]
        steady = sum(ft[first:]) / max(1, len(ft) - first)
        mem = (f"{r['cuda_max_allocated_gb']:.2f} allocated / {r['cuda_max_reserved_gb']:.2f} reserved (CUDA)"
               if "cuda_max_allocated_gb" in r else f"{r['max_rss_gb']:.2f} (process RSS)")
        f1 = f"{ft[1]:.2f}" if len(ft) > 1 else "-"
        lines.append(f"| {r['preset']} | {steady:.2f} | {ft[0]:.2f} | {f1} | {mem} | {r['wall_s']:.0f} |")
    total = time.perf_counter() - t0
    print("\n".join(lines))
    print(f"models {t_models:.0f} s, total {total:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    if args.write:
        when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        kind = "tiny random models" if args.tiny else "real-size random-weight models"
        dev = results[0].get("gpu", device) if results else device
        load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
        section = "\n".join(["", f"## Presets end to end: {kind}, {args.size}x{args.size}, {args.frames} frames ({when})",
                             "", f"`python benchmarks/gpu_presets.py{' --tiny' if args.tiny else ''} --size {args.size} "
                             f"--frames {args.frames} --device {device}{f' --steps {args.steps}' if args.steps else ''}"
                             f"{' --hold-all' if args.hold_all else ''}` -- ScenePipeline.from_config(preset) on {dev} "
                             f"({platform.machine()}, {os.cpu_count()} cores, load average {load} at the end); model "
                             f"folders written in {t_models:.0f} s; total {total:.0f} s.", "", *lines, ""])
        with open(HERE / "RESULTS.md", "a", encoding="utf-8") as fh:
            fh.write(section)


if __name__ == "__main__":
    main()
