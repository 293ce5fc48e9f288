"""Other ways to distil a frozen teacher into D (KD-DLGAN paper, Discussion 1; docs/baselines.md).

FitNets (Romero et al., ICLR 2015), label distillation (Hinton et al. 2015, with CLIP's zero-shot
class probabilities as the soft labels), PKD / probabilistic knowledge transfer (Passalis and
Tefas, ECCV 2018) and SPKD / similarity-preserving KD (Tung and Mori, ICCV 2019). The forms
follow the authors' code as collected in RepDistiller (HobbitLong/RepDistiller, distiller_zoo).

Student features come from D's feature head D^f (B, M) (the FitNets "regressor"), or for label
distillation a linear classifier on it (B, K). Teacher features I(.) are (B, M), text features
of K class prompts (K, M). Every loss is computed in float32, returns a scalar, never calls
backward().
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CLIP_ZERO_SHOT_SCALE = 100.0  # exp(logit_scale) of OpenAI's CLIP: the scale of its zero-shot logits


def fitnets_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """FitNets hint loss: mean over B x M of (regressor(student) - hint)^2 (torch's MSELoss)."""
    return F.mse_loss(student.float(), teacher.float())


def zero_shot_logits(image_features: torch.Tensor, text_features: torch.Tensor,
                     scale: float = CLIP_ZERO_SHOT_SCALE) -> torch.Tensor:
    """CLIP zero-shot logits (B, K): scale * cos(image feature, prompt feature)."""
    return scale * F.normalize(image_features.float(), dim=1) @ F.normalize(text_features.float(), dim=1).t()


def label_distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor,
                            temperature: float = 4.0) -> torch.Tensor:
    """Hinton's KD: T^2 * KL(softmax(t / T) || softmax(s / T)), summed over classes, mean over B."""
    t = temperature
    log_p_student = F.log_softmax(student_logits.float() / t, dim=1)
    p_teacher = F.softmax(teacher_logits.float() / t, dim=1)
    return F.kl_div(log_p_student, p_teacher, reduction="sum") * t * t / student_logits.shape[0]


def _cosine_probabilities(features: torch.Tensor, eps: float) -> torch.Tensor:
    """Row-stochastic (B, B): cosine similarities mapped to [0, 1], each row divided by its sum."""
    f = features.float()
    f = f / (f.norm(dim=1, keepdim=True) + eps)
    f = torch.nan_to_num(f)  # a NaN row (from a NaN input) becomes zeros, as in the authors' code
    sim = (f @ f.t() + 1.0) / 2.0
    return sim / sim.sum(dim=1, keepdim=True)


def pkd_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Probabilistic KD (PKT): KL between the teacher's and the student's conditional probability
    distributions built from cosine similarities within the batch; mean over the B x B entries:
    mean(P_t * log((P_t + eps) / (P_s + eps)))."""
    p_s, p_t = _cosine_probabilities(student, eps), _cosine_probabilities(teacher, eps)
    return (p_t * torch.log((p_t + eps) / (p_s + eps))).mean()


def spkd_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Similarity-preserving KD: ||N(F_t F_t^T) - N(F_s F_s^T)||_F^2 / B^2, N = L2 per row."""
    b = student.shape[0]
    s, t = student.float().reshape(b, -1), teacher.float().reshape(b, -1)
    g_s, g_t = F.normalize(s @ s.t(), dim=1), F.normalize(t @ t.t(), dim=1)
    return (g_t - g_s).pow(2).sum() / (b * b)
