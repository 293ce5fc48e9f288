"""Heads shared by the discriminators."""

from __future__ import annotations

import torch
from torch import nn

from kdgan.nets.layers import sn_linear


class KDFeatureHead(nn.Module):
    """KD-DLGAN's D feature head (METHOD.md 1.2): SNLinear(hidden -> M) o SNLinear(in -> hidden),
    no nonlinearity in between; maps D's pooled trunk features (B, in) to teacher space (B, M)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: int = 1024):
        super().__init__()
        self.fc1 = sn_linear(in_dim, hidden)
        self.fc2 = sn_linear(hidden, out_dim)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.fc1(h))
