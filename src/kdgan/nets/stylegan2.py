"""StyleGAN2 generator and residual discriminator in plain PyTorch (Karras et al., CVPR 2020).

No custom CUDA extensions: resampling uses the [1, 3, 3, 1] FIR filter through ordinary
(depthwise) convolutions, and modulated convolutions run as one grouped convolution.
Equalised learning rate everywhere (weights ~ N(0, 1), scaled by 1/sqrt(fan_in) at run time).
Skip-connection G with a learned 4x4 constant and per-layer noise; residual D with
minibatch-stddev and, when conditional, a projection output (as StyleGAN2-ADA's cmap).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from kdgan.nets.heads import KDFeatureHead

_SQRT2 = math.sqrt(2.0)
_FIR = (1.0, 3.0, 3.0, 1.0)


# --------------------------------------------------------------------------- resampling
_FIR_KERNELS: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}


def _build_fir_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.tensor(_FIR, device=device, dtype=dtype)
    k = torch.outer(k, k)
    return k / k.sum()


def _fir_kernel(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The 4 x 4 FIR kernel, built once per device and dtype: a tensor made from Python numbers
    is a copy from the host that waits for a GPU, and every resampling needs the kernel. (A
    compiled graph holds it as a constant.) Never modified: callers scale a copy."""
    if torch.compiler.is_compiling():
        return _build_fir_kernel(device, dtype)
    key = (device, dtype)
    if key not in _FIR_KERNELS:
        with torch.inference_mode(False):  # a normal tensor, usable by autograd later
            _FIR_KERNELS[key] = _build_fir_kernel(device, dtype)
    return _FIR_KERNELS[key]


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype F.conv2d would compute in for `x` here: autocast's lower precision when on."""
    dev = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return x.dtype


