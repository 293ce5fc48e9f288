"""KD-DLGAN wired into the loop: frozen teachers, gradient paths, checkpoints, clean cache."""

import pytest
import torch

from kdgan.config import kd_terms, resolve
from kdgan.errors import KdganError
from kdgan.teachers import build_teacher
from kdgan.teachers.prompts import NAMED, resolve_prompts
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer
from tests.unit.test_checkpoint import tiny_data


def kd_trainer(run_dir, **overrides):
    fields = {"data": "in-memory", "device": "cpu", "teacher": "clip-tiny-random",
              "kd": "agkd,cgkd", "lecam_weight": 0.3, **overrides}
    return Trainer(resolve("tiny", fields), run_dir, dataset=tiny_data())


def teacher_params(t):
    return [p.detach().clone() for p in t.teacher.parameters()]


def test_tiny_clip_teacher_is_frozen_and_has_text():
    t = build_teacher("clip-tiny-random")
    assert "tests only" in t.name and t.dim == 32 and t.supports_text
    assert not t.training and not any(p.requires_grad for p in t.parameters())
    assert t.text_features(["a cat", "a dog", "a ship"]).shape == (3, 32)
    assert t.image_features(torch.rand(2, 3, 32, 32) * 2 - 1).dtype == torch.float32
    t.train()
    assert not t.training  # stays in eval mode


def test_d_terms_reach_d_never_the_teacher(tmp_path):
    t = kd_trainer(tmp_path)
    real, labels, idx = t.real_batch(0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx)
    assert {"d/agkd", "d/cgkd", "d/lecam"} <= set(terms)
    (terms["d/agkd"] + terms["d/cgkd"]).backward()
    assert t.D.kd_head.fc1.parametrizations.weight.original.grad.abs().sum() > 0
    assert t.D.blocks[0].conv1.parametrizations.weight.original.grad.abs().sum() > 0  # shared trunk
    assert all(p.grad is None for p in t.teacher.parameters())
    assert all(p.grad is None for p in t.G.parameters())  # fakes are made without grad in D's phase


def test_kd_without_trunk_gradient_trains_the_head_only(tmp_path):
    t = kd_trainer(tmp_path, kd_trunk_grad=False)
    real, labels, idx = t.real_batch(0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx)
    (terms["d/agkd"] + terms["d/cgkd"]).backward(retain_graph=True)
    assert t.D.kd_head.fc1.parametrizations.weight.original.grad.abs().sum() > 0
    assert t.D.blocks[0].conv1.parametrizations.weight.original.grad is None  # the trunk is untouched
    t.D.zero_grad(set_to_none=True)
    terms["d/hinge_real"].backward()  # the adversarial terms still reach the trunk
    assert t.D.blocks[0].conv1.parametrizations.weight.original.grad.abs().sum() > 0


def test_kd_trunk_grad_without_a_teacher_is_refused_and_inactive():
    from kdgan.config import inactive_fields

    with pytest.raises(KdganError, match="kd_trunk_grad=false .* add --teacher or drop kd_trunk_grad"):
        resolve("tiny", {"kd_trunk_grad": False})
    assert "kd_trunk_grad" in inactive_fields({"teacher": ""})  # a resumed run without KD ignores it
    assert "kd_trunk_grad" not in inactive_fields({"teacher": "inception"})


def test_pairwise_diversity_in_generator_mode_reaches_g_through_the_teacher(tmp_path):
    t = kd_trainer(tmp_path, pd_mode="generator", prompts="cifar10")
    t.D.requires_grad_(False)
    terms, _ = t.objective.g_terms(t.G, t.D, 4, t.device)
    terms["g/pd"].backward()
    assert t.G.linear.parametrizations.weight.original.grad.abs().sum() > 0
    assert all(p.grad is None for p in t.teacher.parameters())


def test_teacher_unchanged_by_training_and_absent_from_checkpoints(tmp_path):
    t = kd_trainer(tmp_path, steps=2)
    before = teacher_params(t)
    t.run()
    assert all(torch.equal(a, b) for a, b in zip(before, teacher_params(t), strict=True))
    ckpt = load_checkpoint(t.ckpts.path(2))
    n_teacher = sum(p.numel() for p in t.teacher.parameters())
    n_saved = sum(v.numel() for net in ckpt["nets"].values() for v in net["state"].values())
    n_nets = sum(sum(v.numel() for v in m.state_dict().values()) for m in (t.G, t.D, t.G_ema))
    assert n_saved == n_nets and n_teacher > 0
    assert not any("teacher" in k or "visual" in k for net in ckpt["nets"].values() for k in net["state"])
    assert ckpt["objective"]["lecam"]["updates"].item() == 2 * 2  # LeCam anchors are saved
    assert ckpt["nets"]["D"]["config"]["kd_dim"] == 32


def test_resume_restores_lecam_anchors(tmp_path):
    a = kd_trainer(tmp_path, steps=2)
    a.run()
    b = kd_trainer(tmp_path, steps=3)
    b.load_state_dict(load_checkpoint(b.ckpts.path(2)))
    assert torch.equal(a.objective.lecam.anchor_real, b.objective.lecam.anchor_real)
    assert b.objective.lecam.updates.item() == 4


