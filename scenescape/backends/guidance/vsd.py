"""Variational Score Distillation (ProlificDreamer): particles against a learned score of their own.

The renders are particles of a distribution ``q``; VSD moves them along the difference between the
pretrained model's (guided) score and an estimate of ``q``'s score::

    grad = w(t) (eps_pretrained_cfg(x_t, y) - eps_phi(x_t, y, c))

``eps_phi`` is the pretrained model plus a trainable adapter, conditioned on the camera ``c``
(the ``world_to_camera`` matrix flattened to 16 numbers, zero when unknown or dropped):

* Stable Diffusion: a LoRA (``peft``, rank ``vsd_lora_rank``) on the UNet's attention projections
  and a camera embedding added to the UNet's timestep embedding (:meth:`make_vsd_adapter` of the
  score model); both start as the identity (LoRA ``B = 0``, embedding's last layer zero), so at
  step 0 ``eps_phi`` is the pretrained conditional prediction;
* any other score model: :class:`ResidualNoiseAdapter`, the pretrained conditional prediction plus a
  zero-initialised MLP of ``(x_t, t, c)``.

After each distillation step the adapter takes ``vsd_lora_steps`` steps of its own Adam
(``vsd_lr``) on the denoising loss ``||eps_phi(sqrt(ab) z + sqrt(1 - ab) n, t, y, c) - n||^2`` of the
particles' detached latents ``z`` (``t ~ U[vsd_t_min, vsd_t_max]``, camera dropped with probability
``vsd_camera_dropout``). Its parameters and optimiser state are the rule's ``state_dict`` (saved in
the run checkpoint, so a resumed run continues exactly).
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

from scenescape.backends.guidance.base import (
    Rule,
    ScoreDistillationConfig,
    ScoreModel,
    cfg_noise,
    finish_gradient,
    noised_at_step,
    noisy,
    sample_timesteps,
    step_args,
    weight,
)
from scenescape.errors import InputError

CAMERA_DIM = 16


class NoiseAdapter(Protocol):
    def trainable(self) -> list[nn.Parameter]:
        """The parameters VSD's own optimiser trains."""
        ...

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                      camera: torch.Tensor) -> torch.Tensor:
        """Adapted noise prediction for ``x_t (B, c, h, w)`` with the camera ``(B, 16)`` (differentiable)."""
        ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> Any: ...


def camera_vectors(step_info: dict[str, Any], b: int, device: Any) -> torch.Tensor:
    """``(B, 16)`` flattened ``world_to_camera`` of the step's cameras (zeros when it has none)."""
    cams = step_info.get("cameras")
    if not cams:
        return torch.zeros(b, CAMERA_DIM, device=device)
    if len(cams) != b:
        raise InputError(f"VSD got {b} images but {len(cams)} cameras")
    return torch.stack([c.world_to_camera.float().reshape(-1) for c in cams]).to(device)


