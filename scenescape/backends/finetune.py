"""SceneScape's test-time finetuning loops (VAE decoder and depth model), as plain functions.

Both loops run Adam on the given parameters for a fixed number of steps and return the loss
history, so callers (and tests) can see what the finetuning did. Neither loop resets anything:
saving and restoring the initial weights ("reset per frame") is the backend's job
(:class:`WeightSnapshot` helps).

* :func:`finetune_decoder` -- make the VAE decoder reproduce the known frame outside the mask
  while keeping the diffusion output inside it: ``loss = MSE_inside(decode(z), x_diff) +
  w * MSE_outside(decode(z), known)`` (SceneScape: 100 steps, lr 1e-4, ``w`` = 100).
* :func:`finetune_depth` -- make the depth model agree with the depth the mesh renders:
  ``loss = mean |predict() - rendered|`` over the pixels where the mesh renders (SceneScape: 300
  steps, lr 1e-7, model reloaded each frame).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import torch

from scenescape.errors import InputError


@dataclasses.dataclass
class FinetuneHistory:
    """Loss per step; ``error_before`` / ``error_after``: the quantity the loop is meant to lower.

    Decoder: the preservation error (MSE to the known frame outside the mask). Depth: the L1 to the
    rendered depth on known pixels. ``after`` is measured after the last step; ``final`` is the
    output (decode or prediction) with the final parameters, computed for that measurement.
    """

    losses: list[float]
    error_before: float
    error_after: float
    final: Any = None


class WeightSnapshot:
    """A copy of a module's weights taken once, restored on demand (reset per frame)."""

    def __init__(self, module: torch.nn.Module):
        self.module = module
        self.state = {k: v.detach().clone() for k, v in module.state_dict().items()}

    def restore(self) -> None:
        self.module.load_state_dict(self.state)


def _masked_mse(a: torch.Tensor, b: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    denom = (w.sum() * a.shape[1]).clamp_min(1.0)
    return (((a - b) ** 2) * w).sum() / denom


def _adam(params: list[torch.nn.Parameter], lr: float, steps: int,
          loss_fn: Callable[[], torch.Tensor]) -> list[float]:
    """Run ``steps`` Adam steps on ``params`` minimising ``loss_fn()``; return the loss per step.

    The parameters require gradients only for the duration of the loop.
    """
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    history: list[float] = []
    try:
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            loss = loss_fn()
            loss.backward()
            opt.step()
            history.append(float(loss.detach()))
    finally:
        for p in params:
            p.requires_grad_(False)
    return history


def finetune_decoder(
    decode: Callable[[], torch.Tensor],
    params: Iterable[torch.nn.Parameter],
    diffusion_output: torch.Tensor,
    known: torch.Tensor,
    mask: torch.Tensor,
    steps: int,
    lr: float,
    preservation_weight: float = 100.0,
) -> FinetuneHistory:
    """Finetune the decoder parameters ``params``.

    Args:
        decode: returns the decoded image ``(1, 3, H, W)`` (any range, the same as the targets) with
            the current parameters, differentiably.
        diffusion_output: ``(1, 3, H, W)`` the decode with the current parameters, before finetuning
            (the target inside the mask; the preservation error before finetuning is measured on it).
        known: ``(1, 3, H, W)`` the known frame (target outside the mask).
        mask: ``(1, 1, H, W)`` or ``(H, W)``; True (or 1) where the pixels are new (inpainted).
        steps, lr: Adam steps and learning rate (``steps`` = 0 does nothing).
        preservation_weight: weight of the outside-the-mask term (SceneScape: 100).
    """
    if steps < 0 or lr <= 0 or preservation_weight < 0:
        raise InputError(f"decoder finetuning needs steps >= 0, lr > 0, weight >= 0; got {steps}, {lr}, "
                         f"{preservation_weight}")
    params = [p for p in params]
    m = mask.float().reshape(1, 1, *mask.shape[-2:]).to(diffusion_output.device)
    inside, outside = m, 1.0 - m
    target_in = diffusion_output.detach().float()
    target_out = known.detach().float()

    def losses(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = out.float()
        pres = _masked_mse(out, target_out, outside)
        return _masked_mse(out, target_in, inside) + preservation_weight * pres, pres

    with torch.no_grad():
        before = float(losses(target_in)[1])
    history: list[float] = []
    if steps > 0:
        history = _adam(params, lr, steps, lambda: losses(decode())[0])
        with torch.no_grad():
            final = decode()
        after = float(losses(final)[1])
    else:
        final, after = diffusion_output.detach(), before
    return FinetuneHistory(history, before, after, final)


def finetune_depth(
    predict: Callable[[], torch.Tensor],
    params: Iterable[torch.nn.Parameter],
    rendered_depth: Any,
    known_mask: Any,
    steps: int,
    lr: float,
) -> FinetuneHistory:
    """Finetune depth-model parameters so ``predict()`` matches ``rendered_depth`` where known.

    Args:
        predict: returns the predicted z-depth ``(H, W)`` with the current parameters, differentiably.
        rendered_depth: ``(H, W)`` z-depth the existing mesh renders.
        known_mask: ``(H, W)`` bool, where the mesh renders (the loss is taken only there).
        steps, lr: Adam steps and learning rate.
    """
    if steps < 0 or lr <= 0:
        raise InputError(f"depth finetuning needs steps >= 0 and lr > 0; got {steps}, {lr}")
    params = [p for p in params]
    target = torch.as_tensor(rendered_depth, dtype=torch.float32)
    km = torch.as_tensor(known_mask, dtype=torch.bool)
    km = km & torch.isfinite(target) & (target > 0)
    n = int(km.sum())
    if n == 0:
        return FinetuneHistory([], float("nan"), float("nan"))

    def l1() -> torch.Tensor:
        pred = predict().float()
        t = target.to(pred.device)
        k = km.to(pred.device)
        return (pred[k] - t[k]).abs().mean()

    with torch.no_grad():
        before = float(l1())
    history = _adam(params, lr, steps, l1) if steps > 0 else []
    with torch.no_grad():
        after = float(l1()) if steps > 0 else before
    return FinetuneHistory(history, before, after)
