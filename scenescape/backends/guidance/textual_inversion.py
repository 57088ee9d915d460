"""Textual inversion (Gal et al.; RealFusion's first stage): learn one token's embedding from a photo.

The token (``<object>`` by default, initialised from ``init_word``'s embedding) is trained with the
diffusion denoising loss ``||eps_theta(x_t, t, text("a photo of a <object>")) - n||^2`` on random
augmented crops of the photo (random resized crops around the object, horizontal flips, the
object composited on a random solid background); every weight of the model stays frozen. Only the
new row of the text encoder's token table changes; it is injected by a forward hook on the
embedding table, so gradients reach exactly that vector.

Files (in the run folder's ``textual_inversion/``)::

    learned_embeds.safetensors   {token: (1, D)} -- the format diffusers' load_textual_inversion reads
    state.pt                     step, embedding, optimiser and generator state (resume), config
    summary.json                 denoising loss on fixed crops before / after

``train_textual_inversion`` reuses a finished embedding with the same config and resumes an
unfinished one.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from scenescape.errors import InputError
from scenescape.io import atomic_path, write_json

TEMPLATES = ("a photo of a {}", "a rendering of a {}", "a cropped photo of the {}", "a close-up photo of a {}",
             "a bright photo of the {}", "a good photo of a {}")
EMBEDS = "learned_embeds.safetensors"
STATE = "state.pt"


@dataclasses.dataclass
class TextualInversionConfig:
    enabled: bool = True
    token: str = "<object>"
    init_word: str = "object"
    steps: int = 500
    lr: float = 5e-3
    batch_size: int = 1
    crop_scale: tuple[float, float] = (0.6, 1.0)
    """Crop side as a fraction of the object's bounding square."""
    resolution: int | None = None
    """Crop size fed to the VAE (None = the guidance model's resolution)."""
    save_every: int = 100
    eval_crops: int = 4

    def __post_init__(self) -> None:
        if not (self.token.startswith("<") and self.token.endswith(">")) or " " in self.token:
            raise InputError(f"textual_inversion.token must look like <name> without spaces, got {self.token!r}")
        if self.steps < 0 or self.batch_size < 1 or self.save_every < 1 or self.eval_crops < 1:
            raise InputError("textual_inversion: steps >= 0, batch_size, save_every and eval_crops >= 1")
        if self.lr <= 0:
            raise InputError(f"textual_inversion.lr must be > 0, got {self.lr}")
        if not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.5:
            raise InputError(f"textual_inversion.crop_scale must be 0 < min <= max <= 1.5, got {list(self.crop_scale)}")


