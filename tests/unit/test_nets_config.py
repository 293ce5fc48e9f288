import pytest
import torch

from kdgan.config import PRESETS, TrainConfig, from_dict, resolve, to_dict
from kdgan.errors import KdganError
from kdgan.nets import build_discriminator, build_generator


def count(m):
    return sum(p.numel() for p in m.parameters())


def test_biggan_cifar_sizes_match_the_published_network():
    G = build_generator({"arch": "biggan", "z_dim": 128, "c_dim": 10, "img_resolution": 32, "ch": 64})
    D = build_discriminator({"arch": "biggan", "c_dim": 10, "img_resolution": 32, "ch": 64})
    assert count(G) == 4_304_387 and count(D) == 4_207_361  # BigGAN-CIFAR: 4.3M / 4.2M
    assert D.feature_dim == 256 and G.z_dim == 128 and G.c_dim == 10 and G.img_resolution == 32


@pytest.mark.parametrize("res,c_dim", [(32, 0), (32, 3), (64, 0)])
def test_shapes_range_and_rebuild_from_config(res, c_dim):
    torch.manual_seed(0)
    G = build_generator({"arch": "biggan", "z_dim": 8, "c_dim": c_dim, "img_resolution": res, "ch": 4})
    D = build_discriminator({"arch": "biggan", "c_dim": c_dim, "img_resolution": res, "ch": 4})
    z, y = torch.randn(3, 8), torch.tensor([0, 1, 2]) % max(c_dim, 1)
    x = G(z, y)
    assert x.shape == (3, 3, res, res) and x.abs().max() <= 1
    assert D(x, y).shape == (3,)
    G2 = build_generator(G.config)
    G2.load_state_dict(G.state_dict())
    G.eval(), G2.eval()
    assert torch.equal(G(z, y), G2(z, y))


def test_conditional_generator_depends_on_labels():
    torch.manual_seed(0)
    G = build_generator({"arch": "biggan", "z_dim": 8, "c_dim": 4, "img_resolution": 32, "ch": 4}).eval()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.Embedding):
                m.weight.normal_()
    z = torch.randn(1, 8)
    assert not torch.equal(G(z, torch.tensor([0])), G(z, torch.tensor([1])))


def test_presets_resolve_and_flags_override():
    for name in PRESETS:
        resolve(name, {})
    cfg = resolve("biggan-cifar10-10pct-da", {"batch_size": "32", "betas": "0,0.99"})
    assert cfg.batch_size == 32 and cfg.betas == (0.0, 0.99) and cfg.data_fraction == 0.1
    assert cfg.steps == 125_000 and resolve("biggan-cifar10-20pct-da", {}).steps == 250_000
    assert from_dict(to_dict(cfg)) == cfg
    assert TrainConfig().g_lr == 2e-4 and TrainConfig().betas == (0.0, 0.999)


@pytest.mark.parametrize("overrides,match", [
    ({"nope": 1}, "unknown config field"),
    ({"batch_size": "many"}, "expects a int"),
    ({"data_fraction": 1.5}, r"data_fraction must be in \(0, 1\]"),
    ({"diffaugment": "zoom"}, "unknown DiffAugment op"),
])
def test_bad_config_is_refused_clearly(overrides, match):
    with pytest.raises(KdganError, match=match):
        resolve(None, overrides)
    with pytest.raises(KdganError, match="unknown preset"):
        resolve("biggan-cifar11", {})
