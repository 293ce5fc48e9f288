"""StyleGAN2's bias + lrelu as one autograd function that keeps only its output (issue 23 item 3):
the same values as the three plain ops, through the second derivative, and less kept memory."""

import pytest
import torch

from kdgan.nets import stylegan2
from kdgan.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator, bias_lrelu, bias_lrelu_reference
from kdgan.utils.memory import SavedTensors


def _derivatives(fn, x, b):
    """y, dy/d(x, b) of a fixed projection, and the derivative of that gradient's norm (R1-style)."""
    x = x.detach().requires_grad_(True)
    b = None if b is None else b.detach().requires_grad_(True)
    inputs = [x] if b is None else [x, b]
    y = fn(x, b)
    w = torch.linspace(-1, 1, y.numel()).reshape(y.shape).to(y.dtype)
    grads = torch.autograd.grad((y.square() * w).sum(), inputs, create_graph=True)  # dy depends on x
    second = torch.autograd.grad(sum(g.float().square().sum() for g in grads), inputs)
    return [y, *grads, *second]


@pytest.mark.parametrize("shape,bias", [((3, 5, 6, 7), True), ((3, 5, 6, 7), False), ((4, 9), False)])
@pytest.mark.parametrize("autocast", [False, True])
def test_bias_lrelu_equals_the_plain_ops_through_the_second_derivative(shape, bias, autocast):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g)
    b = torch.randn(shape[1], generator=g) if bias else None
    if autocast:
        x = x.bfloat16()  # a conv's output under bf16 autocast; the bias stays fp32
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        new = _derivatives(bias_lrelu, x, b)
        ref = _derivatives(bias_lrelu_reference, x, b)
    for a, r in zip(new, ref, strict=True):
        assert a.dtype == r.dtype
        torch.testing.assert_close(a, r, rtol=0, atol=0)


def test_bias_lrelu_gradgradcheck():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 4, 4, dtype=torch.float64, generator=g).requires_grad_(True)
    b = torch.randn(3, dtype=torch.float64, generator=g).requires_grad_(True)
    assert torch.autograd.gradcheck(bias_lrelu, (x, b))
    assert torch.autograd.gradgradcheck(bias_lrelu, (x, b))


def test_saved_tensors_counts_a_forward_and_lets_every_graph_go():
    import gc
    import weakref

    x = torch.randn(4, 8, requires_grad=True)
    with SavedTensors() as kept:
        y = x.exp()  # saves its output: the case where holding it could tie the graph to itself
        (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    assert kept.peak >= 2 * 4 * 8 * 4 and kept.bytes > 0
    alive = weakref.ref(y)
    g.sum().backward()
    del y, g
    gc.collect()
    assert alive() is None and kept.bytes == 0
    torch.testing.assert_close(x.grad, (4 * (2 * x).exp()).detach())  # d/dx sum 2 e^{2x} = 4 e^{2x}


def _r1_and_kept(D, x):
    """D's R1 gradient on its parameters, and the activation bytes its forward keeps."""
    x = x.detach().requires_grad_(True)
    with SavedTensors(exclude=[*D.parameters(), *D.buffers()]) as kept:
        logits = D(x)
    (g,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    D.zero_grad(set_to_none=True)
    g.square().sum().backward()
    # a bias reached only through lrelu's mask gets None here and zeros from the plain ops: the same
    return [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in D.parameters()], kept.peak


def test_discriminator_keeps_less_with_identical_r1(monkeypatch):
    torch.manual_seed(0)
    D = StyleGAN2Discriminator(img_resolution=32, channel_base=512, channel_max=32)
    x = torch.randn(4, 3, 32, 32)
    new_grads, new_bytes = _r1_and_kept(D, x)
    monkeypatch.setattr(stylegan2, "bias_lrelu", bias_lrelu_reference)
    ref_grads, ref_bytes = _r1_and_kept(D, x)
    for a, r in zip(new_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r, rtol=0, atol=0)
    # the layers whose output feeds a conv kept their pre-activation as well (the rest: the same size)
    assert new_bytes < ref_bytes, (new_bytes, ref_bytes)


def test_generator_keeps_less(monkeypatch):
    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=16, w_dim=16, img_resolution=32, channel_base=512, channel_max=32,
                           mapping_layers=2)
    z = torch.randn(4, 16)

    def run():
        torch.manual_seed(1)
        with SavedTensors(exclude=[*G.parameters(), *G.buffers()]) as kept:
            img = G(z)
        G.zero_grad(set_to_none=True)
        img.square().sum().backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.clone() for p in G.parameters()]
        return img.detach(), grads, kept.peak

    new_img, new_grads, new_bytes = run()
    monkeypatch.setattr(stylegan2, "bias_lrelu", bias_lrelu_reference)
    ref_img, ref_grads, ref_bytes = run()
    torch.testing.assert_close(new_img, ref_img, rtol=0, atol=0)
    for a, r in zip(new_grads, ref_grads, strict=True):
        torch.testing.assert_close(a, r, rtol=0, atol=0)
    assert new_bytes < 0.85 * ref_bytes, (new_bytes, ref_bytes)
