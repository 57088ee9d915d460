"""Typicality of distilled samples: does a rule return samples, or modes? No weights needed.

The score model is exact: :class:`scenescape.backends.guidance.GaussianMixtureScoreModel`, a
Gaussian mixture over tiny images (3x6x6) whose noisy score has a closed form. The *prompt* picks
the conditional mixture: four components, each a coloured square (hues 0, 90, 180, 270 degrees,
HSV saturation 0.5) on a light-grey background. The *unconditional* mixture adds four components
that the prompt excludes (the same squares in grey, at other brightnesses), so classifier-free
guidance pushes away from grey -- towards saturated colours -- as it does with a text-to-image model.

Each rule distils ``--particles`` images at once (the NeRF's colour is a sigmoid, so each particle
is ``sigmoid(logits)``; Adam on the logits, ``--steps`` steps), from ``--seeds`` seeds, through the
product's own ``ScoreDistillationGuidance`` with the rule chosen by name. Reported per rule and
guidance scale, against exact samples of the conditional mixture (the "sample" row):

* ``dist``: RMS distance (image units, per value) of a result to its nearest component mean;
* ``spread``: RMS deviation of results from the centroid of the results nearest the same
  component, divided by the components' own standard deviation (1 = as spread as samples,
  0 = every run returns the same image for that component: a mode);
* ``sat``: mean HSV saturation of the coloured square (samples ~0.5); ``clip``: fraction of values
  within 0.02 of 0 or 1 (over-saturated, sigmoid-clipped);
* ``modes``: how many of the 4 components the results land nearest to.

Usage: ``python benchmarks/typicality.py [--steps 400] [--particles 8] [--seeds 3] [--no-write]``.
Appends a dated section to ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import colorsys
import datetime as dt
import os
import platform
import time
from pathlib import Path

import torch

from scenescape.backends import GUIDANCE_RULES
from scenescape.backends.guidance import (
    GaussianMixtureScoreModel,
    ScoreDistillationConfig,
    ScoreDistillationGuidance,
)

ROOT = Path(__file__).resolve().parents[1]
SIZE = 6
STD = 0.12  # per-value std of each component in latent units ([-1, 1]); 0.06 in image units
RULES = [("sds", 1.0), ("sds", 7.5), ("sds", 100.0), ("sjc", 7.5), ("sjc", 100.0), ("csd", 7.5), ("csd", 40.0),
         ("nfsd", 7.5), ("nfsd", 100.0), ("vsd", 1.0), ("vsd", 7.5), ("vsd", 100.0)]


def _square(rgb: tuple[float, float, float], bg: float = 0.8) -> torch.Tensor:
    img = torch.full((3, SIZE, SIZE), bg)
    img[:, 1:SIZE - 1, 1:SIZE - 1] = torch.tensor(rgb).view(3, 1, 1)
    return img


def build_mixture() -> tuple[GaussianMixtureScoreModel, torch.Tensor]:
    """The benchmark's mixture and its ``(8, 3, 6, 6)`` component means in image units."""
    means = [_square(colorsys.hsv_to_rgb(h / 360.0, 0.5, 0.7)) for h in (0, 90, 180, 270)]
    means += [_square((v, v, v)) for v in (0.35, 0.5, 0.6, 0.7)]
    mu = torch.stack(means)
    model = GaussianMixtureScoreModel(mu * 2 - 1, torch.full((8,), STD), torch.ones(8),
                                      torch.tensor([True] * 4 + [False] * 4))
    return model, mu


def saturation(images: torch.Tensor) -> torch.Tensor:
    """``(N,)`` mean HSV saturation of the inner square of ``(N, 3, S, S)`` images in [0, 1]."""
    inner = images[:, :, 1:SIZE - 1, 1:SIZE - 1].clamp(0, 1)
    mx, mn = inner.max(1).values, inner.min(1).values
    return ((mx - mn) / mx.clamp_min(1e-6)).flatten(1).mean(1)


