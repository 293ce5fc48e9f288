"""ADA pipeline, the adaptive p (ADA / APA), APA swaps, lazy R1, path length, StyleGAN2 config."""

import math

import numpy as np
import pytest
import torch

from kdgan.augment.ada import COLOR, GEOMETRIC, AdaptiveP, ADAugment, Augment, parse_ops
from kdgan.augment.diffaugment import DiffAugment
from kdgan.config import PRESETS, resolve
from kdgan.data import ImageSet
from kdgan.errors import KdganError
from kdgan.losses.regularizers import PathLengthPenalty
from kdgan.nets.stylegan2 import StyleGAN2Generator
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer
from kdgan.training.objectives import GANObjective, Regularization

LUMA = torch.ones(3) / math.sqrt(3)


def images(b=6, side=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, side, side, generator=g) * 2 - 1


def test_parse_ops_groups_and_errors():
    assert parse_ops("bgc") == GEOMETRIC + COLOR
    assert parse_ops("color,xflip") == ("xflip", *COLOR)
    assert parse_ops("") == ()
    with pytest.raises(KdganError, match="unknown ADA op 'blur'"):
        parse_ops("bgc,blur")


@pytest.mark.parametrize("ops", ["bgc", *GEOMETRIC, *COLOR])
def test_p_zero_is_exactly_the_identity(ops):
    x = images()
    assert torch.equal(ADAugment(ops)(x, p=0.0), x)
    assert torch.equal(ADAugment(ops, AdaptiveP(target=0.6, p_init=0.0))(x), x)


@pytest.mark.parametrize("op", GEOMETRIC + COLOR)
def test_every_op_keeps_shape_changes_images_and_passes_gradients(op):
    torch.manual_seed(0)
    x = images(8).requires_grad_(True)
    y = ADAugment(op)(x, p=1.0)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert not torch.allclose(y, x)  # with p = 1 something happened
    (grad,) = torch.autograd.grad(y.square().sum(), x)
    assert torch.isfinite(grad).all() and grad.abs().sum() > 0
    if op in GEOMETRIC:  # bilinear resampling of reflected pixels: inside each image's range
        lo = x.detach().flatten(1).min(1).values.view(-1, 1, 1, 1)
        hi = x.detach().flatten(1).max(1).values.view(-1, 1, 1, 1)
        assert (y >= lo - 1e-5).all() and (y <= hi + 1e-5).all()


def test_integer_ops_are_exact_pixel_permutations():
    torch.manual_seed(1)
    x = images(16)
    y = ADAugment("xflip,rotate90")(x, p=1.0)
    for xi, yi in zip(x, y, strict=True):
        candidates = [torch.rot90(v, k, dims=(1, 2)) for v in (xi, xi.flip(2)) for k in range(4)]
        assert min((yi - c).abs().max().item() for c in candidates) < 1e-5
    y = ADAugment("xint")(x, p=1.0)
    for xi, yi in zip(x, y, strict=True):  # every output value is one of the image's values
        values = xi.flatten().unique()
        nearest = (yi.flatten()[:, None] - values[None]).abs().min(1).values
        assert nearest.max() < 1e-5


def test_colour_ops_act_as_specified_on_the_luma_axis():
    torch.manual_seed(2)
    x = images(8)
    luma = torch.einsum("bchw,c->bhw", x, LUMA)
    for op in ("hue", "saturation"):  # both leave the luma component of every pixel unchanged
        y = ADAugment(op)(x, p=1.0)
        torch.testing.assert_close(torch.einsum("bchw,c->bhw", y, LUMA), luma, atol=1e-5, rtol=1e-5)
    grey = x.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    for op in ("hue", "saturation"):  # and leave grey pixels grey and unchanged
        torch.testing.assert_close(ADAugment(op)(grey, p=1.0), grey, atol=1e-5, rtol=1e-5)
    flipped = ADAugment("lumaflip")(x, p=1.0)  # either untouched or the luma component negated
    for xi, yi, li in zip(x, flipped, luma, strict=True):
        assert torch.allclose(yi, xi) or torch.allclose(yi, xi - 2 * li * LUMA.view(3, 1, 1), atol=1e-5)


def test_augment_applies_ada_then_diffaugment():
    x = images()
    aug = Augment(DiffAugment(""), ADAugment("xflip", AdaptiveP(target=0, p_init=0.0)))
    assert torch.equal(aug(x), x)


