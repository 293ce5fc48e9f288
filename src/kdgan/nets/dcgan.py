"""Compact student generators of AKDG (Tsunashima et al., ICPR 2020): a DCGAN-style CNN and an MLP.

At their default widths they have the sizes the AKDG paper reports for 32x32 students
(METHOD.md section 3): DCGAN 2.61M parameters and 229M multiply-adds per image, MLP 2.17M
parameters. Class-conditional students (to match a conditional teacher) use BigGAN's
conditional BatchNorm; with c_dim = 0 it is a plain affine BatchNorm.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdgan.nets.layers import ConditionalBatchNorm2d, check_bn_mode, generator_forward, init_normal_002


def _check_resolution(img_resolution: int) -> int:
    ups = round(math.log2(img_resolution / 4)) if img_resolution >= 8 else -1
    if ups < 1 or 4 * 2**ups != img_resolution:
        raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
    return ups


class DCGANGenerator(nn.Module):
    """z (B, z_dim) and labels (B,) -> images (B, 3, R, R) in [-1, 1].

    linear -> (ch, 4, 4), BN, ReLU; then per doubling: nearest 2x upsample, 3x3 conv halving
    the channels, BN, ReLU; a 3x3 conv to RGB and tanh. At 32 px: ch 512 -> 256 -> 128 -> 64.

    Args:
        z_dim: latent size (must equal the teacher's for MSE distillation, which shares z).
        c_dim: classes; 0 = unconditional.
        img_resolution: output size in px, a power of two >= 8.
        ch: channels of the 4x4 base (512 in the AKDG student); set by `--width`.
        bn_mode, bn_batch: BatchNorm statistics in eval mode, as BigGANGenerator.
    """

    def __init__(self, z_dim: int = 128, c_dim: int = 0, img_resolution: int = 32, ch: int = 512,
                 bn_mode: str = "running", bn_batch: int = 50):
        super().__init__()
        check_bn_mode(bn_mode, bn_batch)
        self.config = {"arch": "dcgan", "z_dim": z_dim, "c_dim": c_dim,
                       "img_resolution": img_resolution, "ch": ch, "bn_mode": bn_mode, "bn_batch": bn_batch}
        self.z_dim, self.c_dim, self.img_resolution = z_dim, c_dim, img_resolution
        self.bn_mode, self.bn_batch = bn_mode, bn_batch
        ups = _check_resolution(img_resolution)
        if ch % 2**ups:
            raise ValueError(f"ch {ch} must be divisible by {2**ups} at {img_resolution} px")
        self.ch = ch
        self.linear = nn.Linear(z_dim, 4 * 4 * ch)
        self.bn0 = ConditionalBatchNorm2d(ch, c_dim)
        chans = [ch // 2**i for i in range(ups + 1)]
        self.convs = nn.ModuleList(nn.Conv2d(c, c // 2, 3, padding=1) for c in chans[:-1])
        self.bns = nn.ModuleList(ConditionalBatchNorm2d(b, c_dim) for b in chans[1:])
        self.out_conv = nn.Conv2d(chans[-1], 3, 3, padding=1)
        init_normal_002(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return generator_forward(self, self._forward, z, labels)

    def _forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn0(self.linear(z).view(z.shape[0], self.ch, 4, 4), labels))
        for conv, bn in zip(self.convs, self.bns, strict=True):
            h = F.relu(bn(conv(F.interpolate(h, scale_factor=2.0, mode="nearest")), labels))
        return torch.tanh(self.out_conv(h))


class MLPGenerator(nn.Module):
    """z (B, z_dim) and labels (B,) -> images (B, 3, R, R) in [-1, 1], fully connected.

    Three hidden layers of `ch` units (linear, BN, ReLU), then linear to 3 R^2 and tanh.

    Args:
        z_dim, c_dim, img_resolution: as DCGANGenerator (any resolution >= 8).
        ch: hidden units (512 in the AKDG student); set by `--width`.
        bn_mode, bn_batch: BatchNorm statistics in eval mode, as BigGANGenerator.
    """

    def __init__(self, z_dim: int = 128, c_dim: int = 0, img_resolution: int = 32, ch: int = 512,
                 bn_mode: str = "running", bn_batch: int = 50):
        super().__init__()
        check_bn_mode(bn_mode, bn_batch)
        self.config = {"arch": "mlp", "z_dim": z_dim, "c_dim": c_dim,
                       "img_resolution": img_resolution, "ch": ch, "bn_mode": bn_mode, "bn_batch": bn_batch}
        self.z_dim, self.c_dim, self.img_resolution = z_dim, c_dim, img_resolution
        self.bn_mode, self.bn_batch = bn_mode, bn_batch
        if img_resolution < 8:
            raise ValueError(f"img_resolution must be >= 8, got {img_resolution}")
        self.hidden = nn.ModuleList([nn.Linear(z_dim, ch), nn.Linear(ch, ch), nn.Linear(ch, ch)])
        self.bns = nn.ModuleList(ConditionalBatchNorm2d(ch, c_dim) for _ in self.hidden)
        self.out = nn.Linear(ch, 3 * img_resolution * img_resolution)
        init_normal_002(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return generator_forward(self, self._forward, z, labels)

    def _forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = z
        for linear, bn in zip(self.hidden, self.bns, strict=True):
            h = F.relu(bn(linear(h)[:, :, None, None], labels)).flatten(1)  # BN over units
        r = self.img_resolution
        return torch.tanh(self.out(h)).view(z.shape[0], 3, r, r)
