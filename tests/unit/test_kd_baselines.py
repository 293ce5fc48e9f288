"""FitNets, label distillation, PKD, SPKD and plain KD into D: hand-checked values and the loop."""

import math

import pytest
import torch

from kdgan.config import PRESETS, resolve
from kdgan.errors import KdganError
from kdgan.losses.kd_baselines import (
    fitnets_loss,
    label_distillation_loss,
    pkd_loss,
    spkd_loss,
    zero_shot_logits,
)
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer
from kdgan.utils.seed import set_rng_state
from tests.unit.test_checkpoint import assert_same_state, tiny_data

EYE = torch.eye(2)
SAME = torch.tensor([[1.0, 0.0], [1.0, 0.0]])  # two identical directions


def test_fitnets_is_the_elementwise_mean_squared_error():
    s, t = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 2.0], [3.0, 2.0]])
    assert fitnets_loss(s, t).item() == pytest.approx((1 + 0 + 0 + 4) / 4)


def test_zero_shot_logits_are_scaled_cosines():
    logits = zero_shot_logits(torch.tensor([[2.0, 0.0], [1.0, 1.0]]), torch.tensor([[3.0, 0.0], [0.0, 0.5]]))
    r = 100 / math.sqrt(2)
    torch.testing.assert_close(logits, torch.tensor([[100.0, 0.0], [r, r]]))


def test_label_distillation_by_hand_and_its_temperature():
    # T = 1: p_s = (1/2, 1/2), p_t = (3/4, 1/4)
    kl = 0.75 * math.log(0.75 / 0.5) + 0.25 * math.log(0.25 / 0.5)
    s = torch.zeros(2, 2)
    t = torch.tensor([[math.log(3.0), 0.0], [math.log(3.0), 0.0]])
    assert label_distillation_loss(s, t, 1.0).item() == pytest.approx(kl)
    # T = 2 with teacher logits x2: the same distributions, and the loss is scaled by T^2
    assert label_distillation_loss(s, 2 * t, 2.0).item() == pytest.approx(4 * kl)
    assert label_distillation_loss(t, t, 4.0).item() == pytest.approx(0.0, abs=1e-7)


def test_pkd_by_hand():
    # student: cosines I -> (I + 1) / 2 -> rows (2/3, 1/3), (1/3, 2/3); teacher: all 1 -> rows (1/2, 1/2)
    expected = (2 * (0.5 * math.log(0.5 / (2 / 3)) + 0.5 * math.log(0.5 / (1 / 3)))) / 4
    assert pkd_loss(EYE, SAME).item() == pytest.approx(expected, rel=1e-5)
    assert pkd_loss(SAME, SAME).item() == pytest.approx(0.0, abs=1e-7)
    assert pkd_loss(3 * EYE, EYE).item() == pytest.approx(0.0, abs=1e-7)  # scale-free


def test_spkd_by_hand():
    # G_s = I (rows already unit); G_t = all ones -> rows (1, 1) / sqrt 2
    r = 1 / math.sqrt(2)
    expected = 2 * ((1 - r) ** 2 + r**2) / 4
    assert spkd_loss(EYE, SAME).item() == pytest.approx(expected, rel=1e-6)
    # only the within-batch similarities matter: dimensions may differ
    assert spkd_loss(torch.tensor([[1.0, 0, 0], [1.0, 0, 0]]), SAME).item() == pytest.approx(0.0, abs=1e-7)


def baseline_trainer(run_dir, kd, **overrides):
    fields = {"data": "in-memory", "device": "cpu", "teacher": "clip-tiny-random", "kd": kd, **overrides}
    return Trainer(resolve("tiny", fields), run_dir, dataset=tiny_data())


def test_each_method_adds_its_term_and_trains_d_and_the_ld_classifier(tmp_path):
    t = baseline_trainer(tmp_path, "fitnets,ld,pkd,spkd,plainkd")
    real, labels, idx = t.real_batch(0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx)
    for name in ("fitnets", "ld", "pkd", "spkd", "plainkd"):
        assert torch.isfinite(terms[f"d/{name}"]) and terms[f"d/{name}"].item() > 0, name
    sum(terms.values()).backward()
    head = t.objective.kd.ld_head
    assert head.parametrizations.weight.original.grad.abs().sum() > 0  # the classifier over 3 classes
    assert head.parametrizations.weight.original.shape == (3, t.teacher.dim)
    assert t.D.kd_head.fc1.parametrizations.weight.original.grad.abs().sum() > 0
    assert all(p.grad is None for p in t.teacher.parameters())


def test_plain_kd_is_agkd_without_the_swapped_targets(tmp_path):
    t = baseline_trainer(tmp_path, "agkd,plainkd", agkd_p=0.0)
    real, labels, idx = t.real_batch(0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx)
    torch.testing.assert_close(terms["d/plainkd"], terms["d/agkd"])
    t = baseline_trainer(tmp_path / "p1", "agkd,plainkd", agkd_p=1.0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx)
    assert terms["d/agkd"].item() > terms["d/plainkd"].item()


def test_ld_classifier_and_its_optimiser_resume_exactly(tmp_path):
    a = baseline_trainer(tmp_path, "ld", steps=2)
    a.run()
    ckpt = load_checkpoint(a.ckpts.path(2))
    assert "ld_head" in ckpt["objective"] and ckpt["optim"]["aux"]["state"]
    b = baseline_trainer(tmp_path / "b", "ld", steps=3)
    b.load_state_dict(ckpt)
    for k, v in a.objective.kd.ld_head.state_dict().items():
        assert torch.equal(v, b.objective.kd.ld_head.state_dict()[k]), k
    set_rng_state(ckpt["rng"][0])
    a.train_step()
    set_rng_state(ckpt["rng"][0])
    b.train_step()
    assert_same_state(a, b)
    for k, v in a.objective.kd.ld_head.state_dict().items():
        assert torch.equal(v, b.objective.kd.ld_head.state_dict()[k]), k


def test_ld_needs_text_and_unknown_terms_are_refused():
    with pytest.raises(KdganError, match="label distillation"):
        resolve(None, {"teacher": "inception", "kd": "ld"})
    assert resolve(None, {"teacher": "inception", "kd": "fitnets,pkd,spkd"}).kd == "fitnets,pkd,spkd"
    with pytest.raises(KdganError, match="kd terms are"):
        resolve(None, {"teacher": "clip", "kd": "crd"})


def test_presets_carry_the_paper_values():
    expected = {"fitnets": 22.03, "ld": 20.46, "pkd": 21.34, "spkd": 19.11, "kd": None}
    for suffix, fid in expected.items():
        p = PRESETS[f"biggan-cifar10-10pct-{suffix}"]
        assert p.paper_fid == fid and p.overrides["teacher"] == "clip"
        assert resolve(p.name, {}).data_fraction == 0.1
    assert PRESETS["biggan-cifar10-10pct-kd"].overrides["kd"] == "plainkd"
    assert "biggan-cifar100-10pct-spkd" in PRESETS