def timestep_features(t: torch.Tensor, dim: int = 32, n_t: int = 1000) -> torch.Tensor:
    """``(B, dim)`` sinusoidal features of integer timesteps."""
    half = dim // 2
    freqs = torch.exp(-math.log(1000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    a = (t.float() / n_t * 1000.0)[:, None] * freqs[None] / 10.0
    return torch.cat([a.sin(), a.cos()], dim=-1)


class ResidualNoiseAdapter(nn.Module):
    """``eps_phi = eps_model(x_t, t, cond) + MLP([x_t, features(t), camera])`` (last layer zero)."""

    def __init__(self, model: ScoreModel, latent_numel: int, hidden: int = 256, camera: bool = True):
        super().__init__()
        self.model = model
        self.latent_numel = latent_numel
        self.use_camera = camera
        n_in = latent_numel + 32 + (CAMERA_DIM if camera else 0)
        self.net = nn.Sequential(nn.Linear(n_in, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                                 nn.Linear(hidden, latent_numel))
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def trainable(self) -> list[nn.Parameter]:
        return list(self.net.parameters())

    def predict_noise(self, x_t: torch.Tensor, t: torch.Tensor, cond: torch.Tensor,
                      camera: torch.Tensor) -> torch.Tensor:
        if x_t[0].numel() != self.latent_numel:
            raise InputError(f"VSD adapter was built for latents of {self.latent_numel} values, got {x_t[0].numel()}")
        with torch.no_grad():
            base = self.model.predict_noise(x_t, t, cond).float()
        feats = [x_t.reshape(x_t.shape[0], -1).float(), timestep_features(t, 32, self.model.alphas_cumprod.shape[0])]
        if self.use_camera:
            feats.append(camera.float())
        return base + self.net(torch.cat(feats, dim=-1)).view_as(base)

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:  # type: ignore[override]
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], strict: bool = True) -> Any:  # type: ignore[override]
        return self.net.load_state_dict(state, strict=strict)


class VSD(Rule):
    """``mode: vsd``."""

    def __init__(self, cfg: ScoreDistillationConfig, model: ScoreModel):
        super().__init__(cfg, model)
        self.adapter: NoiseAdapter | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self._pending: dict[str, Any] | None = None

    def _ensure(self, latents: torch.Tensor) -> NoiseAdapter:
        if self.adapter is None:
            make = getattr(self.model, "make_vsd_adapter", None)
            if make is not None:
                self.adapter = make(self.cfg)
            else:
                self.adapter = ResidualNoiseAdapter(self.model, int(latents[0].numel()), self.cfg.vsd_hidden,
                                                    self.cfg.vsd_camera_condition).to(latents.device)
            self.optimizer = torch.optim.Adam(self.adapter.trainable(), lr=self.cfg.vsd_lr)
            if self._pending is not None:
                self._load(self._pending)
                self._pending = None
        return self.adapter

    def _camera(self, step_info: dict[str, Any], b: int, device: Any) -> torch.Tensor:
        if not self.cfg.vsd_camera_condition:
            return torch.zeros(b, CAMERA_DIM, device=device)
        return camera_vectors(step_info, b, device)

    @torch.no_grad()
    def gradient(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
                 step_info: dict[str, Any]) -> torch.Tensor:
        adapter = self._ensure(latents)
        step, total, g = step_args(step_info)
        b = latents.shape[0]
        t, x_t, _noise, ab = noised_at_step(self.model, latents, self.cfg, step, total, g)
        eps_pre = cfg_noise(self.model, x_t, t, cond, uncond, self.cfg.scale(step, total))
        cam = self._camera(step_info, b, latents.device)
        eps_phi = adapter.predict_noise(x_t, t, cond, cam).float()
        s_l = self.cfg.vsd_guidance_scale_lora
        if s_l != 1.0:
            eps_phi_u = adapter.predict_noise(x_t, t, uncond, cam).float()
            eps_phi = eps_phi_u + s_l * (eps_phi - eps_phi_u)
        return finish_gradient(weight(ab, self.cfg) * (eps_pre - eps_phi), self.cfg)

    def update(self, latents: torch.Tensor, cond: torch.Tensor, uncond: torch.Tensor,
               step_info: dict[str, Any]) -> dict[str, float]:
        adapter = self._ensure(latents)
        assert self.optimizer is not None
        _, _, g = step_args(step_info)
        b = latents.shape[0]
        cam = self._camera(step_info, b, latents.device)
        z = latents.detach().float()
        losses = []
        for _ in range(self.cfg.vsd_lora_steps):
            t = sample_timesteps(self.model, b, self.cfg.vsd_t_min, self.cfg.vsd_t_max, g, z.device)
            x_t, noise, _ab = noisy(self.model, z, t, g)
            keep = (torch.rand(b, generator=g) >= self.cfg.vsd_camera_dropout).float().to(z.device)[:, None]
            with torch.enable_grad():
                pred = adapter.predict_noise(x_t, t, cond, cam * keep).float()
                loss = F.mse_loss(pred, noise)
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        return {"vsd_lora_loss": sum(losses) / len(losses)}

    def state_dict(self) -> dict[str, Any]:
        if self.adapter is None:
            return dict(self._pending or {})
        assert self.optimizer is not None
        return {"adapter": {k: v.detach().cpu().clone() for k, v in self.adapter.state_dict().items()},
                "optimizer": self.optimizer.state_dict()}

    def _load(self, state: dict[str, Any]) -> None:
        assert self.adapter is not None and self.optimizer is not None
        own = self.adapter.state_dict()
        missing = sorted(set(own) - set(state["adapter"]))
        if missing:
            raise InputError(f"VSD state in the checkpoint lacks {missing[:3]}... (was it saved with another "
                             "model or vsd_lora_rank?)")
        self.adapter.load_state_dict(state["adapter"])
        self.optimizer.load_state_dict(state["optimizer"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not state:
            return
        if self.adapter is None:  # built lazily on the first step (it needs the latent shape)
            self._pending = state
        else:
            self._load(state)


__all__ = ["CAMERA_DIM", "NoiseAdapter", "ResidualNoiseAdapter", "VSD", "camera_vectors", "timestep_features"]
