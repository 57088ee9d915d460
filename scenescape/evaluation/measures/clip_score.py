"""CLIP similarity of frames to the prompt, and its drift along the path.

:class:`ClipScorer` loads any transformers CLIP (a hub id such as ``openai/clip-vit-base-patch32`` or a
folder saved with ``save_pretrained``) through :func:`scenescape.backends.models.load_pretrained`: the same
cache, offline and safetensors rules as every model backend, and a :class:`ModelNotFoundError` naming the
model when it is missing. The CLIP score of an image is ``100 * cos(image embedding, text embedding)``
(the convention of text-to-image papers; CLIPScore's ``2.5 * max(cos, 0)`` is a rescaling of it).
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


def clip_measures(frames: np.ndarray, scorer: ClipScorer, prompt: str) -> dict[str, Any]:
    """Per-frame CLIP score against ``prompt`` (if any) and image drift ``1 - cos(frame i, frame 0)``.

    ``summary``: ``clip_score`` (mean), ``clip_score_first``/``_last``, ``clip_score_slope`` (least-squares
    change per frame: negative = the frames lose the prompt along the path), ``clip_image_drift`` (mean)
    and ``clip_image_drift_final``.
    """
    emb = scorer.image_embeddings(list(frames))
    drift = (1.0 - emb @ emb[0]).astype(np.float64)
    per: dict[str, list[float]] = {"clip_image_drift": [float(x) for x in drift]}
    summary: dict[str, Any] = {"model": scorer.model_id, "clip_image_drift": float(drift[1:].mean()) if len(drift) > 1 else 0.0,
                               "clip_image_drift_final": float(drift[-1])}
    if prompt.strip():
        s = 100.0 * emb @ scorer.text_embedding(prompt)
        per["clip_score"] = [float(x) for x in s]
        x = np.arange(len(s), dtype=np.float64)
        slope = float(np.polyfit(x, s, 1)[0]) if len(s) > 1 else 0.0
        summary.update({"clip_score": float(s.mean()), "clip_score_first": float(s[0]), "clip_score_last": float(s[-1]),
                        "clip_score_slope": slope, "prompt": prompt})
    return {"per_frame": per, "summary": summary}
