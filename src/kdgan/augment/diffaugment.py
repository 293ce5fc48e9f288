"""DiffAugment: differentiable augmentation of every image D sees (Zhao et al., NeurIPS 2020).

All ops take and return float (B, C, H, W) images in [-1, 1] (color may leave that range,
as in the paper); randomness is drawn per image from the global torch RNG on x's device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from kdgan.errors import KdganError


def brightness(x: torch.Tensor) -> torch.Tensor:
    """Add U(-0.5, 0.5) to every pixel of an image."""
    return x + (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5)


def saturation(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance to the per-pixel channel mean by U(0, 2)."""
    mean = x.mean(dim=1, keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2) + mean


def contrast(x: torch.Tensor) -> torch.Tensor:
    """Scale the distance to the image mean by U(0.5, 1.5)."""
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * (torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5) + mean


def translation(x: torch.Tensor, ratio: float = 0.125) -> torch.Tensor:
    """Shift by an integer in [-s, s] px per axis, s = round(ratio * side); zeros fill the gap."""
    b, _, h, w = x.shape
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    dy = torch.randint(-sy, sy + 1, (b, 1, 1), device=x.device)
    dx = torch.randint(-sx, sx + 1, (b, 1, 1), device=x.device)
    # Output pixel (i, j) reads input (i - dy, j - dx) of a zero-padded copy.
    rows = (torch.arange(h, device=x.device)[None, :, None] - dy + sy).expand(b, h, w)
    cols = (torch.arange(w, device=x.device)[None, None, :] - dx + sx).expand(b, h, w)
    padded = nn.functional.pad(x, (sx, sx, sy, sy)).permute(0, 2, 3, 1)  # (B, H', W', C)
    batch = torch.arange(b, device=x.device)[:, None, None].expand(b, h, w)
    return padded[batch, rows, cols].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, ratio: float = 0.5) -> torch.Tensor:
    """Zero one square of side round(ratio * side) at a uniformly random centre (clipped)."""
    b, _, h, w = x.shape
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    cy = torch.randint(0, h + (1 - ch % 2), (b, 1, 1), device=x.device)
    cx = torch.randint(0, w + (1 - cw % 2), (b, 1, 1), device=x.device)
    ys = torch.arange(h, device=x.device)[None, :, None]
    xs = torch.arange(w, device=x.device)[None, None, :]
    y0, x0 = cy - ch // 2, cx - cw // 2
    inside = (ys >= y0) & (ys < y0 + ch) & (xs >= x0) & (xs < x0 + cw)  # (B, H, W)
    return x * (~inside).unsqueeze(1).to(x.dtype)


OPS: dict[str, list[Callable[[torch.Tensor], torch.Tensor]]] = {
    "color": [brightness, saturation, contrast],
    "translation": [translation],
    "cutout": [cutout],
}


def parse_policy(policy: str) -> list[str]:
    """'translation,cutout' -> ['translation', 'cutout']; unknown names raise KdganError."""
    names = [p.strip() for p in policy.split(",") if p.strip()]
    unknown = [n for n in names if n not in OPS]
    if unknown:
        raise KdganError(
            f"unknown DiffAugment op(s) {', '.join(unknown)}; choose from {', '.join(OPS)}"
        )
    return names


class DiffAugment(nn.Module):
    """Apply a policy's ops in order ('color,translation,cutout'); the empty policy is identity."""

    def __init__(self, policy: str = "translation,cutout"):
        super().__init__()
        self.policy = ",".join(parse_policy(policy))
        self.ops = [op for name in parse_policy(policy) for op in OPS[name]]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return x.contiguous()

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"
