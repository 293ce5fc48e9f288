"""ADA: adaptive discriminator augmentation (Karras et al., NeurIPS 2020; METHOD.md 2.5), and the
adaptive probability that ADA and APA share.

Plain PyTorch, differentiable with respect to the images. Every op is applied to each image
independently with probability p (rotation: twice with 1 - sqrt(1 - p), as in ADA). The
geometric ops are composed into one affine matrix per image and applied with one bilinear
`grid_sample` with reflection padding (ADA resamples through a 2x wavelet upsampling; this
single bilinear pass is cheaper and exact for the integer ops: flips, 90-degree rotations and
integer translations land on pixel centres). The colour ops are composed into one 4x4 matrix.
Images where no op fired are returned bit-for-bit, so p = 0 is exactly the identity.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kdgan.augment.grid_sample import grid_sample
from kdgan.errors import KdganError

GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")
GROUPS = {
    "blit": ("xflip", "rotate90", "xint"),
    "geom": ("scale", "rotate", "aniso", "xfrac"),
    "color": COLOR,
    "bgc": GEOMETRIC + COLOR,  # the ADA default: every listed op
}

# Strengths (ADA's defaults): log2-normal stds for the scalings, max / std of translations as
# a fraction of the side, max rotation and hue as a fraction of pi.
XINT_MAX, SCALE_STD, ROTATE_MAX, ANISO_STD, XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
BRIGHTNESS_STD, CONTRAST_STD, HUE_MAX, SATURATION_STD = 0.2, 0.5, 1.0, 1.0


def parse_ops(spec: str) -> tuple[str, ...]:
    """'bgc' | 'blit,color' | 'xflip,hue' ... -> op names in pipeline order; unknown names raise."""
    names: list[str] = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
        if part in GROUPS:
            names += GROUPS[part]
        elif part in GEOMETRIC + COLOR:
            names.append(part)
        else:
            raise KdganError(
                f"unknown ADA op {part!r}; use a group ({', '.join(GROUPS)}) or ops "
                f"({', '.join(GEOMETRIC + COLOR)}), comma separated"
            )
    order = GEOMETRIC + COLOR
    return tuple(sorted(set(names), key=order.index))


class AdaptiveP(nn.Module):
    """The augmentation probability p and ADA's overfitting heuristic (METHOD.md 2.5, 2.6).

    `accumulate(real_logits)` adds sign(D(real)) of a D step; `adjust(d_step)` after D step
    `d_step` (0-based, global) moves p when d_step + 1 is a multiple of `interval`, by
    sign(r_t - target) * batch * interval / (kimg * 1000), r_t the mean sign since the last
    move, floored at 0 and not capped (as stylegan2-ada and APA: p above 1 acts as 1 but takes
    longer to come back down), or also capped at `p_max` when given. target = 0 keeps p fixed.
    p and the running sums are buffers: checkpointed with the objective, restored on resume.
    Under torchrun the sums are all-reduced, so every rank moves p identically.
    """

    def __init__(self, target: float = 0.6, batch_size: int = 16, interval: int = 4, kimg: float = 500.0,
                 p_init: float = 0.0, p_max: float | None = None):
        super().__init__()
        self.target, self.batch_size, self.interval, self.kimg = target, batch_size, interval, kimg
        self.p_max = p_max
        self.register_buffer("p", torch.tensor(float(p_init)))
        self.register_buffer("sums", torch.zeros(2, dtype=torch.float64))  # sum of signs, count
        self.register_buffer("rt", torch.zeros((), dtype=torch.float64))  # last r_t (for logs)
        self.value = float(p_init)  # host copy of p, refreshed when p moves (no sync per use)

    @torch.no_grad()
    def accumulate(self, real_logits: torch.Tensor) -> None:
        if self.target > 0:
            signs = real_logits.detach().double().sign()
            self.sums += torch.stack([signs.sum(), torch.ones_like(signs).sum()])  # on device, no sync

    @torch.no_grad()
    def adjust(self, d_step: int) -> None:
        if self.target <= 0 or (d_step + 1) % self.interval:
            return
        sums = self.sums.clone()
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
        if sums[1] > 0:
            self.rt.copy_(sums[0] / sums[1])
            step = self.batch_size * self.interval / (self.kimg * 1000)
            self.p.copy_((self.p + torch.sign(self.rt - self.target).float() * step).clamp(0, self.p_max))
        self.sums.zero_()
        self.value = float(self.p)

    def _load_from_state_dict(self, *args, **kwargs):  # keep the host copy in step with p
        super()._load_from_state_dict(*args, **kwargs)
        self.value = float(self.p)


# --------------------------------------------------------------------------- matrices
def _eye(b: int, n: int, like: torch.Tensor) -> torch.Tensor:
    return torch.eye(n, dtype=torch.float32, device=like.device).expand(b, n, n).clone()


def _scale2d(sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    m = _eye(sx.shape[0], 3, sx)
    m[:, 0, 0], m[:, 1, 1] = sx, sy
    return m


def _translate2d(tx: torch.Tensor, ty: torch.Tensor) -> torch.Tensor:
    m = _eye(tx.shape[0], 3, tx)
    m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


def _rotate2d(theta: torch.Tensor) -> torch.Tensor:
    m = _eye(theta.shape[0], 3, theta)
    c, s = torch.cos(theta), torch.sin(theta)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = c, -s, s, c
    return m


def _gate(p: float, b: int, device: torch.device) -> torch.Tensor:
    """1.0 where an op fires (probability p), 0.0 elsewhere, per image (B,)."""
    return (torch.rand(b, device=device) < p).float()


def _gated_lognormal2(p: float, std: float, b: int,
                      device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: 2^N(0, std^2) where the op fires (probability p), else 1; and the gate."""
    g = _gate(p, b, device)
    s = torch.where(g > 0, torch.exp2(torch.randn(b, device=device) * std), torch.ones(b, device=device))
    return s, g


