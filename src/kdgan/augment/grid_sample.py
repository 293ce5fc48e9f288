"""Bilinear `grid_sample` with a second derivative with respect to its input, on every device.

R1 differentiates D's gradient with respect to the real images, so it needs the second
derivative of every op between the images and D. ADA's geometric transforms resample with
`grid_sample`, whose backward (`aten::grid_sampler_2d_backward`) has no derivative of its own
on CUDA: R1 through ADA fails there with "derivative for aten::grid_sampler_2d_backward is not
implemented" (the CPU kernel happens to be differentiable twice).

The output is linear in the input image for a fixed grid, y = A(grid) x, so the gradient with
respect to x is A^T g and its derivative with respect to g is A again: one more
`grid_sample`. The grid itself is never differentiated here (ADA's grids come from random
parameters); a grid that requires grad falls back to `F.grid_sample`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_INTERPOLATION = {"bilinear": 0, "nearest": 1, "bicubic": 2}
_PADDING = {"zeros": 0, "border": 1, "reflection": 2}


def grid_sample(x: torch.Tensor, grid: torch.Tensor, padding_mode: str = "reflection",
                align_corners: bool = False) -> torch.Tensor:
    """`F.grid_sample(x, grid, mode="bilinear", ...)` for 4-D x, twice differentiable in x."""
    if grid.requires_grad or x.dim() != 4:
        return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode,
                             align_corners=align_corners)
    return _GridSample.apply(x, grid, padding_mode, align_corners)


class _GridSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, grid, padding_mode, align_corners):
        # at least float32 and one dtype for both, as autocast runs grid_sample (the backward
        # kernel wants one dtype)
        dtype = torch.promote_types(torch.promote_types(x.dtype, grid.dtype), torch.float32)
        x32, grid32 = x.to(dtype), grid.to(dtype)
        ctx.save_for_backward(x32, grid32)
        ctx.options = (padding_mode, align_corners)
        ctx.x_dtype = x.dtype
        return F.grid_sample(x32, grid32, mode="bilinear", padding_mode=padding_mode,
                             align_corners=align_corners)

    @staticmethod
    def backward(ctx, grad_out):
        x, grid = ctx.saved_tensors
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad_x = _GridSampleBackward.apply(grad_out.to(x.dtype), x, grid, *ctx.options).to(ctx.x_dtype)
        return grad_x, None, None, None


class _GridSampleBackward(torch.autograd.Function):
    @staticmethod
    def forward(ctx, grad_out, x, grid, padding_mode, align_corners):
        ctx.save_for_backward(grid)
        ctx.options = (padding_mode, align_corners)
        with torch.autocast(grad_out.device.type, enabled=False):
            grad_x, _ = torch.ops.aten.grid_sampler_2d_backward(
                grad_out, x, grid, _INTERPOLATION["bilinear"], _PADDING[padding_mode], align_corners,
                [True, False])
        return grad_x

    @staticmethod
    def backward(ctx, grad_grad_x):
        (grid,) = ctx.saved_tensors
        padding_mode, align_corners = ctx.options
        # d(A^T g)/dg applied to grad_grad_x is A grad_grad_x; A^T g does not depend on x.
        grad_grad_out = F.grid_sample(grad_grad_x.to(grid.dtype), grid, mode="bilinear",
                                      padding_mode=padding_mode, align_corners=align_corners)
        return grad_grad_out, None, None, None, None
