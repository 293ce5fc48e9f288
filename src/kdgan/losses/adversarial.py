"""Adversarial losses: hinge (Lim & Ye 2017; BigGAN) and non-saturating (Goodfellow et al. 2014).

Logits are (B,) raw D outputs; losses are computed in float32 whatever the autocast dtype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def hinge_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean relu(1 - D(x)), mean relu(1 + D(G(z))))."""
    return F.relu(1 - real_logits.float()).mean(), F.relu(1 + fake_logits.float()).mean()


def hinge_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """-mean D(G(z))."""
    return -fake_logits.float().mean()


def ns_d(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean softplus(-D(x)), mean softplus(D(G(z)))): -log sigmoid(D(x)) - log(1 - sigmoid(D(G(z))))."""
    return F.softplus(-real_logits.float()).mean(), F.softplus(fake_logits.float()).mean()


def ns_g(fake_logits: torch.Tensor) -> torch.Tensor:
    """mean softplus(-D(G(z))) = -log sigmoid(D(G(z)))."""
    return F.softplus(-fake_logits.float()).mean()


ADVERSARIAL_LOSSES = {"hinge": (hinge_d, hinge_g), "ns": (ns_d, ns_g)}
