"""Model resolution shared by the model backends (diffusers, transformers).

A model is named either by a Hugging Face hub id (``"stabilityai/stable-diffusion-2-inpainting"``)
or by a local folder (anything saved with ``save_pretrained``). Rules, the same for every backend:

* A local folder is used as is (it must hold ``model_index.json`` for a diffusers pipeline or
  ``config.json`` for a transformers model).
* A hub id is looked up in the ordinary Hugging Face cache (``HF_HOME`` / ``HF_HUB_CACHE``). When
  it is not cached and the hub may be used, ``from_pretrained`` downloads it into that cache.
* ``HF_HUB_OFFLINE=1`` (read when a model is resolved, not only at import) means: never touch the
  network; a model that is not cached is an error.
* Any model that cannot be had raises :class:`scenescape.errors.ModelNotFoundError` with ONE
  message naming the model and how to get it; the CLI prints it without a traceback.
* Weights load from safetensors only (``use_safetensors=True``); ``trust_remote_code`` is never set.

Device and dtype: ``"auto"`` picks cuda, then mps, then cpu; dtype ``"auto"`` is float16 on a GPU
and float32 on the CPU (``"fp16"``, ``"bf16"``, ``"fp32"`` force one).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from scenescape.devices import pick_device  # noqa: F401  (re-exported: backends use it)
from scenescape.errors import InputError, ModelNotFoundError

# kind -> the file that marks a complete model folder, and what to download for it.
MODEL_KINDS: dict[str, dict[str, Any]] = {
    "diffusers": {
        "marker": "model_index.json",
        "allow": ["model_index.json", "*/*.json", "*/*.txt", "*/*.safetensors"],
        "ignore": ["*.fp16.safetensors", "*non_ema*", "*.ckpt", "*.bin"],
        "library": "diffusers",
    },
    "transformers": {
        "marker": "config.json",
        "allow": ["*.json", "*.txt", "*.safetensors"],
        "ignore": ["*.bin", "*.ckpt", "*.pt", "*.pth", "*.h5", "*.msgpack", "*.onnx"],
        "library": "transformers",
    },
}

DTYPES = ("auto", "fp16", "bf16", "fp32")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set to a true value."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def fetch_command(model_id: str, kind: str) -> str:
    """The shell command that downloads ``model_id`` (safetensors and configs only) into the HF cache."""
    spec = MODEL_KINDS[_check_kind(kind)]
    include = " ".join(f"--include '{p}'" for p in spec["allow"])
    exclude = " ".join(f"--exclude '{p}'" for p in spec["ignore"])
    return f"hf download {model_id} {include} {exclude}"


def _check_kind(kind: str) -> str:
    if kind not in MODEL_KINDS:
        raise InputError(f"model kind must be one of {sorted(MODEL_KINDS)}, got {kind!r}")
    return kind


def looks_like_path(model_id: str) -> bool:
    """A name meant as a folder: absolute, relative with ``./`` or ``../``, ``~``, or existing."""
    s = str(model_id)
    return (
        s.startswith(("/", "./", "../", "~", ".\\"))
        or os.path.isabs(s)
        or os.path.exists(os.path.expanduser(s))
        or s.count("/") > 1
    )


@dataclasses.dataclass
class ModelStatus:
    """Where a model is: ``present`` locally (``location`` = folder) or not (``location`` = why)."""

    model_id: str
    kind: str
    present: bool
    location: str
    source: str  # "folder", "cache" or "missing"


def model_status(model_id: str, kind: str) -> ModelStatus:
    """Is ``model_id`` available without network? Never downloads."""
    _check_kind(kind)
    marker = MODEL_KINDS[kind]["marker"]
    if not model_id or not str(model_id).strip():
        return ModelStatus(str(model_id), kind, False, "no model id configured", "missing")
    if looks_like_path(model_id):
        folder = Path(os.path.expanduser(str(model_id)))
        if not folder.is_dir():
            return ModelStatus(model_id, kind, False, f"folder '{folder}' does not exist", "missing")
        if not (folder / marker).is_file():
            return ModelStatus(
                model_id, kind, False, f"folder '{folder}' has no {marker} (not a {kind} model)", "missing"
            )
        return ModelStatus(model_id, kind, True, str(folder), "folder")
    snapshot = cached_snapshot(model_id, marker)
    if snapshot is None:
        return ModelStatus(model_id, kind, False, "not in the Hugging Face cache", "missing")
    return ModelStatus(model_id, kind, True, snapshot, "cache")


def cached_snapshot(repo_id: str, marker: str) -> str | None:
    """The cached snapshot folder of ``repo_id`` holding ``marker``, or None. Never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers/transformers
        return None
    try:
        hit = try_to_load_from_cache(repo_id, marker)
    except Exception:  # an id that is not a valid repo name is simply not cached
        return None
    if isinstance(hit, str) and os.path.isfile(hit):
        return str(Path(hit).parent)
    return None


