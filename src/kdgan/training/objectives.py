"""GAN objectives: each returns named loss terms and never calls backward()."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from kdgan.augment.ada import AdaptiveP
from kdgan.losses.adversarial import ADVERSARIAL_LOSSES
from kdgan.losses.akdg import mse_distillation
from kdgan.losses.insgen import InsGen
from kdgan.losses.kd_baselines import (
    fitnets_loss,
    label_distillation_loss,
    pkd_loss,
    spkd_loss,
    zero_shot_logits,
)
from kdgan.losses.kd_dlgan import TeacherFeatureNorm, agkd_loss, cgkd_loss, pairwise_diversity
from kdgan.losses.regularizers import LeCam, PathLengthPenalty, r1_penalty
from kdgan.nets.vision_aided import VisionAidedD
from kdgan.teachers.base import Teacher

Terms = dict[str, torch.Tensor]


@dataclass
class Regularization:
    """Lazy R1, path length, style mixing, ADA / APA controllers (METHOD.md 2.2, 2.5, 2.6)."""

    r1_gamma: float = 0.0
    r1_every: int = 1  # R1 on D steps that are multiples of it, weight x r1_every
    pl: PathLengthPenalty | None = None
    pl_weight: float = 0.0
    pl_every: int = 4  # path length on G steps that are multiples of it, weight x pl_every
    # lazy terms (every > 1) in their own optimiser step (`d_reg_terms` / `g_reg_terms`), as
    # stylegan2-ada; False: added to the main step's terms
    separate: bool = False
    pl_batch_shrink: int = 2
    style_mixing: float = 0.0  # StyleGAN2 generators only
    ada: AdaptiveP | None = None  # p of the ADA pipeline inside the objective's augment
    apa: AdaptiveP | None = None  # p of adaptive pseudo augmentation


@dataclass
class KDSettings:
    """The KD-DLGAN terms (METHOD.md 1.3-1.4) and their options; see TrainConfig for each."""

    teacher: Teacher
    terms: tuple[str, ...]  # subset of config.KD_TERMS
    text: torch.Tensor | None  # (K, M) teacher text features of the prompts, fp32
    agkd_weight: float = 10.0
    agkd_distance: str = "l2"
    agkd_p: float = 1.0
    cgkd_weight: float = 10.0
    cgkd_norm: str = "row"
    cgkd_distance: str = "sq_sum"
    cgkd_fake_only: bool = False
    clip_on: str = "augmented"
    pd_mode: str = "off"
    pd_weight: float = 1.0
    # clip_on = clean: dataset indices (B,) -> cached teacher features of the clean real images
    clean_real_features: Callable[[torch.Tensor], torch.Tensor] | None = None
    every: int = 1  # KD on every `every`-th D step, its weights multiplied by `every`
    # other distillation methods (losses/kd_baselines.py); ld_head: D^f (B, M) -> class logits (B, K)
    fitnets_weight: float = 100.0
    ld_weight: float = 1.0
    ld_temperature: float = 4.0
    pkd_weight: float = 30000.0
    spkd_weight: float = 3000.0
    ld_head: nn.Module | None = None
    # kd_target_norm: D's head predicts norm(teacher features); `norm_source()` gives teacher
    # features of clean real images to fit it on (once, at the first KD step)
    norm: TeacherFeatureNorm | None = None
    norm_source: Callable[[], torch.Tensor] | None = None


class GANObjective:
    """The adversarial game with augmentation T applied to everything D sees (METHOD 1.5, 2.3).

    D phase:  L_D = loss_d(D(T(x)), D(T(G(z)))) [+ w_lc R_LC] [+ L_AGKD] [+ L_CGKD] [+ gamma/2 R1]
                    [+ other KD terms (kd_baselines)] [+ InsGen real / fake instance discrimination]
    G phase:  L_G = loss_g(D(T(G(z))))          [+ w_pd L_PD  when pd_mode = generator] [+ w_pl PL]
                    [+ InsGen's G term]
    Fake labels are drawn uniformly over the classes, as in BigGAN. R1 is taken with respect to
    the un-augmented real images (as StyleGAN2-ADA does); lazily every r1_every-th D step with
    weight x r1_every, and the path length every pl_every-th G step with weight x pl_every:
    with `reg.separate` (stylegan2-ada) a lazy term is its own optimiser step (`d_reg_terms`,
    `g_reg_terms`: R1 on a fresh D pass over the real batch), else it joins the main step's
    terms. R_LC joins D's loss once LeCam's warm-up is over. T is the augment module:
    ADA (probability `reg.ada.p`) then DiffAugment. With APA, each real image is swapped with
    probability `reg.apa.p` for a detached generated one (its label too) before anything else.
    ADA's and APA's p follow sign(D(real)) of the batches D labels real.
    """

    def __init__(self, loss: str, augment: nn.Module, z_dim: int, c_dim: int,
                 lecam: LeCam | None = None, lecam_weight: float = 0.0, kd: KDSettings | None = None,
                 r1_gamma: float = 0.0, reg: Regularization | None = None, insgen: InsGen | None = None,
                 vision_aided: VisionAidedD | None = None):
        self.loss_d, self.loss_g = ADVERSARIAL_LOSSES[loss]
        self.loss_name = loss
        self.augment = augment
        self.z_dim, self.c_dim = z_dim, c_dim
        self.lecam, self.lecam_weight = lecam, lecam_weight
        self.kd = kd
        self.insgen = insgen  # InsGen's momentum D, heads and queues (losses/insgen.py)
        self.vision_aided = vision_aided  # frozen backbone + trained head (nets/vision_aided.py)
        self.reg = reg if reg is not None else Regularization(r1_gamma=r1_gamma)
        self.r1_gamma = self.reg.r1_gamma
        self.r1_separate = self.reg.separate and self.reg.r1_every > 1
        self.pl_separate = self.reg.separate and self.reg.pl_every > 1
        self.g_kwargs = {"mixing_prob": self.reg.style_mixing} if self.reg.style_mixing > 0 else {}

    def _stateful(self) -> dict[str, nn.Module]:
        members = {"lecam": self.lecam, "ada": self.reg.ada, "apa": self.reg.apa, "pl": self.reg.pl,
                   "kd_norm": self.kd.norm if self.kd is not None else None, **self.aux_modules()}
        return {k: m for k, m in members.items() if m is not None}

    def aux_modules(self) -> dict[str, nn.Module]:
        """Modules outside D that D's loss trains (label-distillation classifier, InsGen, vision-aided D)."""
        members = {"ld_head": self.kd.ld_head if self.kd is not None else None, "insgen": self.insgen,
                   "vision_aided": self.vision_aided}
        return {k: m for k, m in members.items() if m is not None}

    def param_groups(self) -> list[dict]:
        """Adam parameter groups of the auxiliary modules, stepped with D (no lr: D's lr and betas)."""
        groups = []
        for m in self.aux_modules().values():
            groups += m.param_groups() if hasattr(m, "param_groups") else [
                {"params": [p for p in m.parameters() if p.requires_grad]}]
        return groups

    def state_dict(self) -> dict:
        """Training state of the objective (LeCam anchors, ADA / APA p, path-length mean);
        the teacher is never saved."""
        return {k: m.state_dict() for k, m in self._stateful().items()}

    def load_state_dict(self, state: dict) -> None:
        for k, m in self._stateful().items():
            if k in state:
                m.load_state_dict(state[k])

    def sample_latents(self, batch_size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """z ~ N(0, I) (B, z_dim) and labels ~ U{0..c_dim-1} (B,) (zeros when unconditional)."""
        z = torch.randn(batch_size, self.z_dim, device=device)
        labels = torch.randint(0, max(self.c_dim, 1), (batch_size,), device=device)
        return z, labels

    def branches(self, g_step: int, d_steps: int) -> tuple:
        """Every decision of `d_terms`, `d_reg_terms`, `g_terms` and `g_reg_terms` that G step
        `g_step` (with its `d_steps` D steps) takes in Python: which terms run and the constants
        they bake in. Two steps with equal branches launch the same kernels with the same
        arguments, so one CUDA graph serves both (training/graphs.py; tests/unit/test_cuda_graphs.py
        checks this on the operations each step runs). A step-dependent branch added to those
        methods belongs here too."""
        reg, kd, lecam, va = self.reg, self.kd, self.lecam, self.vision_aided
        d = []
        for d_step in range(g_step * d_steps, (g_step + 1) * d_steps):
            d.append((
                self.needs_second_derivative(d_step),
                self.r1_separate and reg.r1_gamma > 0 and d_step % reg.r1_every == 0,
                kd is not None and d_step % kd.every == 0,
                lecam is not None and lecam.decay_at(d_step),
                lecam is not None and lecam.active(d_step),
                va is not None and d_step // va.d_steps > va.warmup_steps,
            ))
        g = (reg.pl is not None and reg.pl_weight > 0 and g_step % reg.pl_every == 0,
             va is not None and g_step > va.warmup_steps)
        adaptive = tuple(c.value for c in (reg.ada, reg.apa) if c is not None)  # host floats
        norm = kd is not None and kd.norm is not None and kd.norm.is_fitted()
        return tuple(d), g, adaptive, norm

    def needs_second_derivative(self, d_step: int) -> bool:
        """Whether D step `d_step`'s main pass takes R1 (a gradient of D's gradient: D must run
        eagerly); with separate lazy regularisation R1 is its own pass (`d_reg_terms`)."""
        return self.reg.r1_gamma > 0 and d_step % self.reg.r1_every == 0 and not self.r1_separate

    def d_terms(self, G: nn.Module, D: nn.Module, real_images: torch.Tensor, real_labels: torch.Tensor,
                real_indices: torch.Tensor | None = None, d_step: int = 0) -> tuple[Terms, Terms]:
        """D loss terms and statistics for one real batch (B, 3, R, R) in [-1, 1]; `d_step` is the
        global D-step index (KD runs when it is a multiple of kd.every)."""
        b = real_images.shape[0]
        reg = self.reg
        apa_p = reg.apa.value if reg.apa is not None else 0.0
        z, fake_labels = self.sample_latents(2 * b if apa_p > 0 else b, real_images.device)
        with torch.no_grad():
            fake_images = G(z, fake_labels, **self.g_kwargs).to(real_images.dtype)
        swapped = None
        if apa_p > 0:  # APA: pseudo-real images from the second half of the batch
            fake_images, pseudo = fake_images.split([b, b])
            fake_labels, pseudo_labels = fake_labels.split([b, b])
            swapped = torch.rand(b, device=real_images.device) < apa_p
            real_images = torch.where(swapped.view(b, 1, 1, 1), pseudo, real_images)
            real_labels = torch.where(swapped, pseudo_labels, real_labels)
        use_r1 = self.needs_second_derivative(d_step)
        if use_r1:
            real_images = real_images.detach().requires_grad_(True)
        clean = torch.cat([fake_images, real_images])
        seen = self.augment(clean)  # one D pass over fake and real: one spectral-norm iteration
        labels = torch.cat([fake_labels, real_labels])
        use_kd = self.kd is not None and d_step % self.kd.every == 0
        if not use_kd:
            logits, student = D(seen, labels), None
        else:
            logits, student = D(seen, labels, return_kd=True)
        fake_logits, real_logits = logits.split([b, b])
        loss_real, loss_fake = self.loss_d(real_logits, fake_logits)
        terms = {f"d/{self.loss_name}_real": loss_real, f"d/{self.loss_name}_fake": loss_fake}
        stats = {"stats/d_real_logit": real_logits.detach().float().mean(),
                 "stats/d_fake_logit": fake_logits.detach().float().mean()}
        if self.lecam is not None:
            self.lecam.update(real_logits, fake_logits, d_step)
            if self.lecam.active(d_step):
                terms["d/lecam"] = self.lecam_weight * self.lecam(real_logits, fake_logits)
            else:  # warm-up: logged as 0, as the released code does
                terms["d/lecam"] = torch.zeros((), device=real_logits.device)
        if use_r1:
            terms["d/r1"] = reg.r1_every * reg.r1_gamma / 2 * r1_penalty(real_logits, real_images)
        if use_kd:
            terms.update(self._kd_terms(seen, clean, student.float(), b, real_indices, swapped))
        if self.vision_aided is not None:
            terms.update(self._vision_aided_d_terms(clean, labels, b, d_step))
        if self.insgen is not None:
            terms.update(self.insgen.d_terms(D, G, self.augment, real_images, fake_images, z[:b],
                                             fake_labels, self.g_kwargs))
        for name, control in (("ada", reg.ada), ("apa", reg.apa)):
            if control is not None:
                stats[f"stats/{name}_p"] = control.p.detach().clone()
                stats[f"stats/{name}_rt"] = control.rt.float().clone()
                control.accumulate(real_logits)
                control.adjust(d_step)
        return terms, stats

    def d_reg_terms(self, D: nn.Module, real_images: torch.Tensor, real_labels: torch.Tensor,
                    d_step: int = 0) -> tuple[Terms, Terms]:
        """The lazy R1 step of `reg.separate` (stylegan2-ada's Dreg phase): {"d/r1": r1_every *
        gamma / 2 * R1} on a fresh D pass over T(real) on D steps that are multiples of r1_every;
        empty on the others and without `reg.separate`."""
        reg = self.reg
        if not (self.r1_separate and reg.r1_gamma > 0 and d_step % reg.r1_every == 0):
            return {}, {}
        real_images = real_images.detach().requires_grad_(True)
        real_logits = D(self.augment(real_images), real_labels)
        return {"d/r1": reg.r1_every * reg.r1_gamma / 2 * r1_penalty(real_logits, real_images)}, {}

    def g_reg_terms(self, G: nn.Module, D: nn.Module, batch_size: int, device: torch.device,
                    g_step: int = 0) -> tuple[Terms, Terms]:
        """The lazy path-length step of `reg.separate` (stylegan2-ada's Greg phase) on G steps that
        are multiples of pl_every; empty on the others and without `reg.separate`."""
        reg = self.reg
        if not (self.pl_separate and reg.pl is not None and reg.pl_weight > 0 and g_step % reg.pl_every == 0):
            return {}, {}
        return self._pl_terms(G, batch_size, device)

    def _pl_terms(self, G: nn.Module, batch_size: int, device: torch.device) -> tuple[Terms, Terms]:
        reg = self.reg
        n = max(1, batch_size // reg.pl_batch_shrink)
        z_pl, labels_pl = self.sample_latents(n, device)
        terms = {"g/pl": reg.pl_every * reg.pl_weight * reg.pl(G, z_pl, labels_pl, reg.style_mixing)}
        return terms, {"stats/pl_mean": reg.pl.mean.detach().clone()}

    def _vision_aided_d_terms(self, clean: torch.Tensor, labels: torch.Tensor, b: int, d_step: int) -> Terms:
        """The vision-aided D's loss on the un-augmented fake and real images (it augments them
        itself); weight 0 during warm-up but still computed, so its Adam steps count as released."""
        va = self.vision_aided
        on = float(d_step // va.d_steps > va.warmup_steps)
        fake_logits, real_logits = va(clean, labels, detach=True).split([b, b])
        loss_real, loss_fake = self.loss_d(real_logits, fake_logits)
        return {f"d/vision_aided_{self.loss_name}_real": on * loss_real,
                f"d/vision_aided_{self.loss_name}_fake": on * loss_fake}

    def _kd_terms(self, seen: torch.Tensor, clean: torch.Tensor, student: torch.Tensor, b: int,
                  real_indices: torch.Tensor | None, swapped: torch.Tensor | None = None) -> Terms:
        kd = self.kd
        with torch.no_grad():  # the teacher is frozen: no gradient to it or through it here
            if kd.clip_on == "augmented":
                target_fake, target_real = kd.teacher.image_features(seen).split([b, b])
            else:
                target_fake = kd.teacher.image_features(clean[:b])
                target_real = kd.clean_real_features(real_indices)
                if swapped is not None and bool(swapped.any()):  # APA: not the cached dataset image
                    target_real = target_real.clone()
                    target_real[swapped] = kd.teacher.image_features(clean[b:][swapped]).to(target_real.dtype)
        # Text-based terms compare in the teacher's own space: raw targets, D^f mapped back.
        text_fake, text_real = target_fake, target_real
        student_in_teacher_space = student
        if kd.norm is not None:
            if not kd.norm.is_fitted():
                kd.norm.fit(kd.norm_source())
            target_fake, target_real = kd.norm(target_fake), kd.norm(target_real)
            student_in_teacher_space = kd.norm.inverse(student)
        student_fake, student_real = student.split([b, b])
        text_student_fake, text_student_real = student_in_teacher_space.split([b, b])
        terms: Terms = {}
        if "agkd" in kd.terms:
            q = torch.rand((), device=student.device)  # one draw per D step, no host sync
            aggregate = (q <= kd.agkd_p).float()
            terms["d/agkd"] = kd.every * kd.agkd_weight * agkd_loss(target_real, target_fake, student_real,
                                                         student_fake, aggregate, kd.agkd_distance)
        if "cgkd" in kd.terms:
            terms["d/cgkd"] = kd.every * kd.cgkd_weight * cgkd_loss(
                text_real, text_fake, text_student_real, text_student_fake, kd.text, kd.cgkd_norm,
                kd.cgkd_distance, kd.cgkd_fake_only)
        if "plainkd" in kd.terms:  # "DA + KD (CLIP)": L_KD alone, never the swapped targets
            terms["d/plainkd"] = kd.every * kd.agkd_weight * agkd_loss(
                target_real, target_fake, student_real, student_fake, 0.0, kd.agkd_distance)
        # Discussion 1's other methods, each on the real and on the fake half (as L_KD)
        for name, weight, loss in (("fitnets", kd.fitnets_weight, fitnets_loss),
                                   ("pkd", kd.pkd_weight, pkd_loss), ("spkd", kd.spkd_weight, spkd_loss)):
            if name in kd.terms:
                value = loss(student_real, target_real) + loss(student_fake, target_fake)
                terms[f"d/{name}"] = kd.every * weight * value
        if "ld" in kd.terms:
            logits_fake, logits_real = kd.ld_head(student_in_teacher_space).float().split([b, b])
            value = sum(label_distillation_loss(s, zero_shot_logits(t, kd.text), kd.ld_temperature)
                        for s, t in ((logits_real, text_real), (logits_fake, text_fake)))
            terms["d/ld"] = kd.every * kd.ld_weight * value
        return terms

    def g_terms(self, G: nn.Module, D: nn.Module, batch_size: int, device: torch.device,
                g_step: int = 0, G_eager: nn.Module | None = None) -> tuple[Terms, Terms]:
        """G loss terms for one batch of fresh latents; `g_step` is the global G-step index.
        `G_eager` (default G) runs the path-length pass, which needs a second derivative that a
        compiled G does not give."""
        z, labels = self.sample_latents(batch_size, device)
        fake_images = G(z, labels, **self.g_kwargs)
        seen = self.augment(fake_images)
        terms = {f"g/{self.loss_name}": self.loss_g(D(seen, labels))}
        if self.insgen is not None and self.insgen.g_weight > 0:
            terms["g/insgen"] = self.insgen.g_term(D, self.augment, fake_images)
        if self.vision_aided is not None and g_step > self.vision_aided.warmup_steps:
            # gradients reach G through the frozen backbone
            terms[f"g/vision_aided_{self.loss_name}"] = self.loss_g(self.vision_aided(fake_images, labels))
        if self.kd is not None and self.kd.pd_mode == "generator":
            # gradients flow through the frozen teacher into G (its weights stay untouched)
            features = self.kd.teacher.image_features(seen)
            terms["g/pd"] = self.kd.pd_weight * pairwise_diversity(features, self.kd.text, self.kd.cgkd_norm)
        stats: Terms = {}
        reg = self.reg
        if (reg.pl is not None and reg.pl_weight > 0 and g_step % reg.pl_every == 0
                and not self.pl_separate):
            pl_terms, stats = self._pl_terms(G_eager or G, batch_size, device)
            terms.update(pl_terms)
        return terms, stats


class Discriminators(nn.ModuleDict):
    """The discriminators of a compression run, by role: `data` (D_S) and `kd` (D_KD).

    One module (so one optimiser, one checkpoint entry); `config` rebuilds each member.
    """

    def __init__(self, members: dict[str, nn.Module]):
        super().__init__(members)
        self.config = {"arch": "discriminators", **{k: dict(m.config) for k, m in members.items()}}


class DistillObjective:
    """AKDG and its baselines (Tsunashima et al., ICPR 2020; METHOD.md section 3).

    G is the student G_S; `G_teacher` is frozen. D is a `Discriminators` with the members the
    method needs. Each D phase draws one student batch G_S(z):
      D_S  (`data`): real x vs G_S(z)                       [vanilla, akdg, mse+adv]
      D_KD (`kd`):   G_T(z') vs G_S(z), z' independent of z  [akdg]
    each with loss_d and gamma/2 R1 on its "real" side. The G phase:
      vanilla:  loss_g(D_S(G_S(z)))
      akdg:     loss_g(D_S(G_S(z))) + lambda * loss_g(D_KD(G_S(z)))
      mse:      mean (G_T(z) - G_S(z))^2, the same z and labels on both sides
      mse+adv:  alpha * MSE + (1 - alpha) * loss_g(D_S(G_S(z)))
    Augmentation T (DiffAugment policy, empty by default) is applied to every image a D sees.
    """

    MEMBERS = {"vanilla": ("data",), "akdg": ("data", "kd"), "mse": (), "mse+adv": ("data",)}

    def __init__(self, method: str, G_teacher: nn.Module, loss: str, augment: nn.Module, z_dim: int,
                 c_dim: int, akdg_weight: float = 1.0, mse_alpha: float = 0.5, r1_gamma: float = 10.0):
        if method not in self.MEMBERS:
            raise ValueError(f"unknown compression method {method!r}; use {', '.join(self.MEMBERS)}")
        self.method, self.G_teacher = method, G_teacher
        self.loss_d, self.loss_g = ADVERSARIAL_LOSSES[loss]
        self.loss_name = loss
        self.augment = augment
        self.z_dim, self.c_dim = z_dim, c_dim
        self.akdg_weight, self.mse_alpha, self.r1_gamma = akdg_weight, mse_alpha, r1_gamma

    def state_dict(self) -> dict:
        return {}  # the teacher is never saved; its hash is (see Trainer.state_dict)

    def param_groups(self) -> list[dict]:
        return []  # no auxiliary trainable modules

    def load_state_dict(self, state: dict) -> None:
        pass

    sample_latents = GANObjective.sample_latents

    def branches(self, g_step: int, d_steps: int) -> tuple:
        return ()  # no decision of the distillation game depends on the step

    def needs_second_derivative(self, d_step: int) -> bool:
        return self.r1_gamma > 0  # R1 on every step of both discriminators

    def d_reg_terms(self, D: nn.Module, real_images: torch.Tensor, real_labels: torch.Tensor,
                    d_step: int = 0) -> tuple[Terms, Terms]:
        return {}, {}  # R1 is part of each discriminator's main step (`_game`)

    def g_reg_terms(self, G: nn.Module, D: nn.Module, batch_size: int, device: torch.device,
                    g_step: int = 0) -> tuple[Terms, Terms]:
        return {}, {}

    def _game(self, D: nn.Module, real_images: torch.Tensor, real_labels: torch.Tensor,
              fake_images: torch.Tensor, fake_labels: torch.Tensor, name: str) -> tuple[Terms, Terms]:
        """One discriminator's loss on its real and fake batches (one pass), plus R1."""
        b = real_images.shape[0]
        if self.r1_gamma > 0:
            real_images = real_images.detach().requires_grad_(True)
        logits = D(self.augment(torch.cat([fake_images, real_images])), torch.cat([fake_labels, real_labels]))
        fake_logits, real_logits = logits.split([b, b])
        loss_real, loss_fake = self.loss_d(real_logits, fake_logits)
        terms = {f"{name}/{self.loss_name}_real": loss_real, f"{name}/{self.loss_name}_fake": loss_fake}
        if self.r1_gamma > 0:
            terms[f"{name}/r1"] = self.r1_gamma / 2 * r1_penalty(real_logits, real_images)
        stats = {f"stats/{name}_real_logit": real_logits.detach().float().mean(),
                 f"stats/{name}_fake_logit": fake_logits.detach().float().mean()}
        return terms, stats

    def d_terms(self, G: nn.Module, D: nn.Module, real_images: torch.Tensor, real_labels: torch.Tensor,
                real_indices: torch.Tensor | None = None, d_step: int = 0) -> tuple[Terms, Terms]:
        """Loss terms of D_S and D_KD for one real batch (B, 3, R, R) in [-1, 1]."""
        b, device = real_images.shape[0], real_images.device
        z, labels = self.sample_latents(b, device)
        with torch.no_grad():
            student = G(z, labels).to(real_images.dtype)
        terms: Terms = {}
        stats: Terms = {}
        if "data" in D:
            t, s = self._game(D["data"], real_images, real_labels, student, labels, "d_data")
            terms.update(t)
            stats.update(s)
        if "kd" in D:
            z_t, labels_t = self.sample_latents(b, device)  # independent of the student's z
            with torch.no_grad():
                teacher = self.G_teacher(z_t, labels_t).to(real_images.dtype)
            t, s = self._game(D["kd"], teacher, labels_t, student, labels, "d_kd")
            terms.update(t)
            stats.update(s)
        return terms, stats

    def g_terms(self, G: nn.Module, D: nn.Module, batch_size: int, device: torch.device,
                g_step: int = 0, G_eager: nn.Module | None = None) -> tuple[Terms, Terms]:
        """The student's loss terms for one batch of fresh latents."""
        z, labels = self.sample_latents(batch_size, device)
        student = G(z, labels)
        terms: Terms = {}
        adv_weight = 1.0 - self.mse_alpha if self.method == "mse+adv" else 1.0
        if "data" in D:
            logits = D["data"](self.augment(student), labels)
            terms[f"g/{self.loss_name}_data"] = adv_weight * self.loss_g(logits)
        if "kd" in D:
            logits = D["kd"](self.augment(student), labels)
            terms[f"g/{self.loss_name}_kd"] = self.akdg_weight * self.loss_g(logits)
        if self.method in ("mse", "mse+adv"):
            with torch.no_grad():
                target = self.G_teacher(z, labels)  # the same z and labels: pixel pairing
            mse_weight = self.mse_alpha if self.method == "mse+adv" else 1.0
            terms["g/mse"] = mse_weight * mse_distillation(target, student)
        return terms, {}
