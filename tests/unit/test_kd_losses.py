"""KD-DLGAN and LeCam losses against values worked out by hand on 2 x 2 and 2 x 3 tensors."""

import math

import pytest
import torch

from kdgan.losses.kd_dlgan import agkd_loss, cgkd_loss, pairwise_diversity
from kdgan.losses.regularizers import LeCam

T_REAL = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
T_FAKE = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
S_REAL = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
S_FAKE = torch.zeros(2, 2)
TEXT = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])  # K = 3 prompts, M = 2
R2, R6 = math.sqrt(2), math.sqrt(6)


def test_agkd_l2_by_hand():
    # L_KD: d(Tr, Sr) = mean(|(0,-1)|, 0) = 0.5; d(Tf, Sf) = mean(0, sqrt 2)
    l_kd = 0.5 + R2 / 2
    # L_AGG: d(Tr, Sf) = mean(1, 1) = 1; d(Tf, Sr) = mean(|(-1,-1)|, |(1,0)|) = (sqrt 2 + 1) / 2
    l_agg = 1.0 + (R2 + 1) / 2
    assert agkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, aggregate=False).item() == pytest.approx(l_kd)
    assert agkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, aggregate=True).item() == pytest.approx(l_kd + l_agg)


def test_agkd_l1_by_hand():
    # elementwise mean |.|: KD 1/4 + 2/4, AGG 2/4 + 3/4
    assert agkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, False, "l1").item() == pytest.approx(0.75)
    assert agkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, True, "l1").item() == pytest.approx(2.0)


def test_cgkd_row_norm_sum_of_squares_by_hand():
    # real: C_T = rows (1,0,1)/sqrt2, (0,1,1)/sqrt2; C_S = (1,1,2)/sqrt6, (0,1,1)/sqrt2
    real = (1 / R2 - 1 / R6) ** 2 + (1 / R6) ** 2 + (1 / R2 - 2 / R6) ** 2
    # fake: C_T = 0, (1,1,2)/sqrt6; C_S = 0 (zero features stay zero) -> 1/6 + 1/6 + 4/6
    fake = 1.0
    assert cgkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, TEXT).item() == pytest.approx(real + fake, rel=1e-5)
    assert cgkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, TEXT, fake_only=True).item() == pytest.approx(fake)


def test_cgkd_row_norm_mean_abs_by_hand():
    real = (abs(1 / R2 - 1 / R6) + 1 / R6 + abs(1 / R2 - 2 / R6)) / 6
    fake = (1 / R6 + 1 / R6 + 2 / R6) / 6
    got = cgkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, TEXT, distance="l1").item()
    assert got == pytest.approx(real + fake, rel=1e-5)


def test_cgkd_frobenius_by_hand():
    # real: C_T = [[1,0,1],[0,1,1]] / 2; C_S = [[1,1,2],[0,1,1]] / sqrt 8
    r8 = math.sqrt(8)
    real = (0.5 - 1 / r8) ** 2 + (1 / r8) ** 2 + (0.5 - 2 / r8) ** 2 + 0 + (0.5 - 1 / r8) ** 2 * 2
    fake = 1.0  # C_T = [[0,0,0],[1,1,2]] / sqrt 6, C_S = 0
    got = cgkd_loss(T_REAL, T_FAKE, S_REAL, S_FAKE, TEXT, norm="frobenius").item()
    assert got == pytest.approx(real + fake, rel=1e-5)


def test_pairwise_diversity_by_hand():
    fake = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    # with K = 2 identity prompts the rows are (1,0), (0,1), (1,1)/sqrt2: cosines 0, 1/sqrt2, 1/sqrt2
    expected = 2 * (0 + 2 / R2) / 6
    assert pairwise_diversity(fake, torch.eye(2)).item() == pytest.approx(expected)


def test_gradients_reach_the_student_only():
    teacher = T_REAL.clone().requires_grad_(False)
    student = S_REAL.clone().requires_grad_(True)
    loss = agkd_loss(teacher, T_FAKE, student, S_FAKE, True)
    loss = loss + cgkd_loss(teacher, T_FAKE, student, S_FAKE, TEXT)
    loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_lecam_is_zero_at_its_anchors_and_tracks_then_averages():
    lc = LeCam(decay=0.99, start_steps=2, warmup="d-updates")
    real, fake = torch.full((4,), 2.0), torch.full((4,), -1.0)
    lc.update(real, fake)
    assert lc.anchor_real.item() == 2.0 and lc.anchor_fake.item() == -1.0  # tracking phase
    # zero when D(x) sits at a_F and D(G(z)) at a_R; (2 - (-1))^2 twice at the swapped logits
    assert lc(torch.full((4,), -1.0), torch.full((4,), 2.0)).item() == 0.0
    assert lc(real, fake).item() == pytest.approx(9.0 + 9.0)
    # rectified: a real logit below a_F costs nothing; the unrectified form charges it
    assert lc(torch.full((4,), -3.0), torch.full((4,), 5.0)).item() == 0.0
    plain = LeCam(rectified=False)
    assert plain(torch.full((4,), -3.0), torch.full((4,), 5.0)).item() == pytest.approx(9 + 25)
    lc.update(torch.zeros(4), torch.zeros(4))  # second update: still tracking
    lc.update(torch.full((4,), 1.0), torch.zeros(4))  # third: EMA with decay 0.99
    assert lc.anchor_real.item() == pytest.approx(0.01)
    assert set(lc.state_dict()) == {"anchor_real", "anchor_fake", "updates"}
