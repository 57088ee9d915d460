"""CLIP similarity of images to a text and to each other (a transformers ``CLIPModel``).

:class:`ClipScorer` loads any transformers CLIP (a hub id such as ``openai/clip-vit-base-patch32`` or a
folder saved with ``save_pretrained``) through :func:`scenescape.backends.models.load_pretrained`: the same
cache, offline and safetensors rules as every model backend, and a :class:`ModelNotFoundError` naming the
model when it is missing. Used by ``scenescape evaluate`` (CLIP score of frames) and by scene mode's
inpainting candidates (``inpainter.candidates``, scored by ``inpainter.clip``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from scenescape.errors import InputError


class ClipScorer:
    """A CLIP model for image-text and image-image similarity.

    Args:
        model: hub id or local folder of a transformers CLIP (``CLIPModel`` with a tokenizer and an image
            processor).
        device: ``auto`` (cuda, mps, cpu), ``cpu``, ``cuda[:N]``.
        batch_size: images per forward pass.
    """

    def __init__(self, model: str, device: str = "auto", batch_size: int = 16):
        try:
            import torch  # noqa: F401
            from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
        except ImportError as e:  # pragma: no cover - transformers is in the models extra
            raise InputError("CLIP scores need transformers: pip install 'scenescape[models]'") from e
        from scenescape.backends.models import load_pretrained, pick_device

        if not model or not str(model).strip():
            raise InputError("no CLIP model given; pass a hub id (openai/clip-vit-base-patch32) or a folder")
        self.model_id = str(model)
        self.device = pick_device(device)
        self.batch_size = int(batch_size)
        self.model = load_pretrained(CLIPModel.from_pretrained, self.model_id, "transformers",
                                     trust_remote_code=False).to(self.device).eval()
        self.tokenizer = load_pretrained(AutoTokenizer.from_pretrained, self.model_id, "transformers", weights=False)
        self.processor = load_pretrained(AutoImageProcessor.from_pretrained, self.model_id, "transformers",
                                         weights=False)
        self._text_cache: dict[str, Any] = {}

    @staticmethod
    def _pooled(out: Any) -> Any:
        return out if hasattr(out, "norm") else out.pooler_output  # transformers 5 returns a model output

    def image_embeddings(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """``(N, D)`` unit CLIP embeddings of ``(H, W, 3)`` images in [0, 1]."""
        import torch

        out = []
        for k in range(0, len(images), self.batch_size):
            batch = [np.clip(np.asarray(im, np.float32) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                     for im in images[k:k + self.batch_size]]
            pv = self.processor(images=batch, return_tensors="pt")["pixel_values"].to(self.device)
            with torch.no_grad():
                e = self._pooled(self.model.get_image_features(pixel_values=pv)).float()
            out.append(torch.nn.functional.normalize(e, dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 1), np.float32)

    def text_embedding(self, text: str) -> np.ndarray:
        """``(D,)`` unit CLIP embedding of ``text`` (cached)."""
        import torch

        if text not in self._text_cache:
            tok = self.tokenizer([text], padding=True, truncation=True, return_tensors="pt").to(self.device)
            with torch.no_grad():
                e = self._pooled(self.model.get_text_features(**tok)).float()
            self._text_cache[text] = torch.nn.functional.normalize(e, dim=-1)[0].cpu().numpy()
        return self._text_cache[text]

    def scores(self, images: Sequence[np.ndarray], text: str) -> np.ndarray:
        """``(N,)`` CLIP scores ``100 * cos`` of each image against ``text``."""
        return 100.0 * self.image_embeddings(images) @ self.text_embedding(text)


__all__ = ["ClipScorer"]