def _not_found(model_id: str, kind: str, why: str) -> ModelNotFoundError:
    if looks_like_path(model_id):
        how = f"pass a folder saved with save_pretrained ({MODEL_KINDS[kind]['marker']} inside) or a hub id"
    else:
        how = (
            f"on a machine with network access run `scenescape models --download` with your config "
            f"(or `hf download {model_id}`) and copy the Hugging Face cache (~/.cache/huggingface) here, "
            f"or pass a local folder saved with save_pretrained"
        )
    return ModelNotFoundError(f"model '{model_id}' is not available ({why}); {how}")


def resolve_model(model_id: str, kind: str) -> str:
    """Where ``from_pretrained`` should load ``model_id`` from: a local folder, or the hub id.

    ``kind`` is ``"diffusers"`` (a pipeline folder) or ``"transformers"`` (a model folder).
    Returns the folder (local or cached snapshot) when the model is present; the hub id when it is
    not cached but the hub may be used (``from_pretrained`` then downloads it into the HF cache).
    Raises :class:`ModelNotFoundError` (one message naming the model and how to get it) when the
    folder is missing or incomplete, or the id is not cached and ``HF_HUB_OFFLINE`` is set.
    """
    status = model_status(model_id, kind)
    if status.present:
        return status.location
    if looks_like_path(model_id) or not str(model_id).strip():
        raise _not_found(str(model_id), kind, status.location)
    if hub_offline():
        raise _not_found(model_id, kind, "not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    return model_id


def download_model(model_id: str, kind: str) -> str:
    """Download ``model_id`` (configs, tokenizer files and safetensors only) into the HF cache."""
    status = model_status(model_id, kind)
    if status.source == "folder":
        return status.location
    if looks_like_path(model_id):
        raise _not_found(model_id, kind, status.location)
    if hub_offline():
        raise _not_found(model_id, kind, "HF_HUB_OFFLINE is set, so it cannot be downloaded")
    from huggingface_hub import snapshot_download

    spec = MODEL_KINDS[kind]
    try:
        return snapshot_download(
            model_id, allow_patterns=spec["allow"], ignore_patterns=spec["ignore"], library_name="scenescape"
        )
    except Exception as e:  # network, auth, unknown repo: one message
        raise _not_found(model_id, kind, f"download failed: {type(e).__name__}: {e}") from None


def load_pretrained(loader: Any, model_id: str, kind: str, *, weights: bool = True, **kwargs: Any) -> Any:
    """``loader(resolve_model(model_id, kind), use_safetensors=True, ...)`` with errors made readable.

    ``loader`` is a ``from_pretrained`` bound method (a diffusers pipeline class or a transformers
    Auto class); ``weights=False`` for loaders without weights (image processors, tokenizers). ``trust_remote_code`` is never passed as True; ``local_files_only`` follows
    ``HF_HUB_OFFLINE``. Any loading failure of a missing or incomplete model becomes a
    :class:`ModelNotFoundError`.
    """
    if kwargs.get("trust_remote_code"):
        raise InputError("trust_remote_code is never enabled by scenescape")
    source = resolve_model(model_id, kind)
    if weights:
        kwargs["use_safetensors"] = True
    if source != model_id or hub_offline():
        kwargs.setdefault("local_files_only", True)
    try:
        return loader(source, **kwargs)
    except (OSError, EnvironmentError, ValueError) as e:  # noqa: UP024 - both names kept for clarity
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _not_found(model_id, kind, f"loading failed: {msg[:300]}") from None


def backend_config(cls: Any, config: Any, device: Any, kwargs: dict) -> Any:
    """A model backend's config: ``config`` (or ``cls.Config(**kwargs)``), with ``device`` (the
    pipeline's) filled in unless the options name a device themselves."""
    import dataclasses

    cfg = config if config is not None else cls.Config(**kwargs)
    if device is not None and cfg.device == "auto":
        cfg = dataclasses.replace(cfg, device=str(device))
    return cfg


def pick_dtype(name: str, device: Any) -> Any:
    """``"auto"`` -> float16 on cuda/mps, float32 on cpu; ``fp16``/``bf16``/``fp32`` force one."""
    import torch

    if name not in DTYPES:
        raise InputError(f"dtype must be one of {list(DTYPES)}, got {name!r}")
    if name == "auto":
        return torch.float16 if getattr(device, "type", str(device)) in ("cuda", "mps") else torch.float32
    return {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[name]
