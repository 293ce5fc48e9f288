"""InsGen: instance discrimination for data-efficient GANs (Yang et al., NeurIPS 2021; METHOD.md 2.7).

Follows the released code (genforce/insgen: training/contrastive_head.py, contrastive_loss.py,
train.py): D's per-image features go through a projection MLP (query); a momentum copy of D
(D_ema, momentum 0.999) and a momentum copy of the MLP give the key of a second view; a queue of
past keys holds the negatives; loss = cross-entropy of [q.k, q.queue] / 0.2 with the positive at
index 0 (MoCo). Two heads: real instance discrimination (two augmented views of a real image,
keys enqueued) and fake instance discrimination (a generated image vs the image of a perturbed
latent z + N(0, 0.15^2), the query's momentum projection enqueued); in G's loss, 0.1 x the fake
head's loss on two augmented views of G(z), gradients reaching G, nothing enqueued.
Loss functions return scalars and never call backward().
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn


def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor, at: int | None = None) -> int:
    """Write keys (N, C) into the ring buffer queue (K, C) at ptr, in place, exactly as the released
    code: N > K keeps the first K keys and leaves ptr; otherwise the keys wrap around the end.
    `at` is ptr's value when the caller knows it (reading ptr makes the host wait for a GPU);
    returns ptr's new value."""
    n, k = keys.shape[0], queue.shape[0]
    p = int(ptr) if at is None else at
    if n > k:
        queue.copy_(keys[:k])
        return p
    if p + n > k:
        queue[p:] = keys[: k - p]
        queue[: n - (k - p)] = keys[k - p:]
        p = n - (k - p)
    else:
        queue[p:p + n] = keys
        p = p + n
    ptr.fill_(p)
    return p


def _gather(keys: torch.Tensor) -> torch.Tensor:
    """Keys of every rank, in rank order (the released code's concat_all_gather)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return keys
    parts = [torch.empty_like(keys) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, keys.contiguous())
    return torch.cat(parts)


class ContrastiveHead(nn.Module):
    """MoCo head: projector in -> in -> 128 (ReLU between), its momentum copy, a queue of keys.

    `loss(query_features, key_features, push)` with features (B, in_dim): the momentum projector is
    updated on every call (as in the released code); push = 'key' enqueues the keys, 'query' the
    momentum projection of the query features, None nothing.
    """

    def __init__(self, in_dim: int, queue_size: int, temperature: float = 0.2, momentum: float = 0.999,
                 out_dim: int = 128):
        super().__init__()
        self.temperature, self.momentum = temperature, momentum
        self.mlp = nn.Sequential(nn.Linear(in_dim, in_dim), nn.ReLU(), nn.Linear(in_dim, out_dim))
        self.momentum_mlp = copy.deepcopy(self.mlp).requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, out_dim), dim=1))
        self.register_buffer("ptr", torch.zeros((), dtype=torch.long))
        self._ptr_at: int | None = None  # host copy of ptr, once read (no wait for the GPU per push)

    def _load_from_state_dict(self, *args, **kwargs):  # ptr changed: read it again when next needed
        super()._load_from_state_dict(*args, **kwargs)
        self._ptr_at = None

    @torch.no_grad()
    def momentum_update(self) -> None:
        for q, k in zip(self.mlp.parameters(), self.momentum_mlp.parameters(), strict=True):
            k.mul_(self.momentum).add_(q.detach(), alpha=1 - self.momentum)

    def loss(self, query_features: torch.Tensor, key_features: torch.Tensor,
             push: str | None = None) -> torch.Tensor:
        q = F.normalize(self.mlp(query_features.float()), dim=1)
        with torch.no_grad():
            self.momentum_update()
            k = F.normalize(self.momentum_mlp(key_features.float()), dim=1)
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ self.queue.clone().t()], dim=1)
        loss = F.cross_entropy(logits / self.temperature,
                               torch.zeros(q.shape[0], dtype=torch.long, device=q.device))
        if push is not None:
            with torch.no_grad():
                keys = k if push == "key" else F.normalize(self.momentum_mlp(query_features.detach().float()),
                                                           dim=1)
                self._ptr_at = enqueue(self.queue, self.ptr, _gather(keys), self._ptr_at)
        return loss


def default_queue_size(num_images: int, xflip: bool) -> int:
    """The released default: int(5% of the images), doubled with mirror flips; at least 1."""
    return max(1, int(0.05 * num_images) * (2 if xflip else 1))


def lazy_ratio(every: int) -> float:
    """StyleGAN2-ADA's optimiser correction for lazy regularisation: every / (every + 1); 1 if not lazy."""
    return every / (every + 1) if every > 1 else 1.0


