"""GAN objectives: each returns named loss terms and never calls backward()."""

from __future__ import annotations

import torch
from torch import nn

from kdgan.losses.adversarial import ADVERSARIAL_LOSSES

Terms = dict[str, torch.Tensor]


class GANObjective:
    """The adversarial game with augmentation T applied to everything D sees (METHOD 1.5, 2.3).

    D phase:  L_D = loss_d(D(T(x)), D(T(G(z))))   (fake generated without grad)
    G phase:  L_G = loss_g(D(T(G(z))))
    Fake labels are drawn uniformly over the classes, as in BigGAN.
    """

    def __init__(self, loss: str, augment: nn.Module, z_dim: int, c_dim: int):
        self.loss_d, self.loss_g = ADVERSARIAL_LOSSES[loss]
        self.loss_name = loss
        self.augment = augment
        self.z_dim, self.c_dim = z_dim, c_dim

    def sample_latents(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) (B, z_dim) and labels ~ U{0..c_dim-1} (B,) (zeros when unconditional)."""
        z = torch.randn(batch_size, self.z_dim, device=device)
        labels = torch.randint(0, max(self.c_dim, 1), (batch_size,), device=device)
        return z, labels

    def d_terms(self, G: nn.Module, D: nn.Module, real_images: torch.Tensor,
                real_labels: torch.Tensor) -> tuple[Terms, Terms]:
        """D loss terms and logit statistics for one real batch (B, 3, R, R) in [-1, 1]."""
        z, fake_labels = self.sample_latents(real_images.shape[0], real_images.device)
        with torch.no_grad():
            fake_images = G(z, fake_labels)
        # One D pass over fake and real together (one spectral-norm power iteration per step).
        logits = D(self.augment(torch.cat([fake_images.to(real_images.dtype), real_images])),
                   torch.cat([fake_labels, real_labels]))
        fake_logits, real_logits = logits.split([fake_images.shape[0], real_images.shape[0]])
        loss_real, loss_fake = self.loss_d(real_logits, fake_logits)
        terms = {f"d/{self.loss_name}_real": loss_real, f"d/{self.loss_name}_fake": loss_fake}
        stats = {"stats/d_real_logit": real_logits.detach().float().mean(),
                 "stats/d_fake_logit": fake_logits.detach().float().mean()}
        return terms, stats

    def g_terms(self, G: nn.Module, D: nn.Module, batch_size: int,
                device: torch.device) -> tuple[Terms, Terms]:
        """G loss terms for one batch of fresh latents."""
        z, labels = self.sample_latents(batch_size, device)
        fake_logits = D(self.augment(G(z, labels)), labels)
        return {f"g/{self.loss_name}": self.loss_g(fake_logits)}, {}
