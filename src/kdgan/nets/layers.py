"""Building blocks shared by the networks: spectrally normalised layers and N(0, 0.02) init."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm


def sn(module: nn.Module, eps: float = 1e-6) -> nn.Module:
    """Spectral norm (Miyato et al. 2018) with one power iteration per training forward."""
    return spectral_norm(module, n_power_iterations=1, eps=eps)


def sn_conv3x3(c_in: int, c_out: int) -> nn.Module:
    return sn(nn.Conv2d(c_in, c_out, 3, padding=1))


def sn_conv1x1(c_in: int, c_out: int) -> nn.Module:
    return sn(nn.Conv2d(c_in, c_out, 1))


def sn_linear(c_in: int, c_out: int, bias: bool = True) -> nn.Module:
    return sn(nn.Linear(c_in, c_out, bias=bias))


def init_normal_002(module: nn.Module) -> None:
    """BigGAN's "N02" init: every conv, linear and embedding weight ~ N(0, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding)):
            # With spectral norm the trainable tensor is parametrizations.weight.original.
            weight = m.parametrizations.weight.original if hasattr(m, "parametrizations") else m.weight
            nn.init.normal_(weight, 0.0, 0.02)
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm without affine, then a per-class gain (1 + e_g[y]) and bias e_b[y] (BigGAN ccbn).

    With num_classes = 0 it is an ordinary affine BatchNorm (one shared gain and bias).
    """

    def __init__(self, channels: int, num_classes: int, eps: float = 1e-5):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels, affine=False, eps=eps, momentum=0.1)
        self.gain = nn.Embedding(max(num_classes, 1), channels)
        self.bias = nn.Embedding(max(num_classes, 1), channels)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        gain = 1.0 + self.gain(labels)[:, :, None, None]
        bias = self.bias(labels)[:, :, None, None]
        return self.bn(x) * gain + bias