class InsGen(nn.Module):
    """Momentum D and the real and fake contrastive heads; all of it is training state.

    D must offer `instance_features(images)` (B, feature_dim). `d_terms` also updates D_ema
    (once per D step, parameters by momentum, buffers copied); `param_groups` gives the heads'
    Adam groups (real head with D's lr and betas, fake head with G's, each corrected for lazy
    regularisation as the released code does).
    """

    def __init__(self, D: nn.Module, queue_size: int, temperature: float = 0.2, momentum: float = 0.999,
                 real_weight: float = 1.0, fake_weight: float = 1.0, g_weight: float = 0.1,
                 noise_std: float = 0.15, d_opt: tuple[float, tuple[float, float]] = (2e-3, (0.0, 0.99)),
                 g_opt: tuple[float, tuple[float, float]] = (2e-3, (0.0, 0.99))):
        super().__init__()
        self.D_ema = copy.deepcopy(D).eval().requires_grad_(False)
        dim = D.feature_dim
        self.real_head = ContrastiveHead(dim, queue_size, temperature, momentum)
        self.fake_head = ContrastiveHead(dim, queue_size, temperature, momentum)
        self.momentum = momentum
        self.real_weight, self.fake_weight, self.g_weight, self.noise_std = \
            real_weight, fake_weight, g_weight, noise_std
        self.d_opt, self.g_opt = d_opt, g_opt

    def train(self, mode: bool = True) -> InsGen:
        super().train(mode)
        self.D_ema.eval()  # the momentum D is only ever evaluated
        return self

    def param_groups(self) -> list[dict[str, Any]]:
        (d_lr, d_betas), (g_lr, g_betas) = self.d_opt, self.g_opt
        return [{"params": list(self.real_head.mlp.parameters()), "lr": d_lr, "betas": d_betas},
                {"params": list(self.fake_head.mlp.parameters()), "lr": g_lr, "betas": g_betas}]

    @torch.no_grad()
    def update_momentum_d(self, D: nn.Module) -> None:
        for p_ema, p in zip(self.D_ema.parameters(), D.parameters(), strict=True):
            p_ema.mul_(self.momentum).add_(p.detach(), alpha=1 - self.momentum)
        for b_ema, b in zip(self.D_ema.buffers(), D.buffers(), strict=True):
            b_ema.copy_(b)  # spectral-norm vectors and constant filters follow D

    def d_terms(self, D: nn.Module, G: nn.Module, augment: nn.Module, real_images: torch.Tensor,
                fake_images: torch.Tensor, z: torch.Tensor, fake_labels: torch.Tensor,
                g_kwargs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Real and fake instance discrimination for D's loss; images (B, 3, R, R) in [-1, 1],
        un-augmented; z (B, z_dim) and fake_labels (B,) made fake_images."""
        self.update_momentum_d(D)
        terms = {}
        if self.real_weight > 0:
            q = D.instance_features(augment(real_images))
            with torch.no_grad():
                k = self.D_ema.instance_features(augment(real_images))
            terms["d/insgen_real"] = self.real_weight * self.real_head.loss(q, k, push="key")
        if self.fake_weight > 0:
            with torch.no_grad():  # the positive view: the image of a perturbed latent
                noisy = G(z + torch.randn_like(z) * self.noise_std, fake_labels, **g_kwargs)
                noisy = noisy.to(fake_images.dtype)
            q = D.instance_features(augment(fake_images))
            with torch.no_grad():
                k = self.D_ema.instance_features(augment(noisy))
            terms["d/insgen_fake"] = self.fake_weight * self.fake_head.loss(q, k, push="query")
        return terms

    def g_term(self, D: nn.Module, augment: nn.Module, fake_images: torch.Tensor) -> torch.Tensor:
        """G's fake instance discrimination: two augmented views of G(z), gradients through D to G."""
        q = D.instance_features(augment(fake_images))
        with torch.no_grad():
            k = self.D_ema.instance_features(augment(fake_images.detach()))
        return self.g_weight * self.fake_head.loss(q, k, push=None)
