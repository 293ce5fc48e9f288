"""kd_target_norm: the teacher-feature normalisation of KD-DLGAN's targets (rms, standard)."""

from __future__ import annotations

import pytest
import torch

from kdgan.config import resolve
from kdgan.losses.kd_dlgan import TeacherFeatureNorm, agkd_loss, cgkd_loss
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer
from tests.unit.test_checkpoint import tiny_data


def test_fit_gives_unit_rms_targets_and_inverts():
    g = torch.Generator().manual_seed(0)
    feats = torch.rand(50, 6, generator=g) * 3 + 2  # non-negative with a large common mean
    std = TeacherFeatureNorm("standard", 6)
    std.fit(feats)
    out = std(feats)
    assert torch.allclose(out.mean(0), torch.zeros(6), atol=1e-5)
    assert out.pow(2).sum(1).mean().item() == pytest.approx(1.0, rel=1e-5)
    assert torch.allclose(std.inverse(out), feats, atol=1e-5)
    rms = TeacherFeatureNorm("rms", 6)
    rms.fit(feats)
    assert torch.equal(rms.mean, torch.zeros(6))
    assert rms.scale.item() == pytest.approx(feats.pow(2).sum(1).mean().sqrt().item(), rel=1e-6)
    assert rms(feats).pow(2).sum(1).mean().item() == pytest.approx(1.0, rel=1e-5)
    with pytest.raises(ValueError, match="none, rms or standard"):
        TeacherFeatureNorm("whiten", 6)


@pytest.mark.parametrize("kind", ["rms", "standard"])
def test_kd_terms_use_normalised_targets_and_text_terms_the_teacher_space(tmp_path, kind):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "teacher": "clip-tiny-random",
                           "kd": "agkd,cgkd", "kd_target_norm": kind, "steps": 1})
    t = Trainer(cfg, tmp_path, dataset=tiny_data())
    kd = t.objective.kd
    assert not bool(kd.norm.fitted)
    torch.manual_seed(0)
    real, labels, idx = t.real_batch(0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, 0)
    assert bool(kd.norm.fitted)
    ref = t.norm_fit_features()  # the norm was fitted on these clean real images
    expect = TeacherFeatureNorm(kind, t.teacher.dim)
    expect.fit(ref)
    assert torch.allclose(kd.norm.scale, expect.scale) and torch.allclose(kd.norm.mean, expect.mean)

    # Recompute both terms by hand from the same draws: teacher on what D saw, D's head output.
    torch.manual_seed(0)
    real, labels, idx = t.real_batch(0)
    b = real.shape[0]
    captured = {}
    orig = t.objective._kd_terms

    def spy(seen, clean, student, b_, real_indices, swapped=None):
        captured.update(seen=seen, student=student)
        return orig(seen, clean, student, b_, real_indices, swapped)

    t.objective._kd_terms = spy
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, 0)
    with torch.no_grad():
        target_fake, target_real = t.teacher.image_features(captured["seen"]).split([b, b])
    s_fake, s_real = captured["student"].split([b, b])
    n = kd.norm
    agkd = cfg.agkd_weight * agkd_loss(n(target_real), n(target_fake), s_real, s_fake, 1.0)
    cgkd = cfg.cgkd_weight * cgkd_loss(target_real, target_fake, n.inverse(s_real), n.inverse(s_fake),
                                       kd.text)
    assert terms["d/agkd"].item() == pytest.approx(agkd.item(), rel=1e-5)
    assert terms["d/cgkd"].item() == pytest.approx(cgkd.item(), rel=1e-5)


def test_norm_statistics_are_checkpointed_not_refitted(tmp_path):
    fields = {"data": "in-memory", "device": "cpu", "teacher": "clip-tiny-random", "kd": "agkd",
              "kd_target_norm": "standard", "steps": 2}
    t = Trainer(resolve("tiny", fields), tmp_path, dataset=tiny_data())
    t.run()
    state = load_checkpoint(tmp_path / "checkpoints" / "ckpt-000000002.pt")["objective"]["kd_norm"]
    assert bool(state["fitted"]) and torch.equal(state["mean"], t.objective.kd.norm.mean)
    t2 = Trainer(resolve("tiny", {**fields, "steps": 3}), tmp_path, dataset=tiny_data())
    t2.norm_fit_features = lambda: pytest.fail("refitted after resume")  # type: ignore[method-assign]
    t2.objective.kd.norm_source = t2.norm_fit_features
    t2.run()
    assert torch.equal(t2.objective.kd.norm.scale, t.objective.kd.norm.scale)