def test_adaptive_p_rises_when_d_overfits_and_falls_when_it_does_not():
    ctl = AdaptiveP(target=0.6, batch_size=16, interval=4, kimg=1.0)
    step = 16 * 4 / 1000
    g = torch.Generator().manual_seed(0)
    for d_step in range(40):  # an overfitting D: real logits mostly positive, r_t ~ 0.9
        ctl.accumulate(torch.randn(16, generator=g) + 2.0)
        ctl.adjust(d_step)
    assert ctl.value == pytest.approx(10 * step, abs=1e-6) and ctl.rt.item() > 0.6
    for d_step in range(40, 60):  # a D that no longer tells real from fake: r_t ~ 0
        ctl.accumulate(torch.randn(16, generator=g))
        ctl.adjust(d_step)
    assert ctl.value == pytest.approx(5 * step, abs=1e-6) and ctl.rt.item() < 0.6
    for d_step in range(60, 200):
        ctl.accumulate(-torch.ones(16))
        ctl.adjust(d_step)
    assert ctl.value == 0.0  # clamped at 0
    fixed = AdaptiveP(target=0.0, p_init=0.3)
    fixed.accumulate(torch.ones(16))
    fixed.adjust(3)
    assert fixed.value == pytest.approx(0.3)  # target 0: p stays where it was set
    restored = AdaptiveP(target=0.6)
    restored.load_state_dict(ctl.state_dict())
    assert restored.value == ctl.value