def metrics(images: torch.Tensor, mu: torch.Tensor) -> dict[str, float]:
    """``images (N, 3, S, S)`` in [0, 1] against the 4 conditional means ``mu[:4]``."""
    d = torch.cdist(images.flatten(1), mu[:4].flatten(1)) / images[0].numel() ** 0.5  # RMS per value
    near, idx = d.min(1)
    std_img = STD / 2
    clip = ((images < 0.02) | (images > 0.98)).float().mean()
    flat = images.flatten(1)
    dev, n = 0.0, 0
    for k in idx.unique().tolist():  # deviation around each cluster's own centroid (variance, not bias)
        sel = flat[idx == k]
        if sel.shape[0] > 1:
            dev += float(((sel - sel.mean(0)) ** 2).sum() * sel.shape[0] / (sel.shape[0] - 1))
            n += sel.numel()
    spread = (dev / max(n, 1)) ** 0.5 / std_img
    return {"dist": float(near.mean()), "spread": spread,
            "sat": float(saturation(images).mean()), "clip": float(clip), "modes": int(idx.unique().numel())}


def distil(mode: str, scale: float, seed: int, particles: int, steps: int, lr: float,
           model: GaussianMixtureScoreModel) -> torch.Tensor:
    """``(particles, 3, S, S)`` results of the rule ``mode`` at guidance ``scale`` (the product's guidance)."""
    cfg = ScoreDistillationConfig(mode=mode, guidance_scale=scale, vsd_lora_steps=2, vsd_lr=1e-3,
                                  vsd_camera_condition=False)
    guidance = ScoreDistillationGuidance()
    guidance.cfg, guidance.model = cfg, model
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(particles, 3, SIZE, SIZE, generator=g) * 0.5).requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=lr)
    for step in range(steps):
        img = torch.sigmoid(logits)
        loss = guidance.step(img, ["a coloured square"] * particles,
                             {"step": step, "max_steps": steps, "generator": g})
        opt.zero_grad(set_to_none=True)
        (loss * particles).backward()  # per-particle gradients independent of the batch size
        opt.step()
    return torch.sigmoid(logits.detach())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--particles", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rules", default="", help="comma-separated rule:scale pairs (default: all)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, mu = build_mixture()
    rules = RULES if not args.rules else [(r.split(":")[0], float(r.split(":")[1])) for r in args.rules.split(",")]
    missing = [m for m, _ in rules if m not in GUIDANCE_RULES.names()]
    if missing:
        raise SystemExit(f"unknown rules {missing}")
    rows = []
    samples = ((model.sample(args.particles * args.seeds, torch.Generator().manual_seed(0)) + 1) / 2)
    rows.append({"rule": "sample", "scale": "-", **metrics(samples.clamp(0, 1), mu), "seconds": 0.0})
    for mode, scale in rules:
        t0 = time.time()
        res = torch.cat([distil(mode, scale, 1000 + s, args.particles, args.steps, args.lr, model)
                         for s in range(args.seeds)])
        rows.append({"rule": mode, "scale": scale, **metrics(res, mu), "seconds": time.time() - t0})
        print(rows[-1], flush=True)
    header = "| rule | guidance | dist to nearest mode | spread / sample std | saturation | clipped | modes hit |\n"
    header += "|---|---:|---:|---:|---:|---:|---:|\n"
    table = header + "".join(f"| {r['rule']} | {r['scale']} | {r['dist']:.3f} | {r['spread']:.2f} | {r['sat']:.2f} | "
                             f"{r['clip']:.2f} | {r['modes']} |\n" for r in rows)
    print(table)
    if args.no_write:
        return
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    text = (f"\n## Typicality of score distillation rules, Gaussian-mixture score model ({now})\n\n"
            f"`python benchmarks/typicality.py --steps {args.steps} --particles {args.particles} --seeds {args.seeds}` "
            f"-- exact noisy score of a mixture of 4 prompted components (coloured squares, HSV saturation 0.5, "
            f"std {STD / 2} per value in image units) and 4 unprompted grey ones; {args.particles} particles x "
            f"{args.seeds} seeds per row, Adam lr {args.lr} on sigmoid logits; 'sample' = exact samples of the "
            f"prompted mixture. CPU ({platform.machine()}, {args.threads} thread(s), load average {load:.1f}).\n\n"
            + table)
    with open(ROOT / "benchmarks" / "RESULTS.md", "a", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
