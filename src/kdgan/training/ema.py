"""Exponential moving average of generator weights (G_ema)."""

from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def update_ema(G_ema: nn.Module, G: nn.Module, decay: float) -> None:
    """G_ema <- decay * G_ema + (1 - decay) * G for parameters; buffers are copied.

    decay = 0 makes G_ema an exact copy (used before the EMA start step).
    """
    ema_params = list(G_ema.parameters())
    params = list(G.parameters())
    if decay == 0.0:
        torch._foreach_copy_(ema_params, params)
    else:
        torch._foreach_lerp_(ema_params, params, 1.0 - decay)
    ema_buffers, buffers = list(G_ema.buffers()), list(G.buffers())
    if len(ema_buffers) != len(buffers):
        raise ValueError(f"G_ema has {len(ema_buffers)} buffers and G {len(buffers)}: not copies of one "
                         "network")
    if buffers:  # one grouped copy (BatchNorm statistics, spectral norm's u and v), not one per buffer
        torch._foreach_copy_(ema_buffers, buffers)


def ema_decay_at(step: int, decay: float, start_steps: int) -> float:
    """BigGAN schedule: plain copies until `start_steps`, then a constant decay."""
    return 0.0 if step < start_steps else decay
