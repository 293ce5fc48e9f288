"""Building blocks shared by the networks: spectrally normalised layers, N(0, 0.02) init, and how
generators with BatchNorm sample (batch, running or standing statistics)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

# How a generator with BatchNorm normalises in eval mode (its `bn_mode`):
#   batch:    statistics of the batch being generated, in batches of `bn_batch` images; what the
#             released BigGAN code does (it samples G_ema in train mode, batches of 50)
#   running:  the running statistics in the buffers (for G_ema: copies of G's, so they lag
#             behind G_ema's averaged weights)
#   standing: running statistics recomputed from fresh batches of G itself (BigGAN's "standing
#             statistics"; `recompute_standing_statistics`), then used as in running
BN_MODES = ("batch", "running", "standing")
STANDING_BATCHES = 16  # batches averaged by `recompute_standing_statistics` (BigGAN's default)


def sn(module: nn.Module, eps: float = 1e-8) -> nn.Module:
    """Spectral norm (Miyato et al. 2018) with one power iteration per training forward; eps 1e-8
    as BigGAN's SN_eps (the released BigGAN-CIFAR code's default)."""
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


def _batchnorms(module: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def batchnorm_batch_statistics(module: nn.Module) -> Iterator[None]:
    """Inside, every BatchNorm of `module` normalises with its input batch's statistics and leaves
    its buffers untouched; every other layer keeps its mode (spectral norm runs no power iteration)."""
    bns = _batchnorms(module)
    saved = [(m.training, m.track_running_stats) for m in bns]
    for m in bns:
        m.training, m.track_running_stats = True, False
    try:
        yield
    finally:
        for m, (training, track) in zip(bns, saved, strict=True):
            m.training, m.track_running_stats = training, track


def check_bn_mode(bn_mode: str, bn_batch: int) -> None:
    if bn_mode not in BN_MODES or bn_batch < 1:
        raise ValueError(f"bn_mode must be one of {', '.join(BN_MODES)} and bn_batch >= 1, "
                         f"got {bn_mode!r}, {bn_batch}")


def generator_forward(G: nn.Module, forward: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    """`forward(z, labels)` of a generator with BatchNorm under its `bn_mode`: in eval mode with
    bn_mode batch, the batch is cut into ceil(B / bn_batch) near-equal parts (exactly bn_batch
    images each when bn_batch divides B), each normalised with its own statistics. A batch of
    one image uses the running statistics (one image has no batch statistics over the MLP's
    units; callers that sample, such as `kdgan generate`, run whole batches)."""
    if labels is None or G.c_dim == 0:
        labels = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
    if G.training or G.bn_mode != "batch" or z.shape[0] == 1:
        return forward(z, labels)
    parts = math.ceil(z.shape[0] / G.bn_batch)
    with batchnorm_batch_statistics(G):
        return torch.cat([forward(zc, lc) for zc, lc in zip(z.tensor_split(parts), labels.tensor_split(parts),
                                                            strict=True)])


@torch.no_grad()
def recompute_standing_statistics(G: nn.Module, num_batches: int = STANDING_BATCHES, batch_size: int = 50,
                                  seed: int = 0) -> None:
    """BigGAN's standing statistics: reset the running statistics of every BatchNorm of G and set
    them to the average over `num_batches` batches of G(z, labels), z ~ N(0, I) and labels
    uniform over the classes, drawn from a private RNG (the caller's RNG stream is untouched).
    Only the BatchNorm layers switch mode while this runs."""
    bns = _batchnorms(G)
    if not bns:
        return
    device = next(G.parameters()).device
    saved = [(m.training, m.momentum) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.training, m.momentum = True, None  # momentum None: cumulative average over the batches
    g = torch.Generator().manual_seed(seed)
    mode = G.bn_mode
    G.bn_mode = "running"  # one plain forward per batch (G itself stays in eval mode)
    try:
        for _ in range(num_batches):
            z = torch.randn(batch_size, G.z_dim, generator=g)
            labels = torch.randint(0, max(G.c_dim, 1), (batch_size,), generator=g)
            G(z.to(device), labels.to(device))
    finally:
        G.bn_mode = mode
        for m, (training, momentum) in zip(bns, saved, strict=True):
            m.training, m.momentum = training, momentum
