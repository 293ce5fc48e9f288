import copy

import torch

from kdgan.losses.adversarial import hinge_d, hinge_g, ns_d, ns_g
from kdgan.nets import build_generator
from kdgan.training.ema import ema_decay_at, update_ema


def test_hinge_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0])
    fake = torch.tensor([-2.0, 0.0, 1.0])
    lr, lf = hinge_d(real, fake)
    assert torch.isclose(lr, torch.tensor((0 + 0.5 + 2.0) / 3))
    assert torch.isclose(lf, torch.tensor((0 + 1.0 + 2.0) / 3))
    assert torch.isclose(hinge_g(fake), torch.tensor(1 / 3))


def test_non_saturating_by_hand():
    real, fake = torch.tensor([0.0]), torch.tensor([0.0])
    lr, lf = ns_d(real, fake)
    log2 = torch.log(torch.tensor(2.0))
    assert torch.isclose(lr, log2) and torch.isclose(lf, log2)
    assert torch.isclose(ns_g(torch.tensor([3.0])), torch.log1p(torch.exp(torch.tensor(-3.0))))


def test_losses_are_float32_under_half_inputs():
    assert hinge_g(torch.tensor([1.0], dtype=torch.bfloat16)).dtype == torch.float32


def test_ema_copy_then_lerp():
    torch.manual_seed(0)
    G = build_generator({"arch": "biggan", "z_dim": 8, "c_dim": 0, "img_resolution": 32, "ch": 4})
    G_ema = copy.deepcopy(G)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    update_ema(G_ema, G, 0.0)
    assert all(torch.equal(a, b) for a, b in zip(G_ema.parameters(), G.parameters(), strict=True))
    before = [p.clone() for p in G_ema.parameters()]
    with torch.no_grad():
        for p in G.parameters():
            p.add_(1.0)
    update_ema(G_ema, G, 0.9)
    for b, e, g in zip(before, G_ema.parameters(), G.parameters(), strict=True):
        assert torch.allclose(e, 0.9 * b + 0.1 * g, atol=1e-6)
    G.train()(torch.randn(4, 8))  # moves BatchNorm statistics and spectral norm's u, v
    update_ema(G_ema, G, 0.9)
    buffers = list(G.buffers())
    assert any(b.dtype == torch.long for b in buffers)  # num_batches_tracked, copied with the rest
    assert all(torch.equal(a, b) for a, b in zip(G_ema.buffers(), buffers, strict=True))


def test_ema_schedule():
    assert ema_decay_at(999, 0.9999, 1000) == 0.0
    assert ema_decay_at(1000, 0.9999, 1000) == 0.9999