class ADAugment(nn.Module):
    """Apply the ADA pipeline `ops` with probability `controller.p` to images (B, C, H, W) in [-1, 1].

    Shapes never change. Geometric ops keep values inside the input's range (bilinear
    interpolation of reflected pixels); colour ops are affine in RGB and, as in ADA, not clamped.
    """

    def __init__(self, ops: str | tuple[str, ...] = "bgc", controller: AdaptiveP | None = None):
        super().__init__()
        self.ops = parse_ops(ops) if isinstance(ops, str) else tuple(ops)
        self.controller = controller if controller is not None else AdaptiveP(target=0)

    @property
    def p(self) -> float:
        return self.controller.value

    def forward(self, x: torch.Tensor, p: float | None = None) -> torch.Tensor:
        p = self.p if p is None else float(p)
        if p <= 0 or not self.ops:
            return x
        x = self._geometric(x, p)
        return self._color(x, p)

    def _geometric(self, x: torch.Tensor, p: float) -> torch.Tensor:
        ops = [o for o in self.ops if o in GEOMETRIC]
        if not ops:
            return x
        b, _, h, w = x.shape
        dev = x.device
        # Built as the inverse map (output coordinate -> input coordinate) in grid_sample's
        # normalised [-1, 1] coordinates; the random parameters are symmetric, so sampling the
        # inverse is sampling the transform.
        m = _eye(b, 3, x)
        fired = torch.zeros(b, device=dev)
        if "xflip" in ops:
            g = _gate(p, b, dev) * torch.randint(0, 2, (b,), device=dev).float()
            m = m @ _scale2d(1 - 2 * g, torch.ones_like(g))
            fired = fired + g
        if "rotate90" in ops:
            g = _gate(p, b, dev) * torch.randint(0, 4, (b,), device=dev).float()
            m = m @ _rotate2d(-math.pi / 2 * g)
            fired = fired + g
        if "xint" in ops:
            g = _gate(p, b, dev)
            t = (torch.rand(b, 2, device=dev) * 2 - 1) * XINT_MAX * g[:, None]
            tx, ty = torch.round(t[:, 0] * w) * 2 / w, torch.round(t[:, 1] * h) * 2 / h
            m = m @ _translate2d(tx, ty)
            fired = fired + (tx != 0).float() + (ty != 0).float()
        if "scale" in ops:
            s, g = _gated_lognormal2(p, SCALE_STD, b, dev)
            m = m @ _scale2d(s, s)
            fired = fired + g
        p_rot = 1 - math.sqrt(max(1 - p, 0.0))  # two rotations: one fires with probability p
        for op in ("rotate", "aniso", "rotate"):  # rotation, anisotropic scaling, rotation back
            if op not in ops:
                continue
            if op == "rotate":
                g = _gate(p_rot, b, dev)
                m = m @ _rotate2d((torch.rand(b, device=dev) * 2 - 1) * math.pi * ROTATE_MAX * g)
            else:
                s, g = _gated_lognormal2(p, ANISO_STD, b, dev)
                m = m @ _scale2d(s, 1 / s)
            fired = fired + g
        if "xfrac" in ops:
            g = _gate(p, b, dev)
            t = torch.randn(b, 2, device=dev) * XFRAC_STD * 2 * g[:, None]
            m = m @ _translate2d(t[:, 0], t[:, 1])
            fired = fired + g
        grid = F.affine_grid(m[:, :2].to(x.dtype), list(x.shape), align_corners=False)
        moved = grid_sample(x, grid, padding_mode="reflection", align_corners=False)  # R1-safe on CUDA
        return torch.where((fired > 0).view(b, 1, 1, 1), moved, x)

    def _color(self, x: torch.Tensor, p: float) -> torch.Tensor:
        ops = [o for o in self.ops if o in COLOR]
        if not ops or x.shape[1] != 3:
            return x
        b, dev = x.shape[0], x.device
        c = _eye(b, 4, x)
        fired = torch.zeros(b, device=dev)
        v = F.pad(torch.ones(3, device=dev), (0, 1)) / math.sqrt(3)  # luma axis, built on the device
        vv = torch.outer(v, v)
        if "brightness" in ops:
            g = _gate(p, b, dev)
            t = _eye(b, 4, x)
            t[:, :3, 3] = (torch.randn(b, device=dev) * BRIGHTNESS_STD * g)[:, None]
            c = t @ c
            fired = fired + g
        if "contrast" in ops:
            s, g = _gated_lognormal2(p, CONTRAST_STD, b, dev)
            t = _eye(b, 4, x)
            t[:, 0, 0], t[:, 1, 1], t[:, 2, 2] = s, s, s
            c = t @ c
            fired = fired + g
        if "lumaflip" in ops:
            g = _gate(p, b, dev) * torch.randint(0, 2, (b,), device=dev).float()
            c = (_eye(b, 4, x) - 2 * vv * g[:, None, None]) @ c  # reflect across the luma plane
            fired = fired + g
        if "hue" in ops:
            g = _gate(p, b, dev)
            theta = (torch.rand(b, device=dev) * 2 - 1) * math.pi * HUE_MAX * g
            c = _rotate_about(v[:3], theta, x) @ c
            fired = fired + g
        if "saturation" in ops:
            s, g = _gated_lognormal2(p, SATURATION_STD, b, dev)
            c = (vv + (_eye(b, 4, x) - vv) * s[:, None, None]) @ c
            fired = fired + g
        flat = x.reshape(b, 3, -1)
        out = (c[:, :3, :3].to(x.dtype) @ flat + c[:, :3, 3:].to(x.dtype)).reshape(x.shape)
        return torch.where((fired > 0).view(b, 1, 1, 1), out, x)

    def extra_repr(self) -> str:
        return f"ops={','.join(self.ops)}"


def _rotate_about(axis: torch.Tensor, theta: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """4x4 rotations by theta (B,) about a unit 3-vector `axis` (Rodrigues)."""
    b = theta.shape[0]
    x, y, z = axis.unbind()  # on the device: reading the axis on the host would wait for a GPU
    o = torch.zeros_like(x)
    k = torch.stack([torch.stack([o, -z, y]), torch.stack([z, o, -x]), torch.stack([-y, x, o])])
    s, c = torch.sin(theta)[:, None, None], torch.cos(theta)[:, None, None]
    r = torch.eye(3, device=like.device) + s * k + (1 - c) * (k @ k)
    m = _eye(b, 4, like)
    m[:, :3, :3] = r
    return m


class Augment(nn.Module):
    """What D sees: the ADA pipeline (when configured) followed by the DiffAugment policy."""

    def __init__(self, diffaugment: nn.Module, ada: ADAugment | None = None):
        super().__init__()
        self.diffaugment, self.ada = diffaugment, ada

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.ada is not None:
            x = self.ada(x)
        return self.diffaugment(x)