def test_clean_real_features_are_computed_once_per_image(tmp_path):
    t = kd_trainer(tmp_path, clip_on="clean")
    idx = torch.tensor([3, 5, 3])
    feats = t.clean_real_features(idx)
    assert t._clean_known.sum().item() == 2
    from kdgan.data import to_model_range

    expected = t.teacher.image_features(to_model_range(t.images[torch.tensor([3, 5])]))
    assert torch.allclose(feats[:2], expected, atol=1e-5) and torch.equal(feats[0], feats[2])
    with torch.no_grad():
        t.teacher.model.visual.conv1.weight.add_(1.0)  # a cached value is not recomputed
    assert torch.equal(t.clean_real_features(torch.tensor([3])), feats[:1])


def test_cgkd_with_an_image_only_teacher_is_refused():
    with pytest.raises(KdganError, match="inception teacher is image-only"):
        resolve(None, {"teacher": "inception", "kd": "agkd,cgkd"})
    assert resolve(None, {"teacher": "inception", "kd": "agkd"}).teacher == "inception"
    # kd = auto (the default): every term the teacher supports
    assert kd_terms(resolve(None, {"teacher": "inception"})) == ["agkd"]
    assert kd_terms(resolve(None, {"teacher": "clip"})) == ["agkd", "cgkd"]


def test_missing_clip_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(KdganError, match="does not exist; pass an existing file with --teacher-weights"):
        build_teacher("clip", weights=str(tmp_path / "missing.pt"))


def test_prompts():
    assert resolve_prompts("", ["airplane", "maple_tree"]) == ["a airplane", "a maple tree"]
    assert len(resolve_prompts("cifar100", [])) == 100 and NAMED["cifar10"][0] == "a airplane"
    assert resolve_prompts("obama", [])[0] == "a photo of a happy Obama"
    with pytest.raises(KdganError, match="needs prompts"):
        resolve_prompts("", [])


@pytest.mark.parametrize("clip_input", ["official", "normalized"])
def test_clip_input_conventions_and_half_precision(clip_input):
    t = build_teacher("clip-tiny-random", clip_input=clip_input)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    prepared = t.prepare(x)
    assert prepared.shape == (2, 3, 32, 32)
    if clip_input == "official":  # nearest neighbour x2, still in [-1, 1], no mean/std
        assert torch.equal(prepared[:, :, ::2, ::2], x)
    else:
        mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
        assert prepared.mean().item() == pytest.approx(((0.5 - mean) / 0.27).mean().item(), abs=0.3)
    half = build_teacher("clip-tiny-random", clip_input=clip_input, half=True)
    assert half.dtype == torch.float16 and half.image_features(x).dtype == torch.float32


@pytest.mark.slow
def test_compiled_teacher_matches_eager():
    eager = build_teacher("clip-tiny-random")
    compiled = build_teacher("clip-tiny-random", use_compile=True)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert torch.allclose(compiled.image_features(x), eager.image_features(x), atol=1e-4)


def test_inception_teacher_no_grad_fast_path_equals_the_differentiable_graph():
    teacher = build_teacher("inception")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        fast = teacher.image_features(x)  # frozen, oneDNN-optimised graph
    x.requires_grad_(True)
    slow = teacher.image_features(x)  # the original graph, differentiable
    torch.testing.assert_close(fast, slow.detach(), rtol=1e-4, atol=1e-4)
    slow.sum().backward()
    assert x.grad is not None and all(p.grad is None for p in teacher.parameters())


def test_inception_teacher_at_299_is_pool3_and_takes_smaller_inputs():
    from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

    teacher = build_teacher("inception")
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = interpolate_bilinear_2d_like_tensorflow1x((x + 1) * 127.5, size=(299, 299), align_corners=False)
    with torch.no_grad():
        pool3 = teacher.net((y - 128) / 128)  # the whole TorchScript graph, its own 8x8 pool
        torch.testing.assert_close(teacher.image_features(x), pool3, rtol=1e-4, atol=1e-4)
        small = build_teacher("inception", resolution=107)
        assert small.image_features(x).shape == (2, 2048) and "107" in small.input_convention
    with pytest.raises(KdganError, match="75 to 299 px"):
        build_teacher("inception", resolution=64)
    assert resolve(None, {"teacher": "inception", "teacher_resolution": 139}).teacher_resolution == 139


def test_lazy_kd_every_k_d_steps_with_k_times_the_weight(tmp_path):
    def terms_at(every: int, d_step: int):
        t = kd_trainer(tmp_path / f"{every}-{d_step}", kd_every=every)
        torch.manual_seed(1)
        real, labels, idx = t.real_batch(0)
        return t.objective.d_terms(t.G, t.D, real, labels, idx, d_step)[0]

    eager, lazy_on, lazy_off = terms_at(1, 0), terms_at(2, 4), terms_at(2, 3)
    torch.testing.assert_close(lazy_on["d/agkd"], 2 * eager["d/agkd"])
    torch.testing.assert_close(lazy_on["d/cgkd"], 2 * eager["d/cgkd"])
    assert "d/agkd" not in lazy_off and "d/cgkd" not in lazy_off
    torch.testing.assert_close(lazy_off["d/hinge_real"], eager["d/hinge_real"])
