"""Tiny random-weight models, saved as real model folders, for tests and offline demos.

Each builder creates the model from a config (no download), saves it with ``save_pretrained``
(safetensors) into ``folder`` and returns the folder as a string. The folder is then passed as the
model id, so tests exercise exactly the ``from_pretrained`` path users take with hub ids.

* :func:`make_tiny_sd` -- a Stable Diffusion (or SD inpainting) pipeline folder: a tiny
  ``UNet2DConditionModel`` (``in_channels`` 9 for inpainting, 4 otherwise; ``sample_size`` 64 so
  512x512 works), a 4-block ``AutoencoderKL`` (downscale 8, like real SD), a tiny
  ``CLIPTextModel``, a ``CLIPTokenizer`` built from an in-memory byte-level vocabulary, a DDIM
  scheduler config and ``model_index.json``.
* :func:`make_tiny_depth` -- a tiny DPT or Depth Anything depth model with its image processor.
* :func:`make_tiny_clip` -- a tiny ``CLIPModel`` (text and vision towers) with its tokenizer and image
  processor (for CLIP scores of frames and inpainting candidates).

Builds are cached per process: the first build of a given kind and seed is written to a private
temporary folder and later calls copy that folder (a few milliseconds) instead of rebuilding.
Outputs are random but deterministic for a given seed.
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import tempfile
import threading
from pathlib import Path

from scenescape.errors import InputError

_LOCK = threading.Lock()
_CACHE: dict[tuple, str] = {}
_CACHE_ROOT: str | None = None

TOKENIZER_MAX_LENGTH = 77


def _cache_root() -> str:
    global _CACHE_ROOT
    if _CACHE_ROOT is None:
        _CACHE_ROOT = tempfile.mkdtemp(prefix="scenescape-tiny-")
        atexit.register(shutil.rmtree, _CACHE_ROOT, True)
    return _CACHE_ROOT


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP byte -> printable unicode character table (256 entries)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("\xa1"), ord("\xac") + 1))
        + list(range(ord("\xae"), ord("\xff") + 1))
    )
    chars = list(printable)
    n = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + n)
            n += 1
    return dict(zip(printable, [chr(c) for c in chars]))


def tiny_clip_vocab() -> tuple[dict[str, int], list[str]]:
    """A byte-level CLIP vocabulary: every byte, every byte + ``</w>``, a few merges, BOS/EOS.

    Any text can be tokenised with it (no unknown tokens). Returns ``(vocab, merges)``.
    """
    symbols = list(_bytes_to_unicode().values())
    vocab: dict[str, int] = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    # A handful of merges so the BPE model has real merge rules to apply.
    merges = ["t h", "th e</w>", "a n", "i n", "e r", "o n"]
    for m in merges:
        merged = m.replace(" ", "")
        if merged not in vocab:
            vocab[merged] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return vocab, merges


def _write_tokenizer(folder: Path) -> int:
    """Write ``vocab.json`` + ``merges.txt`` and save a ``CLIPTokenizer`` loaded from them."""
    from transformers import CLIPTokenizer

    vocab, merges = tiny_clip_vocab()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=TOKENIZER_MAX_LENGTH)
    tok.save_pretrained(str(folder))
    return len(vocab)


def _build_sd(folder: Path, inpainting: bool, seed: int) -> None:
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = folder / "tokenizer"
    vocab_size = _write_tokenizer(tok_dir)
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=64,
        in_channels=9 if inpainting else 4,
        out_channels=4,
        layers_per_block=1,
        block_out_channels=(32, 64),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=(2, 4),
        norm_num_groups=16,
        use_linear_projection=True,
    )
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 8, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=512,
        mid_block_add_attention=False,
    )
    torch.manual_seed(seed + 2)
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=vocab_size,
            hidden_size=32,
            intermediate_size=37,
            num_hidden_layers=2,
            num_attention_heads=4,
            max_position_embeddings=TOKENIZER_MAX_LENGTH,
            projection_dim=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
    )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    cls = StableDiffusionInpaintPipeline if inpainting else StableDiffusionPipeline
    pipe = cls(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(str(folder), safe_serialization=True)


def _build_depth(folder: Path, kind: str, seed: int) -> None:
    import torch
    from transformers import (
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        Dinov2Config,
        DPTConfig,
        DPTForDepthEstimation,
    )

    try:  # transformers >= 5 without torchvision: the PIL processor is the one that exists
        from transformers import DPTImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import DPTImageProcessor as Processor

    torch.manual_seed(seed)
    if kind == "dpt":
        config = DPTConfig(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=64,
            patch_size=16,
            backbone_out_indices=(0, 1, 2, 3),
            neck_hidden_sizes=(8, 16, 16, 32),
            fusion_hidden_size=16,
            reassemble_factors=(4, 2, 1, 0.5),
            use_auxiliary_head=False,
            is_hybrid=False,
            initializer_range=0.1,
        )
        model = DPTForDepthEstimation(config)
        multiple = 32
    else:
        backbone = Dinov2Config(
            hidden_size=32,
            num_hidden_layers=4,
            num_attention_heads=4,
            intermediate_size=37,
            image_size=56,
            patch_size=14,
            out_features=["stage1", "stage2", "stage3", "stage4"],
            reshape_hidden_states=False,
            initializer_range=0.1,
        )
        config = DepthAnythingConfig(
            backbone_config=backbone,
            patch_size=14,
            reassemble_hidden_size=32,
            neck_hidden_sizes=(8, 16, 16, 32),
            fusion_hidden_size=16,
            head_hidden_size=8,
            depth_estimation_type="relative",
            initializer_range=0.1,
        )
        model = DepthAnythingForDepthEstimation(config)
        multiple = 14
    # Like the real checkpoints: DPT-Large resizes to a fixed square (its ViT reassembles square
    # token grids); Depth Anything keeps the aspect ratio (multiples of 14).
    processor = Processor(
        do_resize=True,
        size={"height": 64 if kind == "dpt" else 56, "width": 64 if kind == "dpt" else 56},
        keep_aspect_ratio=kind != "dpt",
        ensure_multiple_of=multiple,
        do_normalize=True,
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    # The depth heads end in a ReLU; with small random weights the raw output is ~0 everywhere.
    # A positive bias on the last convolution gives a disparity-like output around 1 that still
    # varies with the image, so alignment and finetuning have something to work with.
    import torch.nn as nn

    last_conv = [m for m in model.head.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        last_conv.bias.fill_(1.0)
    model.eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    processor.save_pretrained(str(folder))


def _build_clip(folder: Path, seed: int) -> None:
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    try:  # transformers >= 5 without torchvision: the PIL processor is the one that exists
        from transformers import CLIPImageProcessorPil as Processor
    except ImportError:  # pragma: no cover - older transformers
        from transformers import CLIPImageProcessor as Processor

    vocab_size = _write_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(str(folder))
    torch.manual_seed(seed)
    config = CLIPConfig(
        text_config={
            "vocab_size": vocab_size, "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2,
            "num_attention_heads": 4, "max_position_embeddings": TOKENIZER_MAX_LENGTH,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
            "image_size": 32, "patch_size": 8, "num_channels": 3,
        },
        projection_dim=16,
    )
    model = CLIPModel(config)
    model.eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    processor = Processor(
        do_resize=True, size={"shortest_edge": 32}, do_center_crop=True, crop_size={"height": 32, "width": 32},
        do_normalize=True, image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    processor.save_pretrained(str(folder))


def _materialise(key: tuple, folder: str | os.PathLike, build) -> str:
    dest = Path(folder)
    with _LOCK:
        src = _CACHE.get(key)
        if src is None or not Path(src).is_dir():
            src = os.path.join(_cache_root(), "-".join(str(k) for k in key))
            shutil.rmtree(src, ignore_errors=True)
            build(Path(src))
            _CACHE[key] = src
        if dest.resolve() != Path(src).resolve():
            if dest.exists() and any(dest.iterdir()):
                marker = dest / ".scenescape-tiny"
                if marker.is_file() and marker.read_text() == repr(key):
                    return str(dest)
                raise FileExistsError(
                    f"folder '{dest}' is not empty; pass a new or empty folder to build a tiny model in"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copytree(src, dest, dirs_exist_ok=True)
            (dest / ".scenescape-tiny").write_text(repr(key))
    return str(dest)


def make_tiny_sd(folder: str | os.PathLike, inpainting: bool = False, seed: int = 0) -> str:
    """Save a tiny random Stable Diffusion (``inpainting=True``: SD inpainting) pipeline to ``folder``.

    The folder loads with ``StableDiffusionPipeline.from_pretrained(folder)`` (or the inpaint /
    auto pipelines) exactly like a hub checkpoint. Latents are 1/8 of the image size; any image
    size that is a multiple of 8 works (512x512 included). Returns ``str(folder)``.
    """
    return _materialise(("sd", bool(inpainting), int(seed)), folder, lambda p: _build_sd(p, bool(inpainting), seed))


def make_tiny_depth(folder: str | os.PathLike, kind: str = "dpt", seed: int = 0) -> str:
    """Save a tiny random depth model (``kind`` ``"dpt"`` or ``"depth_anything"``) to ``folder``.

    Loads with ``AutoModelForDepthEstimation.from_pretrained(folder)`` and
    ``AutoImageProcessor.from_pretrained(folder)``. Both output relative disparity (like DPT-Large
    and Depth Anything V2 relative checkpoints). Returns ``str(folder)``.
    """
    if kind not in ("dpt", "depth_anything"):
        raise InputError(f"kind must be 'dpt' or 'depth_anything', got {kind!r}")
    return _materialise(("depth", kind, int(seed)), folder, lambda p: _build_depth(p, kind, seed))


def make_tiny_clip(folder: str | os.PathLike, seed: int = 0) -> str:
    """Save a tiny random CLIP (``CLIPModel`` + ``CLIPTokenizer`` + image processor, 32x32 input) to ``folder``.

    Loads with ``CLIPModel.from_pretrained(folder)``, ``AutoTokenizer.from_pretrained(folder)`` and
    ``AutoImageProcessor.from_pretrained(folder)`` like ``openai/clip-vit-base-patch32``. Returns ``str(folder)``.
    """
    return _materialise(("clip", int(seed)), folder, lambda p: _build_clip(p, int(seed)))