class _DepthwiseFIR(torch.autograd.Function):
    """y = depthwise conv of x with a constant (C, 1, k, k) kernel, given stride and padding.

    The kernel is a constant, so no derivative needs a weight gradient: the backward is the
    adjoint (a depthwise transposed convolution, `_DepthwiseFIRT`), whose own backward is this
    function again. Every derivative order is one forward-type convolution, never the
    group-by-group loop that autograd's double backward of a grouped convolution runs
    (issue 23: 87% of R1's CUDA time). Computes in autocast's dtype like F.conv2d.
    """

    @staticmethod
    def forward(ctx, x, kernel, stride, padding):
        dtype = _compute_dtype(x)
        ctx.save_for_backward(kernel)
        ctx.stride, ctx.padding, ctx.in_shape, ctx.in_dtype = stride, padding, x.shape, x.dtype
        with torch.autocast(x.device.type, enabled=False):
            return F.conv2d(x.to(dtype), kernel.to(dtype), stride=stride, padding=padding, groups=x.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (kernel,) = ctx.saved_tensors
        gx = _DepthwiseFIRT.apply(grad, kernel, ctx.stride, ctx.padding, ctx.in_shape[-2:])
        return gx.to(ctx.in_dtype), None, None, None


class _DepthwiseFIRT(torch.autograd.Function):
    """The adjoint of `_DepthwiseFIR`: a depthwise transposed convolution to `out_hw`."""

    @staticmethod
    def forward(ctx, y, kernel, stride, padding, out_hw):
        ctx.save_for_backward(kernel)
        ctx.stride, ctx.padding, ctx.in_dtype = stride, padding, y.dtype
        k = kernel.shape[-1]
        # output_padding restores the rows/columns a strided forward skipped at the far end
        extra = tuple(int(n) - ((m - 1) * stride - 2 * padding + k)
                      for n, m in zip(out_hw, y.shape[-2:], strict=True))
        with torch.autocast(y.device.type, enabled=False):
            return F.conv_transpose2d(y, kernel.to(y.dtype), stride=stride, padding=padding,
                                      output_padding=extra, groups=y.shape[1])

    @staticmethod
    def backward(ctx, grad):
        (kernel,) = ctx.saved_tensors
        gy = _DepthwiseFIR.apply(grad.to(ctx.in_dtype), kernel, ctx.stride, ctx.padding)
        return gy, None, None, None, None


def fir_filter(x: torch.Tensor, pad: tuple[int, int], gain: float = 1.0, stride: int = 1) -> torch.Tensor:
    """Depthwise 2-D filtering of (B, C, H, W) with the [1, 3, 3, 1] kernel, zero padding
    (before, after); `stride` 2 keeps every second output (computing only those).

    Its gradient and the gradient of that (R1, path length) are one depthwise convolution
    each (`_DepthwiseFIR`), with the values of the plain grouped convolution."""
    c = x.shape[1]
    k = (_fir_kernel(x.device, torch.float32) * gain).expand(c, 1, 4, 4)
    if pad[0] == pad[1]:
        return _DepthwiseFIR.apply(x, k, stride, pad[0])
    return _DepthwiseFIR.apply(F.pad(x, (pad[0], pad[1], pad[0], pad[1])), k, stride, 0)


def grouped_fir_reference(x: torch.Tensor, pad: tuple[int, int], gain: float = 1.0,
                          stride: int = 1) -> torch.Tensor:
    """`fir_filter` as one plain grouped convolution (what it replaced; autograd's double
    backward of it loops over the channels): the reference of tests and benchmarks."""
    c = x.shape[1]
    k = (_fir_kernel(x.device, x.dtype) * gain).expand(c, 1, 4, 4)
    return F.conv2d(F.pad(x, (pad[0], pad[1], pad[0], pad[1])), k, groups=c, stride=stride)


class CountConvolutions(TorchDispatchMode):
    """Counts the convolution kernels dispatched while active (`with CountConvolutions() as n:`
    then `n.calls`): how the FIR derivatives' cost is checked not to grow with width."""

    OPS = {torch.ops.aten.convolution.default, torch.ops.aten.convolution_backward.default,
           torch.ops.aten._convolution.default}

    def __init__(self):
        super().__init__()
        self.calls = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += func in self.OPS
        return func(*args, **(kwargs or {}))


def upsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x upsampling: zero insertion, then the FIR filter with gain 4 (upfirdn2d, up=2)."""
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, ::2, ::2] = x
    return fir_filter(up, (2, 1), gain=4.0)


def downsample2x(x: torch.Tensor) -> torch.Tensor:
    """2x downsampling: the FIR filter, then every second pixel (upfirdn2d, down=2)."""
    return fir_filter(x, (1, 1), stride=2)


# --------------------------------------------------------------------------- bias + activation
class _BiasLReLU(torch.autograd.Function):
    """y = leaky_relu(x + b, alpha) * gain that keeps only y for its backward.

    Written as three autograd ops, the same layer keeps x + b for leaky_relu's backward while
    the next layer keeps y: two full activations per layer where NVlabs' bias_act keeps one
    (issue 23: peak memory of the main step). lrelu's derivative depends only on the sign of
    its input, which is y's sign (gain > 0), so y suffices. The backward is built from
    differentiable ops on the incoming gradient (the mask from y is a constant: the second
    derivative of lrelu is zero almost everywhere), so R1 and path length differentiate
    through it again. Same values as the three ops, bit for bit: the sum x + b is formed with
    the same type promotion, and the gradient in the same order (gain, then lrelu's mask).
    """

    @staticmethod
    def forward(ctx, x, bias, alpha, gain):
        ctx.bias_shape = None if bias is None else (1, bias.shape[0], *([1] * (x.ndim - 2)))
        t = x if bias is None else x + bias.view(ctx.bias_shape)
        y = F.leaky_relu(t, alpha).mul_(gain)
        ctx.save_for_backward(y)
        ctx.alpha, ctx.gain = alpha, gain
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        dt = torch.ops.aten.leaky_relu_backward(grad * ctx.gain, y.detach(), ctx.alpha, True)
        db = dt.sum_to_size(ctx.bias_shape).flatten() if ctx.needs_input_grad[1] else None
        return dt, db, None, None


def bias_lrelu(x: torch.Tensor, bias: torch.Tensor | None = None, alpha: float = 0.2,
               gain: float = _SQRT2) -> torch.Tensor:
    """leaky_relu(x + bias[channel], alpha) * gain, keeping one activation for the backward."""
    return _BiasLReLU.apply(x, bias, alpha, gain)


def bias_lrelu_reference(x: torch.Tensor, bias: torch.Tensor | None = None, alpha: float = 0.2,
                         gain: float = _SQRT2) -> torch.Tensor:
    """`bias_lrelu` as the plain ops it replaced: the reference of tests and benchmarks."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, alpha) * gain


# --------------------------------------------------------------------------- layers
class EqualLinear(nn.Module):
    """Linear layer with equalised learning rate; `activation` lrelu applies gain sqrt(2)."""

    def __init__(self, c_in: int, c_out: int, bias_init: float = 0.0, lr_multiplier: float = 1.0,
                 activation: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in) / lr_multiplier)
        self.bias = nn.Parameter(torch.full((c_out,), float(bias_init)))
        self.weight_gain = lr_multiplier / math.sqrt(c_in)
        self.bias_gain = lr_multiplier
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.weight_gain, self.bias * self.bias_gain)
        return bias_lrelu(x) if self.activation else x


