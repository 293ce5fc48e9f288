"""BigGAN generator and projection discriminator for 32 and 64 px (Brock et al. 2019).

The CIFAR recipe of DiffAugment / LeCam / KD-DLGAN (METHOD.md 2.1): ch = 64, z 128, no
attention, class-conditional BatchNorm in G, projection D, spectral norm in G and D.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdgan.nets.heads import KDFeatureHead
from kdgan.nets.layers import (
    ConditionalBatchNorm2d,
    check_bn_mode,
    generator_forward,
    init_normal_002,
    sn,
    sn_conv1x1,
    sn_conv3x3,
    sn_linear,
)

# Channel multipliers per block (BigGAN-CIFAR at 32 px, BigGAN at 64 px).
G_ARCH = {32: [(4, 4), (4, 4), (4, 4)], 64: [(16, 16), (16, 8), (8, 4), (4, 2)]}
D_ARCH = {
    32: [(None, 4, True), (4, 4, True), (4, 4, False), (4, 4, False)],
    64: [(None, 1, True), (1, 2, True), (2, 4, True), (4, 8, True), (8, 16, False)],
}


class GBlock(nn.Module):
    """BN-ReLU-up-conv-BN-ReLU-conv with an upsampled 1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int, num_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(c_in, num_classes)
        self.conv1 = sn_conv3x3(c_in, c_out)
        self.bn2 = ConditionalBatchNorm2d(c_out, num_classes)
        self.conv2 = sn_conv3x3(c_out, c_out)
        self.conv_sc = sn_conv1x1(c_in, c_out)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = F.interpolate(F.relu(self.bn1(x, labels)), scale_factor=2.0, mode="nearest")
        h = self.conv2(F.relu(self.bn2(self.conv1(h), labels)))
        return h + self.conv_sc(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class DBlock(nn.Module):
    """(ReLU)-conv-ReLU-conv-(avgpool) with a 1x1 shortcut; the first block is not pre-activated."""

    def __init__(self, c_in: int, c_out: int, downsample: bool, preactivation: bool):
        super().__init__()
        self.preactivation, self.downsample = preactivation, downsample
        self.conv1 = sn_conv3x3(c_in, c_out)
        self.conv2 = sn_conv3x3(c_out, c_out)
        self.conv_sc = sn_conv1x1(c_in, c_out) if (c_in != c_out or downsample) else None

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        if self.preactivation:
            if self.conv_sc is not None:
                x = self.conv_sc(x)
            return F.avg_pool2d(x, 2) if self.downsample else x
        if self.downsample:
            x = F.avg_pool2d(x, 2)
        return self.conv_sc(x) if self.conv_sc is not None else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(x) if self.preactivation else x
        h = self.conv2(F.relu(self.conv1(h)))
        if self.downsample:
            h = F.avg_pool2d(h, 2)
        return h + self.shortcut(x)


class BigGANGenerator(nn.Module):
    """z (B, z_dim) and labels (B,) int64 -> images (B, 3, R, R) in [-1, 1].

    Args:
        z_dim: latent size.
        c_dim: number of classes; 0 for an unconditional generator (labels are ignored).
        img_resolution: 32 or 64.
        ch: channel multiplier (64 in the paper recipe).
        bn_mode: BatchNorm statistics in eval mode: batch (each batch's own, in batches of
            bn_batch, as the released code samples G_ema), running or standing (the buffers;
            see kdgan.nets.layers). Networks saved without it sample with running statistics.
        bn_batch: images per BatchNorm batch when bn_mode is batch.
    """

    def __init__(self, z_dim: int = 128, c_dim: int = 0, img_resolution: int = 32, ch: int = 64,
                 bn_mode: str = "running", bn_batch: int = 50):
        super().__init__()
        check_bn_mode(bn_mode, bn_batch)
        self.config = {"arch": "biggan", "z_dim": z_dim, "c_dim": c_dim,
                       "img_resolution": img_resolution, "ch": ch, "bn_mode": bn_mode, "bn_batch": bn_batch}
        self.z_dim, self.c_dim, self.img_resolution = z_dim, c_dim, img_resolution
        self.bn_mode, self.bn_batch = bn_mode, bn_batch
        arch = G_ARCH[img_resolution]
        self.c_bottom = arch[0][0] * ch
        self.linear = sn_linear(z_dim, 4 * 4 * self.c_bottom)
        self.blocks = nn.ModuleList(GBlock(a * ch, b * ch, c_dim) for a, b in arch)
        c_last = arch[-1][1] * ch
        self.out_bn = nn.BatchNorm2d(c_last, eps=1e-5)
        self.out_conv = sn_conv3x3(c_last, 3)
        init_normal_002(self)
        nn.init.ones_(self.out_bn.weight)  # BatchNorm gains start at 1, not N(0, 0.02)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return generator_forward(self, self._forward, z, labels)

    def _forward(self, z: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.linear(z).view(z.shape[0], self.c_bottom, 4, 4)
        for block in self.blocks:
            h = block(h, labels)
        return torch.tanh(self.out_conv(F.relu(self.out_bn(h))))


class BigGANDiscriminator(nn.Module):
    """images (B, 3, R, R) in [-1, 1] and labels (B,) -> logits (B,).

    `features(x)` returns h, the ReLU-and-sum-pooled output of the last block (B, 4 * ch at
    32 px), which the logit and projection heads share, and with kd_dim > 0 so does the
    KD-DLGAN feature head (METHOD 1.2): `D(x, y, return_kd=True)` gives (logits, (B, kd_dim)).
    """

    def __init__(self, c_dim: int = 0, img_resolution: int = 32, ch: int = 64, kd_dim: int = 0):
        super().__init__()
        self.config = {"arch": "biggan", "c_dim": c_dim, "img_resolution": img_resolution, "ch": ch,
                       "kd_dim": kd_dim}
        self.c_dim, self.img_resolution = c_dim, img_resolution
        blocks = []
        for i, (a, b, down) in enumerate(D_ARCH[img_resolution]):
            c_in = 3 if a is None else a * ch
            blocks.append(DBlock(c_in, b * ch, downsample=down, preactivation=i > 0))
        self.blocks = nn.ModuleList(blocks)
        self.feature_dim = D_ARCH[img_resolution][-1][1] * ch
        self.linear = sn_linear(self.feature_dim, 1)
        self.embed = sn(nn.Embedding(c_dim, self.feature_dim)) if c_dim > 0 else None
        self.kd_head = KDFeatureHead(self.feature_dim, kd_dim) if kd_dim > 0 else None
        init_normal_002(self)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        h = images
        for block in self.blocks:
            h = block(h)
        return F.relu(h).sum(dim=(2, 3))

    def instance_features(self, images: torch.Tensor) -> torch.Tensor:
        """InsGen's per-image features (B, feature_dim): the pooled h that the heads share."""
        return self.features(images)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                return_kd: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)
        logits = self.linear(h).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * h).sum(dim=1)  # projection (Miyato 2018)
        if return_kd:
            if self.kd_head is None:
                raise ValueError("this discriminator has no KD feature head (kd_dim = 0)")
            return logits, self.kd_head(h)
        return logits
