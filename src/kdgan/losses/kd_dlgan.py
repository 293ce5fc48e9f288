"""KD-DLGAN distillation losses for the discriminator (Cui et al., CVPR 2023; METHOD.md 1.3, 1.4).

Notation: teacher image features I(.) (B, M), D's feature head D^f(.) (B, M), teacher text
features of K prompts Tx (K, M). Pair i is real image i with fake image i. Every loss is
computed in float32 and returns a scalar; none calls backward().
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feature_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "l2") -> torch.Tensor:
    """d(a, b) for (B, M) features: 'l2' = per-sample Euclidean norm (not squared) averaged
    over the batch (released code); 'l1' = elementwise mean absolute difference (paper)."""
    if kind == "l2":
        return (a.float() - b.float()).norm(dim=1).mean()
    if kind == "l1":
        return (a.float() - b.float()).abs().mean()
    raise ValueError(f"unknown AGKD distance {kind!r}; use l2 or l1")


def agkd_loss(teacher_real: torch.Tensor, teacher_fake: torch.Tensor, student_real: torch.Tensor,
              student_fake: torch.Tensor, aggregate: bool | torch.Tensor,
              distance: str = "l2") -> torch.Tensor:
    """Unweighted AGKD: L_KD + [aggregate] * L_AGG.

    L_KD  = d(I(x), D^f(x)) + d(I(G(z)), D^f(G(z)))
    L_AGG = d(I(x), D^f(G(z))) + d(I(G(z)), D^f(x))   (swapped targets, not mixup)
    `aggregate` is the draw [q <= p], q ~ U(0, 1) once per D step, made by the caller (a bool,
    or a 0/1 tensor so that a GPU step needs no host sync).
    """
    loss = feature_distance(teacher_real, student_real, distance) + \
        feature_distance(teacher_fake, student_fake, distance)
    swapped = feature_distance(teacher_real, student_fake, distance) + \
        feature_distance(teacher_fake, student_real, distance)
    return loss + aggregate * swapped


def correlation(features: torch.Tensor, text: torch.Tensor, norm: str = "row") -> torch.Tensor:
    """C = N(features @ text^T), (B, K): 'row' L2-normalises each row (released code),
    'frobenius' divides the whole matrix by its Frobenius norm."""
    c = features.float() @ text.float().t()
    if norm == "row":
        return F.normalize(c, dim=1)
    if norm == "frobenius":
        return c / c.norm().clamp_min(1e-12)
    raise ValueError(f"unknown CGKD normalisation {norm!r}; use row or frobenius")


def correlation_distance(a: torch.Tensor, b: torch.Tensor, kind: str = "sq_sum") -> torch.Tensor:
    """'sq_sum' = sum of squared differences over B x K (released code); 'l1' = mean |a - b|."""
    if kind == "sq_sum":
        return (a - b).pow(2).sum()
    if kind == "l1":
        return (a - b).abs().mean()
    raise ValueError(f"unknown CGKD distance {kind!r}; use sq_sum or l1")


def cgkd_loss(teacher_real: torch.Tensor, teacher_fake: torch.Tensor, student_real: torch.Tensor,
              student_fake: torch.Tensor, text: torch.Tensor, norm: str = "row",
              distance: str = "sq_sum", fake_only: bool = False) -> torch.Tensor:
    """Unweighted CGKD: dist(C_T(x), C_S(x)) + dist(C_T(G(z)), C_S(G(z))) (fake term only
    when `fake_only`), with C_T from teacher and C_S from D^f features against the prompts."""
    loss = correlation_distance(correlation(teacher_fake, text, norm),
                                correlation(student_fake, text, norm), distance)
    if not fake_only:
        loss = loss + correlation_distance(correlation(teacher_real, text, norm),
                                           correlation(student_real, text, norm), distance)
    return loss


def pairwise_diversity(teacher_fake: torch.Tensor, text: torch.Tensor, norm: str = "row") -> torch.Tensor:
    """mean over i != j of cos(C_T(G(z))[i], C_T(G(z))[j]): lower means more diverse fakes.

    Used in G's loss when pd_mode = 'generator' (gradients reach G through the frozen teacher).
    """
    c = F.normalize(correlation(teacher_fake, text, norm), dim=1)
    b = c.shape[0]
    if b < 2:
        return c.new_zeros(())
    sim = c @ c.t()
    return (sim.sum() - sim.diagonal().sum()) / (b * (b - 1))


class TeacherFeatureNorm(torch.nn.Module):
    """An affine map of the teacher's feature space that gives every teacher the same target scale.

    KD-DLGAN's released code regresses raw CLIP features (norm about 10). Another teacher's
    features can sit at another scale and offset (the TF Inception's pool3: non-negative, norm
    about 22, mostly a common mean), and D's spectrally normalised feature head can only reach a
    large target by scaling up the trunk that also feeds its logit. With a norm, D's head
    predicts t' = (t - mu) / s instead of t, where over the real training images
    - `rms`:      mu = 0 and s = sqrt(E ||t||^2): targets of unit RMS norm;
    - `standard`: mu = E[t] and s = sqrt(E ||t - mu||^2): centred targets of unit RMS norm.
    Both keep the geometry of the features (one global shift and scale). Text-based terms (CGKD,
    label distillation) are computed in the teacher's own space, from `inverse(D^f)`. The
    statistics are fitted once, on the teacher's features of (up to 1,000) clean real images,
    and live in buffers, so they are checkpointed with the objective.
    """

    def __init__(self, kind: str, dim: int):
        super().__init__()
        if kind not in ("rms", "standard"):
            raise ValueError(f"unknown teacher feature norm {kind!r}; use none, rms or standard")
        self.kind = kind
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("scale", torch.ones(()))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self._fitted_host: bool | None = None  # `fitted` read once, so a step never waits for it

    def is_fitted(self) -> bool:
        """Whether the statistics are fitted (read from the device once after a load, then kept)."""
        if self._fitted_host is None:
            self._fitted_host = bool(self.fitted)
        return self._fitted_host

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self._fitted_host = None

    @torch.no_grad()
    def fit(self, features: torch.Tensor) -> None:
        f = features.float()
        mean = f.mean(0) if self.kind == "standard" else torch.zeros_like(f[0])
        self.mean.copy_(mean)
        self.scale.copy_((f - mean).pow(2).sum(1).mean().sqrt().clamp_min(1e-8))
        self.fitted.fill_(True)
        self._fitted_host = True

    def forward(self, teacher_features: torch.Tensor) -> torch.Tensor:
        return (teacher_features.float() - self.mean) / self.scale

    def inverse(self, normalized: torch.Tensor) -> torch.Tensor:
        return normalized.float() * self.scale + self.mean