class EqualConv2d(nn.Module):
    """k x k convolution with equalised learning rate, optional FIR up/down-sampling and lrelu."""

    def __init__(self, c_in: int, c_out: int, kernel: int, bias: bool = True, activation: bool = True,
                 up: bool = False, down: bool = False):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(c_out, c_in, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(c_out)) if bias else None
        self.weight_gain = 1 / math.sqrt(c_in * kernel * kernel)
        self.activation, self.up, self.down, self.pad = activation, up, down, kernel // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * self.weight_gain
        if self.up:
            x = F.conv2d(upsample2x(x), w, self.bias, padding=self.pad)
        elif self.down and w.shape[-1] == 1:  # a 1x1 conv commutes with the filter: filter first
            x = F.conv2d(downsample2x(x), w, self.bias)
        elif self.down:
            # conv -> filter -> every second pixel, computed as filter -> stride-2 conv (as NVlabs'
            # conv2d_resample; a quarter of the conv's work). Away from the border the numbers are
            # the same; on it the conv's zero padding is replaced by the full-support result.
            x = F.conv2d(fir_filter(x, (self.pad + 1, self.pad + 1)), w, self.bias, stride=2)
        else:
            x = F.conv2d(x, w, self.bias, padding=self.pad)
        return bias_lrelu(x) if self.activation else x


def modulated_conv2d(x: torch.Tensor, weight: torch.Tensor, styles: torch.Tensor,
                     demodulate: bool = True, padding: int = 1, fused: bool | None = None,
                     up: bool = False) -> torch.Tensor:
    """StyleGAN2's modulated convolution.

    x (B, C_in, H, W), weight (C_out, C_in, k, k), styles (B, C_in): each sample's kernel is
    weight * styles[b] over input channels, divided (demodulate) by its L2 norm per output
    channel (+ 1e-8), so outputs keep unit variance. Two equal computations: `fused` builds
    the per-sample kernels and runs one grouped convolution; unfused (the default for
    batches > 1, as NVlabs trains) scales the input by the styles, runs one ordinary
    convolution with the shared weight and scales the output by the demodulation
    coefficients, which is much faster for training batches on GPU and CPU.

    `up=True` (3x3 kernels, unfused): 2x upsampling then the convolution, i.e.
    conv(upsample2x(x)) in the interior, computed as a stride-2 transposed convolution of x
    followed by the FIR filter over its full support (NVlabs' conv2d_resample): a quarter of
    the multiply-adds. Border pixels see the filtered full-support result instead of zeros.
    """
    b, c_in, h, w = x.shape
    c_out = weight.shape[0]
    if fused is None:
        fused = b == 1 and not up
    if not fused:
        xs = x * styles[:, :, None, None].to(x.dtype)
        if up:
            # conv3x3(zero-inserted x) over its full support = transposed conv with the flipped kernel
            full = F.conv_transpose2d(xs, weight.to(x.dtype).flip(2, 3).transpose(0, 1), stride=2)
            out = fir_filter(full, (1, 1), gain=4.0)  # (B, C_out, 2H, 2W)
        else:
            out = F.conv2d(xs, weight.to(x.dtype), padding=padding)
        if demodulate:
            norms = (weight.square().sum(dim=(2, 3))[None] * styles.square()[:, None, :]).sum(dim=2)
            out = out * torch.rsqrt(norms + 1e-8)[:, :, None, None].to(out.dtype)  # (B, C_out)
        return out
    wts = weight[None] * styles[:, None, :, None, None]  # (B, C_out, C_in, k, k)
    if demodulate:
        wts = wts * torch.rsqrt(wts.square().sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    out = F.conv2d(x.reshape(1, b * c_in, h, w), wts.reshape(b * c_out, c_in, *weight.shape[2:]),
                   padding=padding, groups=b)
    return out.reshape(b, c_out, *out.shape[2:])


class SynthesisLayer(nn.Module):
    """Modulated 3x3 conv (optionally after 2x upsampling), noise, bias, lrelu."""

    def __init__(self, c_in: int, c_out: int, w_dim: int, resolution: int, up: bool = False):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)  # styles start at 1
        self.weight = nn.Parameter(torch.randn(c_out, c_in, 3, 3))
        self.bias = nn.Parameter(torch.zeros(c_out))
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(resolution, resolution))
        self.up, self.resolution = up, resolution

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        styles = self.affine(w) / math.sqrt(self.weight[0].numel())
        if self.up:
            x = modulated_conv2d(x, self.weight, styles, demodulate=True, up=True)
        else:
            x = modulated_conv2d(x, self.weight, styles, demodulate=True, padding=1)
        if noise_mode == "random":
            r = self.resolution
            noise = torch.randn(x.shape[0], 1, r, r, device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return bias_lrelu(x, self.bias)


class ToRGB(nn.Module):
    """Modulated 1x1 conv to RGB, without demodulation (skip architecture)."""

    def __init__(self, c_in: int, w_dim: int):
        super().__init__()
        self.affine = EqualLinear(w_dim, c_in, bias_init=1.0)
        self.weight = nn.Parameter(torch.randn(3, c_in, 1, 1))
        self.bias = nn.Parameter(torch.zeros(3))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        styles = self.affine(w) / math.sqrt(self.weight[0].numel())
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, padding=0)
        return x + self.bias[None, :, None, None]


