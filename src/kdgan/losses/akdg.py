"""Distillation losses of AKDG (Tsunashima et al., "Adversarial Knowledge Distillation for a Compact
Generator", ICPR 2020; METHOD.md section 3): the MSE-KD baseline and the lambda-weighted sum.

The adversarial distillation itself is an ordinary GAN game in which D_KD sees teacher samples
as real and student samples as fake; it uses the losses of `kdgan.losses.adversarial`.
"""

from __future__ import annotations

import torch


def mse_distillation(teacher_images: torch.Tensor, student_images: torch.Tensor) -> torch.Tensor:
    """Mean over pixels and batch of (G_T(z) - G_S(z))^2, both (B, 3, R, R) in [-1, 1] from the
    same z and labels. The teacher side is a target: no gradient flows into it."""
    return (teacher_images.detach().float() - student_images.float()).square().mean()
