"""Regularisers of D (LeCam, R1) and G (path length); stateful ones keep their state in buffers."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class LeCam(nn.Module):
    """LeCam regulariser (Tseng et al., CVPR 2021; METHOD.md 2.4).

    R_LC = mean(relu(D(x) - a_F)^2) + mean(relu(a_R - D(G(z)))^2), with a_R / a_F EMAs (`decay`)
    of the batch-mean D outputs on real / fake, moved on every D update. `rectified=False` gives
    the paper's unrectified squared form. Warm-up, by `warmup`:
      g-steps (the released BigGAN code): while fewer than `start_steps` G steps are done, the
        anchors copy the batch means; R_LC counts only once more than `start_steps` G steps are
        done (the released code tests itr > start), with `d_steps` D updates per G step;
        start_steps = 0: no warm-up at all.
      d-updates: the anchors copy the batch means for the first `start_steps` D updates and
        R_LC counts from the start.
    The anchors are buffers, so they live in D's objective state and in checkpoints.
    """

    def __init__(self, decay: float = 0.9, start_steps: int = 1000, rectified: bool = True,
                 warmup: str = "g-steps", d_steps: int = 1):
        super().__init__()
        if warmup not in ("g-steps", "d-updates"):
            raise ValueError(f"warmup must be g-steps or d-updates, not {warmup!r}")
        self.decay, self.start_steps, self.rectified = decay, start_steps, rectified
        self.warmup, self.d_steps = warmup, d_steps
        self.register_buffer("anchor_real", torch.zeros(()))
        self.register_buffer("anchor_fake", torch.zeros(()))
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    def _warming(self, d_step: int) -> bool:
        if self.warmup == "d-updates":
            return int(self.updates) < self.start_steps
        return d_step // self.d_steps < self.start_steps

    def active(self, d_step: int) -> bool:
        """Whether R_LC counts in the D loss of global D step `d_step` (0-based)."""
        if self.warmup == "d-updates" or self.start_steps == 0:
            return True
        return d_step // self.d_steps > self.start_steps

    def decay_at(self, d_step: int) -> float:
        """The anchors' decay in global D step `d_step`: 0 (a copy of the batch means) while warming."""
        return 0.0 if self._warming(d_step) else self.decay

    @torch.no_grad()
    def update(self, real_logits: torch.Tensor, fake_logits: torch.Tensor, d_step: int = 0) -> None:
        """Move the anchors towards this batch's mean outputs (`d_step`: global D step, 0-based)."""
        decay = self.decay_at(d_step)
        self.anchor_real.mul_(decay).add_((1 - decay) * real_logits.detach().float().mean())
        self.anchor_fake.mul_(decay).add_((1 - decay) * fake_logits.detach().float().mean())
        self.updates += 1

    def forward(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
        act = F.relu if self.rectified else (lambda t: t)
        return (act(real_logits.float() - self.anchor_fake).pow(2).mean()
                + act(self.anchor_real - fake_logits.float()).pow(2).mean())


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): mean over the batch of ||d D(x) / d x||^2, x the real images.

    `real_images` must require grad and `real_logits` (B,) must depend on it; the graph is kept
    (create_graph) so the penalty trains D. Multiply by gamma / 2 for the usual R1 term.
    """
    (grad,) = torch.autograd.grad(real_logits.float().sum(), real_images, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


class PathLengthPenalty(nn.Module):
    """StyleGAN2 path-length regularisation (Karras et al., CVPR 2020).

    For images G(w) and y ~ N(0, I) / sqrt(H W), the length a = ||J_w^T y|| (per sample, the
    gradient of sum(G(w) * y) with respect to the per-layer w, squared-summed over w_dim and
    averaged over layers, then the square root) is pulled towards its running mean `mean`
    (EMA rate `decay`; a buffer, so checkpointed). Returns mean((a - mean)^2).
    """

    def __init__(self, decay: float = 0.01):
        super().__init__()
        self.decay = decay
        self.register_buffer("mean", torch.zeros(()))

    def forward(self, G: nn.Module, z: torch.Tensor, labels: torch.Tensor | None,
                mixing_prob: float = 0.0) -> torch.Tensor:
        ws = G.mapping_ws(z, labels, mixing_prob=mixing_prob)
        images = G.synthesis(ws)
        noise = torch.randn_like(images) / math.sqrt(images.shape[2] * images.shape[3])
        (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
        lengths = grad.float().square().sum(2).mean(1).sqrt()
        with torch.no_grad():
            batch_mean = lengths.mean()
            if torch.distributed.is_available() and torch.distributed.is_initialized():
                torch.distributed.all_reduce(batch_mean)  # the same target on every rank
                batch_mean /= torch.distributed.get_world_size()
            self.mean.copy_(self.mean.lerp(batch_mean, self.decay))
        return (lengths - self.mean).square().mean()