def _channels(res: int, channel_base: int, channel_max: int) -> int:
    return min(channel_base // res, channel_max)


# --------------------------------------------------------------------------- generator
class MappingNetwork(nn.Module):
    """z (B, z_dim) [+ embedded labels] -> w (B, w_dim): normalised inputs, lrelu FCs at lr x 0.01.
    Keeps `w_avg`, a running mean of w, for truncation."""

    def __init__(self, z_dim: int, c_dim: int, w_dim: int, num_layers: int, lr_multiplier: float = 0.01,
                 w_avg_beta: float = 0.995):
        super().__init__()
        self.z_dim, self.c_dim, self.w_avg_beta = z_dim, c_dim, w_avg_beta
        self.embed = EqualLinear(c_dim, w_dim) if c_dim > 0 else None
        dims = [z_dim + (w_dim if c_dim > 0 else 0)] + [w_dim] * num_layers
        self.fcs = nn.ModuleList(EqualLinear(a, b, lr_multiplier=lr_multiplier, activation=True)
                                 for a, b in zip(dims[:-1], dims[1:], strict=True))
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None,
                truncation_psi: float = 1.0, update_w_avg: bool = True) -> torch.Tensor:
        x = z * torch.rsqrt(z.square().mean(dim=1, keepdim=True) + 1e-8)
        if self.embed is not None:
            y = self.embed(F.one_hot(labels, self.c_dim).to(z.dtype))
            x = torch.cat([x, y * torch.rsqrt(y.square().mean(dim=1, keepdim=True) + 1e-8)], dim=1)
        for fc in self.fcs:
            x = fc(x)
        if self.training and self.w_avg_beta is not None and update_w_avg:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().float().mean(0).lerp(self.w_avg, self.w_avg_beta))
        if truncation_psi != 1:
            x = self.w_avg.to(x.dtype).lerp(x, truncation_psi)
        return x


