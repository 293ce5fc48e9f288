"""FIR resampling's derivatives: equal to the plain grouped convolution, and width-independent cost."""

from __future__ import annotations

import pytest
import torch

from kdgan.losses.regularizers import PathLengthPenalty, r1_penalty
from kdgan.nets import build_discriminator, build_generator
from kdgan.nets.stylegan2 import CountConvolutions, fir_filter, grouped_fir_reference


def three_derivatives(f, x, autocast):
    """Output, gradient, gradient of the gradient's norm, and one order more, of f at x."""
    x = x.clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        y = f(x)
        w = torch.linspace(-1, 1, y.numel()).reshape(y.shape)
        (g,) = torch.autograd.grad((y.float().square() * w).sum(), x, create_graph=True)
        (gg,) = torch.autograd.grad(g.square().sum(), x, create_graph=True)
        (ggg,) = torch.autograd.grad(gg.square().sum(), x)
    return y, g, gg, ggg


@pytest.mark.parametrize("autocast", [False, True], ids=["fp32", "bf16-autocast"])
@pytest.mark.parametrize("pad,gain,stride,size", [((1, 1), 1.0, 2, 9), ((2, 1), 4.0, 1, 8),
                                                   ((2, 2), 1.0, 2, 8), ((1, 1), 4.0, 1, 7)])
def test_fir_filter_equals_the_grouped_convolution_to_the_third_derivative(pad, gain, stride, size, autocast):
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    new = three_derivatives(lambda t: fir_filter(t, pad, gain, stride), x, autocast)
    ref = three_derivatives(lambda t: grouped_fir_reference(t, pad, gain, stride), x, autocast)
    for name, a, b in zip(("output", "gradient", "2nd", "3rd"), new, ref, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape, name
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5, msg=name)


def r1_convolutions(channels: int) -> int:
    torch.manual_seed(0)
    D = build_discriminator({"arch": "stylegan2", "c_dim": 0, "img_resolution": 16,
                             "channel_base": 16 * channels, "channel_max": channels})
    real_images = torch.randn(4, 3, 16, 16, requires_grad=True)
    with CountConvolutions() as count:
        r1_penalty(D(real_images), real_images).backward()
    return count.calls


def path_length_convolutions(channels: int) -> int:
    torch.manual_seed(0)
    G = build_generator({"arch": "stylegan2", "z_dim": 8, "c_dim": 0, "w_dim": 8, "mapping_layers": 2,
                         "img_resolution": 16, "channel_base": 16 * channels, "channel_max": channels})
    with CountConvolutions() as count:
        PathLengthPenalty()(G, torch.randn(4, 8), None).backward()
    return count.calls


def test_r1_and_path_length_convolution_calls_do_not_grow_with_width():
    # every layer 8 or 32 channels wide; a grouped conv's double backward loops once per channel
    assert r1_convolutions(8) == r1_convolutions(32)
    assert path_length_convolutions(8) == path_length_convolutions(32)