class RecordingD(torch.nn.Module):
    """A linear D that remembers what it saw."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.full((3,), 0.1))
        self.seen = []

    def forward(self, x, labels=None):
        self.seen.append(x.detach().clone())
        return torch.einsum("bchw,c->b", x, self.w)


class ConstantG(torch.nn.Module):
    z_dim, c_dim = 4, 0

    def forward(self, z, labels=None, **kwargs):
        return torch.full((z.shape[0], 3, 8, 8), 0.5) + 0 * z.sum()


@pytest.mark.parametrize("p,swapped", [(0.0, False), (1.0, True)])
def test_apa_with_p_zero_never_swaps_and_with_p_one_always_does(p, swapped):
    apa = AdaptiveP(target=0.0, p_init=p)  # target 0: p stays fixed
    obj = GANObjective("ns", DiffAugment(""), 4, 0, reg=Regularization(apa=apa))
    D, real = RecordingD(), images(4, 8)
    obj.d_terms(ConstantG(), D, real, torch.zeros(4, dtype=torch.long))
    real_half = D.seen[0][4:]
    assert torch.equal(real_half, torch.full_like(real, 0.5) if swapped else real)


def test_lazy_r1_runs_every_k_d_steps_with_k_times_the_weight():
    obj = GANObjective("ns", DiffAugment(""), 4, 0, reg=Regularization(r1_gamma=10.0, r1_every=4))
    every = GANObjective("ns", DiffAugment(""), 4, 0, reg=Regularization(r1_gamma=10.0))
    real, labels = images(4, 8), torch.zeros(4, dtype=torch.long)
    present = ["d/r1" in obj.d_terms(ConstantG(), RecordingD(), real, labels, d_step=s)[0] for s in range(8)]
    assert present == [True, False, False, False] * 2
    lazy = obj.d_terms(ConstantG(), RecordingD(), real, labels, d_step=4)[0]["d/r1"]
    plain = every.d_terms(ConstantG(), RecordingD(), real, labels, d_step=4)[0]["d/r1"]
    # D is linear, so ||grad||^2 = 64 * ||w||^2 per image: gamma / 2 * 64 * 0.03 = 9.6
    torch.testing.assert_close(plain, torch.tensor(9.6))
    torch.testing.assert_close(lazy, 4 * plain)


def test_path_length_penalty_tracks_its_mean_and_trains_g():
    torch.manual_seed(0)
    G = StyleGAN2Generator(z_dim=8, w_dim=8, img_resolution=8, channel_base=64, channel_max=8,
                           mapping_layers=1)
    pl = PathLengthPenalty(decay=0.5)
    z = torch.randn(4, 8)
    first = pl(G, z, None)
    assert first.item() >= 0 and pl.mean.item() > 0
    first.backward()
    assert G.mapping.fcs[0].weight.grad.abs().sum() > 0
    mean = pl.mean.item()
    pl(G, z, None)
    assert pl.mean.item() != mean  # the EMA moves towards the new lengths


def tiny_faces(n=16, side=16):
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8), None, [], {})


def sg2_config(**overrides):
    fields = {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4, "r1_every": 2,
              "ada": "bgc", "ada_p": 0.5, "ada_kimg": 0.16, "apa": True, "lecam_weight": 0.01,
              **overrides}
    return resolve("stylegan2-tiny", fields)


def test_stylegan2_trainer_checkpoints_ada_apa_p_lecam_and_path_length(tmp_path):
    t = Trainer(sg2_config(steps=8, ckpt_every_steps=8), tmp_path, dataset=tiny_faces())
    assert t.G.config["arch"] == "stylegan2" and t.D.config["arch"] == "stylegan2"
    t.run()
    ckpt = load_checkpoint(t.ckpts.path(8))
    state = ckpt["objective"]
    assert {"lecam", "ada", "apa", "pl"} <= set(state)
    # two moves of +-0.1 (batch 4 x 4 steps / 160 images) from 0.5; r_t is a multiple of 1/8
    assert state["ada"]["p"].item() in (pytest.approx(0.3), pytest.approx(0.5), pytest.approx(0.7))
    assert state["ada"]["rt"].item() != 0 or state["apa"]["rt"].item() != 0
    again = Trainer(sg2_config(steps=9), tmp_path, dataset=tiny_faces())
    again.load_state_dict(ckpt)
    assert again.ada_p.value == t.ada_p.value and again.apa_p.value == t.apa_p.value
    assert torch.equal(again.objective.lecam.anchor_real, t.objective.lecam.anchor_real)
    assert torch.equal(again.objective.reg.pl.mean, t.objective.reg.pl.mean)
    logged = (tmp_path / "log.jsonl").read_text()
    assert '"stats/ada_p"' in logged and '"stats/apa_p"' in logged and '"g/pl"' in logged


def test_stylegan2_config_checks():
    with pytest.raises(KdganError, match="power of two from 8 to 1024"):
        resolve("stylegan2-tiny", {"resolution": 48})
    with pytest.raises(KdganError, match="need the StyleGAN2 generator"):
        resolve("tiny", {"style_mixing": 0.9})
    with pytest.raises(KdganError, match="ada_target and apa_target"):
        resolve("stylegan2-tiny", {"ada": "bgc", "ada_target": 1.5})
    with pytest.raises(KdganError, match="not a multiple of mbstd_group"):
        Trainer(sg2_config(batch_size=6), "unused", dataset=tiny_faces())
    rows = [n for n in PRESETS if n.startswith("stylegan2-") and n != "stylegan2-tiny"]
    assert len(rows) == 5 * 10  # 8 DA / LeCam / ADA / APA rows + InsGen, InsGen + KD-DLGAN
    obama = resolve("stylegan2-obama-da-kd", {})
    assert (obama.resolution, obama.batch_size, obama.steps, obama.mapping_layers) == (256, 16, 18750, 2)
    assert (obama.r1_gamma, obama.r1_every, obama.g_lr, obama.betas) == (10.0, 16, 0.002, (0.0, 0.99))
    assert obama.teacher == "clip" and obama.prompts == "obama" and obama.eval_protocol == "fewshot"
    assert resolve("stylegan2-animalface-dog-ada", {}).steps == 31250
    assert PRESETS["stylegan2-panda-lecam-kd"].paper_fid == 8.41


def test_grid_sample_is_twice_differentiable_like_the_cpu_kernel():
    """R1 through ADA on CUDA needs grid_sample's second derivative; the replacement must give the
    native CPU kernel's values, first and second derivatives (checked numerically in float64)."""
    from kdgan.augment.grid_sample import grid_sample

    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    theta = torch.tensor([[[0.9, 0.2, 0.1], [-0.3, 1.1, 0.05]]] * 2, dtype=torch.float64)
    grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
    for mode in ("reflection", "zeros", "border"):
        ours = grid_sample(x, grid, padding_mode=mode)
        native = torch.nn.functional.grid_sample(x, grid, padding_mode=mode, align_corners=False)
        assert torch.equal(ours, native)
        w = torch.randn(ours.shape, generator=g, dtype=torch.float64)
        (g_ours,) = torch.autograd.grad((ours * w).sum(), x, create_graph=True)
        (g_native,) = torch.autograd.grad((native * w).sum(), x, create_graph=True)
        assert torch.allclose(g_ours, g_native)
        # an R1-like penalty: the gradient of |grad_x|^2 with respect to the upstream weights
        w.requires_grad_(True)
        (gx,) = torch.autograd.grad((grid_sample(x, grid, padding_mode=mode) * w).sum(), x, create_graph=True)
        (gw_ours,) = torch.autograd.grad(gx.square().sum(), w)
        (gx,) = torch.autograd.grad((torch.nn.functional.grid_sample(
            x, grid, padding_mode=mode, align_corners=False) * w).sum(), x, create_graph=True)
        (gw_native,) = torch.autograd.grad(gx.square().sum(), w)
        assert torch.allclose(gw_ours, gw_native)
        w.requires_grad_(False)
        assert torch.autograd.gradgradcheck(lambda t, m=mode: grid_sample(t, grid, padding_mode=m), (x,))