class StyleGAN2Generator(nn.Module):
    """z (B, z_dim) and labels (B,) int64 -> images (B, 3, R, R) in [-1, 1].

    Args:
        z_dim, w_dim: latent and intermediate latent sizes (512 in the paper).
        c_dim: classes; 0 = unconditional.
        img_resolution: a power of two, 8 to 1024.
        channel_base, channel_max: channels at resolution r are min(channel_base / r, channel_max).
        mapping_layers: depth of the mapping network (8 in the paper, 2 for low-shot).
    """

    def __init__(self, z_dim: int = 512, c_dim: int = 0, img_resolution: int = 256, w_dim: int = 512,
                 channel_base: int = 16384, channel_max: int = 512, mapping_layers: int = 8):
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.config = {"arch": "stylegan2", "z_dim": z_dim, "c_dim": c_dim, "img_resolution": img_resolution,
                       "w_dim": w_dim, "channel_base": channel_base, "channel_max": channel_max,
                       "mapping_layers": mapping_layers}
        self.z_dim, self.c_dim, self.w_dim, self.img_resolution = z_dim, c_dim, w_dim, img_resolution
        self.mapping = MappingNetwork(z_dim, c_dim, w_dim, mapping_layers)
        resolutions = [2**i for i in range(2, int(np.log2(img_resolution)) + 1)]
        ch = {r: _channels(r, channel_base, channel_max) for r in resolutions}
        self.const = nn.Parameter(torch.randn(ch[4], 4, 4))
        self.convs = nn.ModuleList([SynthesisLayer(ch[4], ch[4], w_dim, 4)])
        self.torgbs = nn.ModuleList([ToRGB(ch[4], w_dim)])
        for r in resolutions[1:]:
            self.convs.append(SynthesisLayer(ch[r // 2], ch[r], w_dim, r, up=True))
            self.convs.append(SynthesisLayer(ch[r], ch[r], w_dim, r))
            self.torgbs.append(ToRGB(ch[r], w_dim))
        # w index per layer: conv i uses ws[i]; the ToRGB after conv i uses ws[i + 1] (as NVlabs)
        self.num_ws = len(self.convs) + 1

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        """ws (B, num_ws, w_dim) -> images (B, 3, R, R), not clamped (about [-1, 1])."""
        x = self.const[None].expand(ws.shape[0], -1, -1, -1).to(ws.dtype)
        x = self.convs[0](x, ws[:, 0], noise_mode)
        img = self.torgbs[0](x, ws[:, 1])
        for i, torgb in enumerate(self.torgbs[1:]):
            j = 1 + 2 * i
            x = self.convs[j](x, ws[:, j], noise_mode)
            x = self.convs[j + 1](x, ws[:, j + 1], noise_mode)
            img = upsample2x(img) + torgb(x, ws[:, j + 2])
        return img

    def mapping_ws(self, z: torch.Tensor, labels: torch.Tensor | None, truncation_psi: float = 1.0,
                   mixing_prob: float = 0.0) -> torch.Tensor:
        """ws (B, num_ws, w_dim); with probability `mixing_prob` per batch, style mixing: the
        layers from a random cut-off on take the w of a second, independent z.

        As NVlabs' loss does it: the second w is always computed (without updating w_avg) and the
        draw and cut-off stay tensors on the device, so a step has no host sync and a compiled G
        one graph, not one per cut-off."""
        if labels is None or self.c_dim == 0:
            labels = torch.zeros(z.shape[0], dtype=torch.long, device=z.device)
        w = self.mapping(z, labels if self.c_dim else None, truncation_psi)
        ws = w[:, None].repeat(1, self.num_ws, 1)
        if mixing_prob > 0:
            cutoff = torch.randint(1, self.num_ws, (), device=z.device)
            mixed = torch.rand((), device=z.device) < mixing_prob
            cutoff = torch.where(mixed, cutoff, torch.full_like(cutoff, self.num_ws))
            w2 = self.mapping(torch.randn_like(z), labels if self.c_dim else None, truncation_psi,
                              update_w_avg=False)
            later = torch.arange(self.num_ws, device=z.device) >= cutoff
            ws = torch.where(later[None, :, None], w2[:, None].to(ws.dtype), ws)
        return ws

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None, truncation_psi: float = 1.0,
                noise_mode: str = "random", mixing_prob: float = 0.0) -> torch.Tensor:
        return self.synthesis(self.mapping_ws(z, labels, truncation_psi, mixing_prob), noise_mode)


# --------------------------------------------------------------------------- discriminator
class DBlockResidual(nn.Module):
    """conv3x3, conv3x3 + 2x down, with a 1x1 down-sampled skip; the sum is scaled by sqrt(0.5)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv0 = EqualConv2d(c_in, c_in, 3)
        self.conv1 = EqualConv2d(c_in, c_out, 3, down=True)
        self.skip = EqualConv2d(c_in, c_out, 1, bias=False, activation=False, down=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.skip(x) + self.conv1(self.conv0(x))) * math.sqrt(0.5)


def minibatch_stddev(x: torch.Tensor, group_size: int = 4) -> torch.Tensor:
    """Append one channel: the std over a group of samples, averaged over channels and pixels.

    Groups are runs of consecutive samples (NVlabs strides them; for i.i.d. batches the two
    are the same), so a batch made by concatenating sets whose sizes are multiples of the
    group size, like D's one pass over cat([fake, real]), never mixes the sets in a group.
    """
    b, c, h, w = x.shape
    g = min(group_size, b)
    while b % g:
        g -= 1
    y = x.reshape(-1, g, c, h, w).float()
    y = (y - y.mean(1, keepdim=True)).square().mean(1).add(1e-8).sqrt().mean(dim=(1, 2, 3))  # (B / g,)
    y = y.repeat_interleave(g).reshape(-1, 1, 1, 1).expand(b, 1, h, w).to(x.dtype)
    return torch.cat([x, y], dim=1)


class StyleGAN2Discriminator(nn.Module):
    """images (B, 3, R, R) in [-1, 1] and labels (B,) -> logits (B,).

    fromRGB, residual blocks down to 4x4, then the epilogue: minibatch-stddev, conv3x3,
    FC (-> `feature_dim`), FC to 1, or to a class embedding space with a projection when
    conditional. `D(x, y, return_kd=True)` also gives the KD-DLGAN head's output on the
    epilogue FC's features (METHOD.md 1.2).
    """

    def __init__(self, c_dim: int = 0, img_resolution: int = 256, channel_base: int = 16384,
                 channel_max: int = 512, kd_dim: int = 0, mbstd_group: int = 4):
        super().__init__()
        if img_resolution < 8 or img_resolution & (img_resolution - 1):
            raise ValueError(f"img_resolution must be a power of two >= 8, got {img_resolution}")
        self.config = {"arch": "stylegan2", "c_dim": c_dim, "img_resolution": img_resolution,
                       "channel_base": channel_base, "channel_max": channel_max, "kd_dim": kd_dim,
                       "mbstd_group": mbstd_group}
        self.c_dim, self.img_resolution, self.mbstd_group = c_dim, img_resolution, mbstd_group
        resolutions = [2**i for i in range(int(np.log2(img_resolution)), 2, -1)]  # R ... 8
        ch = {r: _channels(r, channel_base, channel_max) for r in [*resolutions, 4]}
        self.fromrgb = EqualConv2d(3, ch[img_resolution], 1)
        self.blocks = nn.ModuleList(DBlockResidual(ch[r], ch[r // 2]) for r in resolutions)
        c4 = ch[4]
        self.conv = EqualConv2d(c4 + 1, c4, 3)
        self.fc = EqualLinear(c4 * 16, c4, activation=True)
        self.feature_dim = c4
        self.cmap_dim = c4 if c_dim > 0 else 0
        self.out = EqualLinear(c4, self.cmap_dim or 1)
        self.embed = EqualLinear(c_dim, self.cmap_dim) if c_dim > 0 else None
        self.kd_head = KDFeatureHead(c4, kd_dim) if kd_dim > 0 else None

    def trunk(self, images: torch.Tensor) -> torch.Tensor:
        """fromRGB and the residual blocks: the 4 x 4 maps (B, feature_dim, 4, 4) the epilogue takes."""
        x = self.fromrgb(images)
        for block in self.blocks:
            x = block(x)
        return x

    def instance_features(self, images: torch.Tensor) -> torch.Tensor:
        """InsGen's per-image features (B, feature_dim): the trunk's 4 x 4 maps averaged over space
        (before minibatch-stddev, as in genforce/insgen)."""
        return self.trunk(images).mean(dim=(2, 3))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """The epilogue FC's output (B, feature_dim)."""
        x = self.conv(minibatch_stddev(self.trunk(images), self.mbstd_group))
        return self.fc(x.flatten(1))

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None,
                return_kd: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        h = self.features(images)
        out = self.out(h)
        if self.embed is not None:
            cmap = self.embed(F.one_hot(labels, self.c_dim).to(h.dtype))
            logits = (out * cmap).sum(dim=1) / math.sqrt(self.cmap_dim)
        else:
            logits = out.squeeze(1)
        if return_kd:
            if self.kd_head is None:
                raise ValueError("this discriminator has no KD feature head (kd_dim = 0)")
            return logits, self.kd_head(h)
        return logits
