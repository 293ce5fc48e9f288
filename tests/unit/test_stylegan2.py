"""StyleGAN2 networks: modulated convolution by hand, resampling, shapes, conditioning, KD head."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from kdgan.nets import build_discriminator, build_generator
from kdgan.nets.stylegan2 import downsample2x, minibatch_stddev, modulated_conv2d, upsample2x

TINY = {"img_resolution": 16, "channel_base": 256, "channel_max": 32}
TINY_G = {"arch": "stylegan2", "mapping_layers": 2, **TINY}


def test_modulated_conv_equals_an_explicit_per_sample_convolution():
    torch.manual_seed(0)
    x, weight, styles = torch.randn(3, 4, 6, 6), torch.randn(5, 4, 3, 3), torch.randn(3, 4)
    for demodulate, fused in itertools.product((True, False), (True, False)):
        out = modulated_conv2d(x, weight, styles, demodulate=demodulate, padding=1, fused=fused)
        for b in range(3):
            w = weight * styles[b][None, :, None, None]
            if demodulate:
                w = w / (w.square().sum(dim=(1, 2, 3), keepdim=True) + 1e-8).sqrt()
            torch.testing.assert_close(out[b:b + 1], F.conv2d(x[b:b + 1], w, padding=1), rtol=1e-5, atol=1e-5)


def test_fir_resampling_keeps_shape_and_constant_images():
    x = torch.full((2, 3, 8, 8), 0.7)
    up, down = upsample2x(x), downsample2x(x)
    assert up.shape == (2, 3, 16, 16) and down.shape == (2, 3, 4, 4)
    torch.testing.assert_close(up[..., 2:-2, 2:-2], torch.full_like(up[..., 2:-2, 2:-2], 0.7))  # gain 4
    torch.testing.assert_close(down[..., 1:-1, 1:-1], torch.full_like(down[..., 1:-1, 1:-1], 0.7))


def test_generator_and_discriminator_shapes_conditioning_gradients_and_kd_head():
    torch.manual_seed(0)
    G = build_generator({"z_dim": 16, "c_dim": 3, "w_dim": 16, **TINY_G})
    D = build_discriminator({"arch": "stylegan2", "c_dim": 3, "kd_dim": 7, **TINY})
    z, labels = torch.randn(4, 16), torch.tensor([0, 1, 2, 0])
    images = G(z, labels)
    assert images.shape == (4, 3, 16, 16) and torch.isfinite(images).all()
    logits, kd = D(images, labels, return_kd=True)
    assert logits.shape == (4,) and kd.shape == (4, 7)
    (logits.sum() + kd.sum()).backward()
    assert G.const.grad.abs().sum() > 0 and G.mapping.fcs[0].weight.grad.abs().sum() > 0
    assert D.fromrgb.weight.grad.abs().sum() > 0
    G2 = build_generator(dict(G.config))
    G2.load_state_dict(G.state_dict())  # rebuilt from its config
    torch.testing.assert_close(G2(z, labels, noise_mode="const"), G(z, labels, noise_mode="const"))


def test_style_mixing_and_truncation():
    torch.manual_seed(0)
    G = build_generator({"z_dim": 8, "c_dim": 0, "w_dim": 8, **TINY_G})
    w_avg, z0 = G.mapping.w_avg.clone(), torch.randn(2, 8)
    ws = G.mapping_ws(z0, None, mixing_prob=1.0)
    same_as_first = (ws == ws[:, :1]).all(dim=2).all(dim=0)
    assert same_as_first[0] and not same_as_first.all()  # a cut-off: later layers use another w
    cut = int(same_as_first.long().argmin())
    assert same_as_first[:cut].all() and not same_as_first[cut:].any()  # one cut-off, then the other w
    after_mixing = G.mapping.w_avg.clone()
    G.mapping.w_avg.copy_(w_avg)
    G.mapping(z0, None)
    assert torch.equal(after_mixing, G.mapping.w_avg)  # w_avg follows the first w only (NVlabs)
    ws[:, cut:].sum().backward()  # the layers after the cut-off: only the second w reaches them
    assert G.mapping.fcs[0].weight.grad.abs().sum() > 0
    z = torch.randn(2, 8)
    torch.testing.assert_close(G.mapping_ws(z, None, mixing_prob=0.0), G.mapping_ws(z, None))
    never = [G.mapping_ws(z, None, mixing_prob=1e-9) for _ in range(5)]  # drawn, never mixed
    assert all(torch.equal(x, never[0]) for x in never) and (never[0] == never[0][:, :1]).all()
    G.eval()
    w = G.mapping(torch.randn(2, 8), None)
    truncated = G.mapping(torch.randn(2, 8), None, truncation_psi=0.0)
    torch.testing.assert_close(truncated, G.mapping.w_avg.expand_as(w))


def test_minibatch_stddev_appends_one_channel_of_group_std():
    x = torch.randn(8, 5, 4, 4)
    y = minibatch_stddev(x, 4)
    assert y.shape == (8, 6, 4, 4) and (y[:, -1] >= 0).all()
    assert torch.equal(y[:, :5], x)
    # groups are consecutive samples: the statistic of samples 0-3 ignores samples 4-7
    x2 = x.clone()
    x2[4:] += 100 * torch.randn(4, 5, 4, 4)
    assert torch.equal(minibatch_stddev(x2, 4)[:4, -1], y[:4, -1])
    ref = x[:4].std(dim=0, unbiased=False).mean()
    torch.testing.assert_close(y[0, -1, 0, 0], ref, atol=1e-4, rtol=1e-4)


def test_fast_resampling_convolutions_equal_the_plain_compositions_inside_the_border():
    from kdgan.nets.stylegan2 import EqualConv2d

    torch.manual_seed(0)
    x, weight, styles = torch.randn(2, 4, 12, 12), torch.randn(5, 4, 3, 3), torch.randn(2, 4)
    fast = modulated_conv2d(x, weight, styles, up=True)  # transposed conv + filter
    plain = modulated_conv2d(upsample2x(x), weight, styles, padding=1)  # upsample, then conv
    assert fast.shape == plain.shape == (2, 5, 24, 24)
    torch.testing.assert_close(fast[..., 2:-2, 2:-2], plain[..., 2:-2, 2:-2], rtol=1e-4, atol=1e-4)
    conv = EqualConv2d(4, 6, 3, down=True, activation=False)
    reference = downsample2x(F.conv2d(x, conv.weight * conv.weight_gain, conv.bias, padding=1))
    assert conv(x).shape == reference.shape == (2, 6, 6, 6)
    torch.testing.assert_close(conv(x)[..., 1:-1, 1:-1], reference[..., 1:-1, 1:-1], rtol=1e-5, atol=1e-5)
    skip = EqualConv2d(4, 6, 1, bias=False, activation=False, down=True)
    reference = downsample2x(F.conv2d(x, skip.weight * skip.weight_gain))
    torch.testing.assert_close(skip(x), reference, rtol=1e-5, atol=1e-5)  # exact, border too
