"""Vision-aided D: its head by hand, the backbone's input, the warm-up schedule, gradients, resume."""

import pytest
import torch
import torch.nn.functional as F

from kdgan.config import PRESETS, resolve
from kdgan.errors import KdganError
from kdgan.nets.vision_aided import VisionAidedD, VisionAidedHead
from kdgan.teachers import build_teacher
from kdgan.teachers.clip import CLIP_MEAN, CLIP_STD
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer
from kdgan.utils.seed import set_rng_state
from tests.unit.test_checkpoint import assert_same_state, tiny_data


def test_head_by_hand():
    head = VisionAidedHead(1, c_dim=2, hidden=1)  # 1 x 1 weights: spectral norm leaves their sign
    with torch.no_grad():
        head.fc.parametrizations.weight.original.fill_(0.3)
        head.fc.bias.zero_()
        head.out.parametrizations.weight.original.fill_(-2.0)
        head.out.bias.fill_(0.5)
        head.embed.weight.copy_(torch.tensor([[1.0], [3.0]]))
    # h = relu(f) = (2, 0); logit = -h + 0.5 + embed(y) * h
    logits = head(torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 0]))
    torch.testing.assert_close(logits, torch.tensor([4.5, 0.5]))


def test_backbone_input_is_area_resized_and_clip_normalised():
    teacher = build_teacher("clip-tiny-random")
    va = VisionAidedD(teacher, policy="")
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    expected_input = (F.interpolate((x + 1) / 2, size=(32, 32), mode="area")
                      - torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)) / torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        expected = teacher.model.encode_image(expected_input, normalize=False)
        torch.testing.assert_close(va.features(x), expected)
    keys = {f"head.{m}.{k}" for m in ("fc", "out") for k in (
        "bias", "parametrizations.weight.original", "parametrizations.weight.0._u",
        "parametrizations.weight.0._v")}
    assert set(va.state_dict()) == keys  # no backbone weights
    with pytest.raises(KdganError, match="needs a CLIP backbone"):
        VisionAidedD(torch.nn.Linear(2, 2))


def va_trainer(run_dir, **overrides):
    fields = {"data": "in-memory", "device": "cpu", "vision_aided": "clip-tiny-random",
              "vision_aided_warmup": 1, **overrides}
    return Trainer(resolve("tiny", fields), run_dir, dataset=tiny_data())


def test_hinge_terms_schedule_and_gradient_paths(tmp_path):
    t = va_trainer(tmp_path)
    va = t.objective.vision_aided
    backbone = va.backbone
    real, labels, idx = t.real_batch(0)
    for d_step, on in ((0, 0.0), (3, 0.0), (4, 1.0)):  # 2 D steps per G step: G step 2 > warm-up 1
        states = [(m, {k: v.clone() for k, v in m.state_dict().items()}) for m in (va, t.G)]
        torch.manual_seed(7)
        terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, d_step)
        for m, state in states:  # the same spectral-norm power iterations again
            m.load_state_dict(state)
        torch.manual_seed(7)  # the same fakes and augmentations again, to score them by hand
        z, fake_labels = t.objective.sample_latents(8, t.device)
        with torch.no_grad():
            fakes = t.G(z, fake_labels)
        t.objective.augment(torch.cat([fakes, real]))  # D's own augmentation draws come first
        logits = va(torch.cat([fakes, real]), torch.cat([fake_labels, labels]), detach=True)
        assert terms["d/vision_aided_hinge_real"].item() == pytest.approx(
            on * F.relu(1 - logits[8:]).mean().item(), abs=1e-6)
        assert terms["d/vision_aided_hinge_fake"].item() == pytest.approx(
            on * F.relu(1 + logits[:8]).mean().item(), abs=1e-6)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, 4)
    sum(terms.values()).backward()
    assert va.head.fc.parametrizations.weight.original.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.parameters())
    assert all(p.grad is None for p in t.G.parameters())
    va.zero_grad(set_to_none=True)
    t._d_requires_grad(False)
    assert "g/vision_aided_hinge" not in t.objective.g_terms(t.G, t.D, 4, t.device, g_step=1)[0]
    g_terms, _ = t.objective.g_terms(t.G, t.D, 4, t.device, g_step=2)
    g_terms["g/vision_aided_hinge"].backward()
    assert t.G.linear.parametrizations.weight.original.grad.abs().sum() > 0  # through the frozen CLIP
    assert va.head.fc.parametrizations.weight.original.grad is None
    assert all(p.grad is None for p in backbone.parameters())


def test_head_is_checkpointed_backbone_is_not_and_resume_is_exact(tmp_path):
    a = va_trainer(tmp_path, steps=3)
    a.run()
    ckpt = load_checkpoint(a.ckpts.path(3))
    assert set(ckpt["objective"]["vision_aided"]) == set(a.objective.vision_aided.state_dict())
    assert ckpt["optim"]["aux"]["state"]
    b = va_trainer(tmp_path / "b", steps=4)
    b.load_state_dict(ckpt)
    set_rng_state(ckpt["rng"][0])
    a.train_step()
    set_rng_state(ckpt["rng"][0])
    b.train_step()
    assert_same_state(a, b)
    for k, v in a.objective.vision_aided.state_dict().items():
        assert torch.equal(v, b.objective.vision_aided.state_dict()[k]), k


def test_the_teacher_is_shared_when_it_is_the_backbone(tmp_path):
    t = va_trainer(tmp_path, teacher="clip-tiny-random", kd="agkd")
    assert t.objective.vision_aided.backbone is t.teacher


def test_preset_and_checks():
    p = PRESETS["biggan-cifar10-10pct-vision-aided"]
    assert p.paper_fid == 16.24 and p.overrides["vision_aided"] == "clip"
    cfg = resolve(p.name, {})
    assert cfg.vision_aided_warmup == 2000 and cfg.vision_aided_policy == "color,translation,cutout"
    assert cfg.steps == 125_000 and not cfg.vision_aided_half  # DA's 5,000 epochs; fp32 CLIP as released
    # the vision-aided release's CLIP stage: 600 epochs of 5,000 images at batch 50 x 4 D steps
    short = resolve("biggan-cifar10-10pct-vision-aided-600ep", {})
    assert short.steps == 15_000 and short.vision_aided == "clip" and short.data_fraction == 0.1
    with pytest.raises(KdganError, match="vision_aided must be"):
        resolve(None, {"vision_aided": "dino"})