def augmented_crops(image: torch.Tensor, mask: torch.Tensor, n: int, size: int, scale: tuple[float, float],
                    g: torch.Generator) -> torch.Tensor:
    """``n`` crops ``(n, 3, size, size)`` in [0, 1] of ``image (H, W, 3)`` around ``mask (H, W)``.

    Each crop is a square of side ``U(scale) * max(bbox side)`` centred near the object's centre
    (jitter up to 10% of the side), flipped with probability 1/2, with the object composited on a
    random solid colour.
    """
    ys, xs = torch.nonzero(mask, as_tuple=True)
    if ys.numel() == 0:
        raise InputError("textual inversion needs a non-empty object mask")
    h, w = mask.shape
    cy, cx = (ys.min() + ys.max() + 1).item() / 2, (xs.min() + xs.max() + 1).item() / 2
    side0 = float(max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)) * 1.1
    img = image.permute(2, 0, 1)[None].float()
    m = mask[None, None].float()
    out = []
    for _ in range(n):
        u = torch.rand(5, generator=g, dtype=torch.float64).tolist()
        side = side0 * (scale[0] + (scale[1] - scale[0]) * u[0])
        ox, oy = (u[1] - 0.5) * 0.2 * side, (u[2] - 0.5) * 0.2 * side
        # affine grid: output [-1, 1] -> input pixels centred at (cx + ox, cy + oy), half side side / 2
        theta = torch.tensor([[side / w, 0.0, 2 * (cx + ox) / w - 1], [0.0, side / h, 2 * (cy + oy) / h - 1]],
                             dtype=torch.float32)[None]
        if u[3] < 0.5:
            theta[:, 0, 0] *= -1
        grid = F.affine_grid(theta, [1, 3, size, size], align_corners=False)
        rgb = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        a = F.grid_sample(m, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        bg = torch.rand(3, generator=g).view(1, 3, 1, 1)
        out.append(rgb * a + bg * (1 - a))
    return torch.cat(out).clamp(0, 1)


class _TokenHook:
    """Replaces the placeholder token's row of the embedding lookup by a trainable vector."""

    def __init__(self, model: Any, token_id: int, vector: torch.Tensor):
        self.token_id = token_id
        self.vector = vector
        emb = model.text_encoder.get_input_embeddings()
        self.handle = emb.register_forward_hook(self)
        self._ids: torch.Tensor | None = None
        self.pre = emb.register_forward_pre_hook(self._pre)

    def _pre(self, module: Any, args: Any) -> None:
        self._ids = args[0]

    def __call__(self, module: Any, args: Any, out: torch.Tensor) -> torch.Tensor:
        hit = (self._ids == self.token_id)[..., None]
        return torch.where(hit, self.vector.to(out.dtype).expand_as(out), out)

    def remove(self) -> None:
        self.handle.remove()
        self.pre.remove()


def _add_token(model: Any, cfg: TextualInversionConfig) -> tuple[int, torch.Tensor]:
    tok = model.tokenizer
    if cfg.token in tok.get_vocab():
        raise InputError(f"token {cfg.token!r} is already in the tokenizer; pick another textual_inversion.token")
    init_ids = tok(cfg.init_word, add_special_tokens=False).input_ids
    if not init_ids:
        raise InputError(f"textual_inversion.init_word {cfg.init_word!r} has no tokens")
    table = model.text_encoder.get_input_embeddings().weight
    init = table[init_ids].detach().float().mean(0)
    tok.add_tokens([cfg.token])
    model.text_encoder.resize_token_embeddings(len(tok), mean_resizing=False)
    token_id = tok.convert_tokens_to_ids(cfg.token)
    with torch.no_grad():
        model.text_encoder.get_input_embeddings().weight[token_id] = init.to(table.dtype)
    model._emb_cache.clear()
    return token_id, init


def denoising_loss(model: Any, crops: torch.Tensor, prompts: list[str], t: torch.Tensor, noise: torch.Tensor
                   ) -> torch.Tensor:
    """Mean ``||eps(x_t, t, prompts) - noise||^2`` of crops ``(B, 3, S, S)`` (differentiable w.r.t. the text)."""
    with torch.no_grad():
        x = (crops * 2 - 1).to(model.device, model.dtype)
        z = model.vae.encode(x).latent_dist.mean.float() * model.scaling_factor
        ab = model.alphas_cumprod[t].view(-1, 1, 1, 1)
        x_t = ab.sqrt() * z + (1 - ab).sqrt() * noise.to(z)
    cond = model.embed_with_grad(prompts)
    eps = model.unet(x_t.to(model.dtype), t.to(model.device), encoder_hidden_states=cond.to(model.dtype)).sample
    return F.mse_loss(eps.float(), noise.to(eps.device).float())


def _eval_batch(model: Any, image: torch.Tensor, mask: torch.Tensor, cfg: TextualInversionConfig, size: int,
                seed: int) -> tuple[torch.Tensor, list[str], torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed + 7919)
    crops = augmented_crops(image, mask, cfg.eval_crops, size, cfg.crop_scale, g)
    lat = size // model.vae_scale
    t = torch.linspace(100, 900, cfg.eval_crops).long().to(model.device)
    noise = torch.randn(cfg.eval_crops, model.unet.config.in_channels, lat, lat, generator=g)
    prompts = [TEMPLATES[i % len(TEMPLATES)].format(cfg.token) for i in range(cfg.eval_crops)]
    return crops, prompts, t, noise


def train_textual_inversion(model: Any, image: Any, mask: Any, folder: str | Path, cfg: TextualInversionConfig,
                            seed: int = 0, progress: bool = False) -> Path:
    """Learn ``cfg.token`` for ``model`` (a :class:`StableDiffusionScoreModel`) from ``image (H, W, 3)``
    and ``mask (H, W)``; write ``folder/learned_embeds.safetensors`` and return its path.

    A finished embedding in ``folder`` with the same config is reused; an unfinished one resumes.
    The model is left with the token and its learned row; a fresh model loads the file with
    ``model.load_textual_inversion`` (diffusers' loader).
    """
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    cfg_dict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}
    cfg_dict["seed"] = seed
    cfg_dict["model"] = str(getattr(model, "model_id", ""))
    state_path, embeds_path = folder / STATE, folder / EMBEDS
    state = None
    if state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if state.get("config") != cfg_dict:
            raise InputError(f"'{state_path}' was trained with another textual-inversion config or model; "
                             "use a new run folder")
        if state["step"] >= cfg.steps and embeds_path.exists():
            if cfg.token not in model.tokenizer.get_vocab():
                model.load_textual_inversion(embeds_path, cfg.token)
            return embeds_path
    image_t = torch.as_tensor(np.asarray(image), dtype=torch.float32)
    mask_t = torch.as_tensor(np.asarray(mask)).bool()
    size = int(cfg.resolution or model.resolution)
    token_id, init = _add_token(model, cfg)
    vector = torch.nn.Parameter(init.clone().to(model.device))
    opt = torch.optim.Adam([vector], lr=cfg.lr)
    g = torch.Generator().manual_seed(seed + 104729)
    start, before = 0, None
    if state is not None:
        with torch.no_grad():
            vector.copy_(state["vector"])
        opt.load_state_dict(state["optimizer"])
        g.set_state(state["generator"])
        start, before = int(state["step"]), state.get("loss_before")
    hook = _TokenHook(model, token_id, vector)
    ev = _eval_batch(model, image_t, mask_t, cfg, size, seed)
    lat = size // model.vae_scale
    try:
        if before is None:
            with torch.no_grad():
                before = float(denoising_loss(model, *ev))

        def save(step: int) -> None:
            with atomic_path(state_path) as tmp:
                torch.save({"step": step, "vector": vector.detach().cpu(), "optimizer": opt.state_dict(),
                            "generator": g.get_state(), "config": cfg_dict, "loss_before": before}, tmp)

        bar = None
        if progress and cfg.steps > start:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps - start, desc="textual inversion", unit="step", dynamic_ncols=True)
        for step in range(start, cfg.steps):
            crops = augmented_crops(image_t, mask_t, cfg.batch_size, size, cfg.crop_scale, g)
            t = torch.randint(0, model.alphas_cumprod.shape[0], (cfg.batch_size,), generator=g).to(model.device)
            noise = torch.randn(cfg.batch_size, model.unet.config.in_channels, lat, lat, generator=g)
            pick = torch.randint(0, len(TEMPLATES), (cfg.batch_size,), generator=g).tolist()
            loss = denoising_loss(model, crops, [TEMPLATES[i].format(cfg.token) for i in pick], t, noise)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if bar is not None:
                bar.update(1)
            if (step + 1) % cfg.save_every == 0 and step + 1 < cfg.steps:
                save(step + 1)
        if bar is not None:
            bar.close()
        with torch.no_grad():
            after = float(denoising_loss(model, *ev))
        with atomic_path(embeds_path) as tmp:
            save_file({cfg.token: vector.detach().cpu().float()[None].contiguous()}, str(tmp))
        save(cfg.steps)
        write_json(folder / "summary.json", {"token": cfg.token, "steps": cfg.steps, "loss_before": before,
                                             "loss_after": after, "moved": float((vector.detach().cpu() - init.cpu()).norm())})
    finally:
        hook.remove()
        with torch.no_grad():  # the model keeps the token with its learned row (as diffusers' loader leaves it)
            model.text_encoder.get_input_embeddings().weight[token_id] = vector.detach().to(
                model.text_encoder.get_input_embeddings().weight.dtype)
        model._emb_cache.clear()
        model.learned_tokens.append(cfg.token)
    return embeds_path


__all__ = ["EMBEDS", "TEMPLATES", "TextualInversionConfig", "augmented_crops", "denoising_loss",
           "train_textual_inversion"]
