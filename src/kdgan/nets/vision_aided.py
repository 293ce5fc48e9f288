"""Vision-aided discriminator: a frozen pre-trained backbone with a light trainable head
(Kumari et al., "Ensembling Off-the-shelf Models for GAN Training", CVPR 2022; docs/baselines.md).

Follows the released code (nupurkmr9/vision-aided-gan: vision_aided_loss/cv_discriminator.py,
cvmodel.py, biggan/train_fns.py) for its BigGAN-CIFAR setting `input-clip-output-conv`: images
(before D's own augmentation) get DiffAugment 'color,translation,cutout', are mapped to [0, 1],
resized to the backbone's input side by area interpolation and normalised with CLIP's mean and
std; CLIP ViT-B/32's image embedding (frozen) feeds an MLP head SNLinear(512 -> 256) - ReLU -
SNLinear(256 -> 1), plus a projection term <embed(y), h> when class-conditional. Its loss is the
adversarial loss of the run, switched on after `warmup` G steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from kdgan.augment import DiffAugment
from kdgan.errors import KdganError
from kdgan.nets.layers import sn_linear
from kdgan.teachers.clip import CLIP_MEAN, CLIP_STD


class VisionAidedHead(nn.Module):
    """The released MLPD: h = act(SNLinear(in -> hidden)(f)); logit = SNLinear(hidden -> 1)(h)
    [+ <embed(y), h>]. Weights N(0, 0.02) (the released init_weights with BigGAN's N02), biases
    left at PyTorch's default, the class embedding without spectral norm."""

    def __init__(self, in_dim: int, c_dim: int = 0, hidden: int = 256, activation: str = "relu"):
        super().__init__()
        self.fc = sn_linear(in_dim, hidden)
        self.out = sn_linear(hidden, 1)
        self.embed = nn.Embedding(c_dim, hidden) if c_dim > 0 else None
        self.act = nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2)
        for m in (self.fc, self.out):
            nn.init.normal_(m.parametrizations.weight.original, 0.0, 0.02)
        if self.embed is not None:
            nn.init.normal_(self.embed.weight, 0.0, 0.02)

    def forward(self, features: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.act(self.fc(features.float()))
        logits = self.out(h).squeeze(1)
        if self.embed is not None:
            logits = logits + (self.embed(labels) * h).sum(dim=1)
        return logits


class VisionAidedD(nn.Module):
    """Frozen CLIP image tower + trainable `VisionAidedHead`; images (B, 3, R, R) in [-1, 1] ->
    logits (B,). Only the head is a registered submodule, so it alone is trained and saved; the
    backbone (a kdgan CLIP teacher) stays frozen and out of every checkpoint."""

    def __init__(self, backbone: nn.Module, c_dim: int = 0, policy: str = "color,translation,cutout",
                 activation: str = "relu", warmup_steps: int = 0, d_steps: int = 1):
        super().__init__()
        # schedule: the loss counts from G step warmup_steps + 1 on (the released `itr > warmup`)
        self.warmup_steps, self.d_steps = warmup_steps, d_steps
        model = getattr(backbone, "model", None)
        if model is None or not hasattr(model, "encode_image"):
            name = getattr(backbone, "name", type(backbone).__name__)
            raise KdganError("the vision-aided discriminator needs a CLIP backbone (clip, "
                             f"clip-tiny-random), not {name}")
        self.__dict__["backbone"] = backbone  # not a submodule: frozen, never saved
        self.head = VisionAidedHead(backbone.dim, c_dim, activation=activation)
        self.augment = DiffAugment(policy)
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The backbone's image embedding (B, dim) of the augmented images, float32."""
        x = (self.augment(images.float()) + 1) / 2
        side = self.backbone.image_size
        x = (F.interpolate(x, size=(side, side), mode="area") - self.mean) / self.std
        return self.backbone.model.encode_image(x.to(self.backbone.dtype), normalize=False).float()

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                detach: bool = False) -> torch.Tensor:
        if detach:  # D phase: no gradient through the backbone (the released `detach=True`)
            with torch.no_grad():
                features = self.features(images)
        else:
            features = self.features(images)
        return self.head(features, labels)
