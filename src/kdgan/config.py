"""Training configuration: one frozen dataclass, and named presets (one per paper table row)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from kdgan.errors import KdganError


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to the run folder and into every checkpoint."""

    # --- data ---
    data: str = "lfw-faces"  # prepared zip, image folder, image zip, CIFAR archive, or built-in name
    split: str = "train"  # split folder to read when the source has train/ and test/
    resolution: int = 32  # px, square; images are centre-cropped and resized to it
    data_fraction: float = 1.0  # fraction of the images to train on, in (0, 1]
    data_seed: int = 0  # seed of the subset draw (independent of `seed`)
    data_balanced: bool = False  # draw the subset per class (same fraction of every class)
    data_draw: str = "released"  # subset draw: released (np.random.seed, np.random.choice) | generator
    conditional: bool = True  # class-conditional G and D when the data has labels
    xflip: bool = True  # random horizontal mirror of real images (dataset x2)
    # --- networks ---
    arch: str = "biggan"  # G and D family: biggan | stylegan2; dcgan | mlp (AKDG students, BigGAN D)
    z_dim: int = 128  # latent size
    g_ch: int = 64  # G width: BigGAN channel multiplier (4 x g_ch at 32 px); dcgan base / mlp hidden units
    d_ch: int = 64  # D channel multiplier (BigGAN projection D, also D_KD when compressing)
    w_dim: int = 512  # StyleGAN2: size of the intermediate latent w
    channel_base: int = 16384  # StyleGAN2 G and D: channels at r: min(channel_base / r, channel_max)
    channel_max: int = 512  # StyleGAN2: channel cap
    d_channel_base: int = 0  # StyleGAN2 D's channel_base when it differs from G's (0 = channel_base)
    d_channel_max: int = 0  # StyleGAN2 D's channel cap when it differs from G's (0 = channel_max)
    mapping_layers: int = 8  # StyleGAN2: depth of the mapping network (2 for low-shot)
    mbstd_group: int = 4  # StyleGAN2 D: minibatch-stddev group size (must divide the per-process batch)
    # --- objective ---
    loss: str = "hinge"  # adversarial loss: hinge | ns (non-saturating)
    diffaugment: str = "translation,cutout"  # DiffAugment policy, comma separated; "" for none
    lecam_weight: float = 0.0  # w_lc of the LeCam regulariser in D's loss; 0 = off (0.3 for BigGAN-CIFAR)
    lecam_decay: float = 0.9  # EMA decay of the LeCam anchors (released code; 0.99 in the LeCam paper's text)
    lecam_start_steps: int = 1000  # warm-up length, in the unit lecam_warmup names
    lecam_warmup: str = "g-steps"  # g-steps: anchors copy the batch means, R_LC off (released) | d-updates
    lecam_rectified: bool = True  # relu form (released code); False = the paper's plain squares
    # --- KD-DLGAN (METHOD.md section 1) ---
    # "" = no KD | clip | inception | classifier | torchvision:MODEL | timm:MODEL | blip (docs/teachers.md)
    # | clip-tiny-random / clip-random / blip-tiny-random (tests, benchmarks)
    teacher: str = ""
    teacher_model: str = ""  # open_clip model of the clip / clip-random teachers ("" = ViT-B-32); others: ""
    # clip: pretrained tag or file ("" = openai / $KDGAN_CLIP_WEIGHTS); classifier: the folder of
    # `kdgan teacher train`; torchvision:/timm:: a state-dict file, or "download"; blip: hub id or folder
    teacher_weights: str = ""
    teacher_resolution: int = 0  # px, input side of a torchvision:/timm:/inception teacher; 0 = its own
    kd: str = "auto"  # KD terms: auto (agkd,cgkd; agkd if the teacher is image-only) | agkd,cgkd | agkd
    agkd_weight: float = 10.0  # w_agkd
    agkd_distance: str = "l2"  # l2 (per-sample norm, released code) | l1 (elementwise mean, paper)
    agkd_p: float = 1.0  # probability of adding the aggregated (swapped-target) term, per D step
    cgkd_weight: float = 10.0  # w_cgkd
    cgkd_norm: str = "row"  # row (L2 per row, released code) | frobenius (whole matrix)
    cgkd_distance: str = "sq_sum"  # sq_sum (sum of squares, released code) | l1 (mean abs, paper)
    cgkd_fake_only: bool = False  # CGKD on generated images only
    clip_input: str = "official"  # official ([-1, 1], nearest upsample) | normalized (CLIP mean/std)
    clip_on: str = "augmented"  # augmented (what D sees) | clean (un-augmented; real features cached)
    pd_mode: str = "off"  # off (released code) | generator (pairwise diversity in G's loss)
    pd_weight: float = 1.0  # w_pd when pd_mode = generator
    # --- other distillation methods into D (KD-DLGAN Discussion 1; docs/baselines.md) ---
    fitnets_weight: float = 100.0  # weight of the FitNets hint loss (kd term fitnets; RepDistiller's 100)
    ld_weight: float = 1.0  # weight of label distillation (kd term ld: CLIP zero-shot labels -> D classifier)
    ld_temperature: float = 4.0  # Hinton temperature T of label distillation (RepDistiller's 4)
    pkd_weight: float = 30000.0  # weight of probabilistic KD (kd term pkd; RepDistiller's PKT weight)
    spkd_weight: float = 3000.0  # weight of similarity-preserving KD (kd term spkd; RepDistiller's SP weight)
    prompts: str = ""  # named list, prompt file, or "" = "a {class}" for the data's classes
    teacher_compile: bool = False  # torch.compile the CLIP image tower (first steps pay the compile)
    # the frozen teacher's dtype: auto (fp16 on a GPU, fp32 on a CPU) | fp32 | fp16 | bf16 (on a CPU
    # with AVX-512 BF16 / AMX, bf16 halves a ViT-B/32 teacher's time: docs/teachers.md)
    teacher_dtype: str = "auto"
    kd_every: int = 1  # D steps between KD terms, weights x kd_every ("lazy", like lazy R1); 1 = paper
    # D's feature head predicts the teacher's features: none = raw (released code, CLIP) | rms =
    # divided by their RMS norm over the real images | standard = centred on the real mean, then so
    kd_target_norm: str = "none"
    # False: the KD terms train D's feature head only; their gradient stops at D's trunk, so KD
    # cannot shape the features D's logit uses (an ablation; the paper's KD reaches the trunk)
    kd_trunk_grad: bool = True
    r1_gamma: float = 0.0  # R1 weight: gamma / 2 * E||grad_x D(x)||^2 on reals; 0 = off (AKDG, StyleGAN2: 10)
    r1_every: int = 1  # lazy R1: on every K-th D step with weight x K (StyleGAN2: 16); 1 = every step
    lazy_reg: str = "separate"  # lazy R1 / path length: separate (own optimiser step, stylegan2-ada) | fused
    style_mixing: float = 0.0  # StyleGAN2: probability of style mixing per G forward (0.9 in StyleGAN2)
    pl_weight: float = 0.0  # StyleGAN2 path-length regularisation weight; 0 = off (2 in StyleGAN2)
    pl_every: int = 4  # lazy path-length: every K-th G step with weight x K
    pl_decay: float = 0.01  # EMA rate of the path-length target
    pl_batch_shrink: int = 2  # path-length batch = batch / shrink
    # --- ADA / APA (METHOD.md 2.5, 2.6) ---
    ada: str = ""  # ADA ops applied to all D inputs: "" = off | bgc (all listed) | blit,geom,color | op names
    ada_target: float = 0.6  # r_t target of the adaptive p; 0 = p fixed at ada_p
    ada_p: float = 0.0  # initial p of ADA
    ada_kimg: float = 500.0  # thousands of images for p to move by 1 (ADA and APA)
    ada_every: int = 4  # D steps between p updates (ADA and APA)
    ada_p_cap: bool = False  # clamp ADA / APA p to at most 1; False = floored at 0 only (stylegan2-ada, APA)
    apa: bool = False  # adaptive pseudo augmentation: real images swapped for detached fakes with prob p
    apa_target: float = 0.6  # r_t target of APA's p
    # --- InsGen (Yang et al., NeurIPS 2021; METHOD.md 2.7; docs/baselines.md) ---
    insgen: bool = False  # instance discrimination on D's features with a momentum D and key queues
    insgen_queue: int = 0  # keys per queue (real and fake); 0 = int(5% of the images), x2 with xflip
    insgen_temperature: float = 0.2  # temperature of the contrastive logits
    insgen_momentum: float = 0.999  # momentum of D_ema and of the heads' key projectors, per D step
    insgen_real_weight: float = 1.0  # weight of real instance discrimination in D's loss
    insgen_fake_weight: float = 1.0  # weight of fake instance discrimination in D's loss
    insgen_g_weight: float = 0.1  # weight of fake instance discrimination in G's loss
    insgen_noise: float = 0.15  # std of the latent perturbation that gives a fake image its positive view
    # --- vision-aided GAN (Kumari et al., CVPR 2022; docs/baselines.md) ---
    vision_aided: str = ""  # backbone of the vision-aided D: "" = off | clip | clip-tiny-random (tests)
    vision_aided_warmup: int = 2000  # G steps before its loss turns on (released BigGAN-CIFAR --warmup)
    vision_aided_policy: str = "color,translation,cutout"  # DiffAugment policy of the backbone's input
    # its CLIP backbone in fp16 on CUDA (G's gradient passes through it); False = fp32 as released
    vision_aided_half: bool = False
    # --- AKDG compression (METHOD.md section 3; `kdgan compress` sets these) ---
    compress_teacher: str = ""  # frozen teacher G (checkpoint, export folder, .safetensors); "" = off
    compress_method: str = "akdg"  # akdg | mse | mse+adv | vanilla (data only)
    akdg_weight: float = 1.0  # lambda: weight of the D_KD term in the student's loss
    mse_alpha: float = 0.5  # mse+adv: alpha * MSE + (1 - alpha) * adversarial (data D)
    # --- optimisation ---
    batch_size: int = 50  # images per D step and per G step, summed over all processes
    d_steps: int = 4  # D steps per G step
    g_lr: float = 2e-4  # Adam learning rate of G
    d_lr: float = 2e-4  # Adam learning rate of D
    betas: tuple[float, float] = (0.0, 0.999)  # Adam betas, G and D
    adam_eps: float = 1e-8  # Adam epsilon
    ema_decay: float = 0.9999  # G_ema decay per G step
    ema_start_steps: int = 1000  # G steps before which G_ema is a plain copy of G
    ema_bn_mode: str = "batch"  # G_ema's BatchNorm when sampling: batch (released) | running | standing
    ema_bn_batch: int = 50  # images per BatchNorm batch of G_ema (ema_bn_mode batch; standing: per pass)
    steps: int = 125_000  # training length in G steps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds loss scaling)
    compile: bool = False  # torch.compile G and D for their plain passes (R1 / path-length passes stay eager)
    # torch.compile's mode with compile=true: default | reduce-overhead (CUDA graphs on a GPU, for
    # launch-bound steps such as BigGAN-CIFAR's) | max-autotune
    compile_mode: str = "default"
    # layout of G's and D's activations: auto (channels_last for BigGAN / DCGAN / MLP nets, which
    # are plain convolutions; NCHW for StyleGAN2, whose modulated convolutions reshape per sample)
    # | channels_last | contiguous (NCHW). Same numbers to float rounding; 1.17x on a CPU (BigGAN).
    memory_format: str = "auto"
    # whole training steps as CUDA graphs on a GPU (training/graphs.py): one launch per step for
    # launch-bound steps such as BigGAN-CIFAR's; runs without what a graph cannot hold (ADA, APA,
    # InsGen, fp16, clip_on=clean, several processes) go on eagerly with a warning saying why
    cuda_graphs: bool = False
    seed: int = 0  # seed of initialisation, sampling and augmentation
    # --- bookkeeping ---
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every_steps: int = 50  # G steps between log lines (JSONL, TensorBoard, progress bar)
    sample_every_steps: int = 1000  # G steps between fixed-z sample grids
    ckpt_every_steps: int = 2000  # G steps between checkpoints
    ckpt_every_minutes: float = 30.0  # wall-clock minutes between checkpoints (as well as by steps); 0 = off
    keep_ckpts: int = 3  # most recent checkpoints kept on disk (plus best, when evaluated)
    # --- evaluation during training (METHOD.md section 4) ---
    eval_every_steps: int = 0  # G steps between evaluations of G_ema; 0 = off
    eval_protocol: str = "cifar"  # cifar | fewshot | full50k | imagenet | custom (custom needs eval_num_gen)
    eval_num_gen: int = 0  # generated images per evaluation; 0 = the protocol's number
    eval_metric: str = "fid"  # fid | kid: lower is better; picks checkpoints/best.pt
    eval_ref: str = ""  # reference data; "" = the training source (`data`)
    inception: str = "auto"  # auto | torch-fidelity | tf-torchscript (see kdgan.metrics.inception)


# Fields that may differ when a run is resumed: they do not change what is computed per step.
RESUMABLE_FIELDS = frozenset(
    {"steps", "device", "log_every_steps", "sample_every_steps", "ckpt_every_steps", "keep_ckpts",
     "ckpt_every_minutes",
     "eval_every_steps", "eval_protocol", "eval_num_gen", "eval_metric", "eval_ref", "inception",
     "teacher_compile", "teacher_dtype", "compress_teacher", "compile", "compile_mode", "memory_format",
     "cuda_graphs",
     "ema_bn_mode",
     "ema_bn_batch"}
)

# Values that reproduce what checkpoints written before a field existed computed (the field's
# default may now be the released code's value): resuming such a run compares against these, so
# it continues exactly as it started, or stops naming the field to pass with --set.
LEGACY_VALUES: dict[str, Any] = {
    "data_draw": "generator", "lecam_warmup": "d-updates", "lazy_reg": "fused", "ada_p_cap": True,
    "vision_aided_half": True,
}


def changed_fields(saved: dict[str, Any], now: dict[str, Any], ignore: set[str] = frozenset()) -> list[str]:
    """'field: old -> new' for each field in which a run's saved config and this one differ, leaving
    out the fields a resume may change (RESUMABLE_FIELDS), those inactive in both, and `ignore`."""
    skip = RESUMABLE_FIELDS | (inactive_fields(saved) & inactive_fields(now)) | ignore
    return [f"{k}: {saved.get(k)!r} -> {now.get(k)!r}" for k in now
            if k not in skip and saved.get(k) != now.get(k)]


def inactive_fields(cfg: dict[str, Any]) -> set[str]:
    """Fields of a config dict that change nothing it computes (e.g. LeCam's settings with LeCam
    off), so a resumed run may differ in them."""
    out: set[str] = set()
    if not cfg.get("lecam_weight"):
        out |= {"lecam_decay", "lecam_start_steps", "lecam_warmup", "lecam_rectified"}
    if cfg.get("data_fraction", 1.0) >= 1:
        out |= {"data_draw", "data_seed", "data_balanced"}
    lazy_r1 = cfg.get("r1_gamma", 0) > 0 and cfg.get("r1_every", 1) > 1
    lazy_pl = cfg.get("pl_weight", 0) > 0 and cfg.get("pl_every", 1) > 1
    if not (lazy_r1 or lazy_pl):
        out.add("lazy_reg")
    if not (cfg.get("ada") or cfg.get("apa")):
        out.add("ada_p_cap")
    if not cfg.get("vision_aided") or cfg.get("device") == "cpu":  # fp16 applies on CUDA only
        out.add("vision_aided_half")
    if not cfg.get("teacher"):
        out.add("kd_trunk_grad")
    return out


@dataclass(frozen=True)
class Preset:
    """A named configuration: the fields it sets, and the number the paper reports for it."""

    name: str
    description: str  # one line for `kdgan presets`
    overrides: dict[str, Any] = field(default_factory=dict)
    paper_fid: float | None = None  # FID reported in the paper for this row (METHOD.md section 5)
    paper_is: float | None = None  # Inception Score reported in the paper, where it reports one


# KD-DLGAN Table 1 / ablation rows (METHOD.md section 5): (variant, description, fields, FID by %).
_KD = {"teacher": "clip", "kd": "agkd,cgkd"}
# Released LeCam (KD_DLGAN / lecam-gan BigGAN code): decay 0.9; for the first 1,000 G iterations
# the anchors copy the batch means and R_LC is off.
_LECAM = {"lecam_weight": 0.3, "lecam_decay": 0.9, "lecam_start_steps": 1000, "lecam_warmup": "g-steps"}
_VARIANTS = [
    ("da", "DiffAugment", {}, {"cifar10": {100: 8.75, 20: 14.53, 10: 23.34},
                               "cifar100": {100: 11.99, 20: 22.55, 10: 35.39}}),
    ("da-kd", "DiffAugment + KD-DLGAN (AGKD + CGKD, CLIP ViT-B/32)", _KD,
     {"cifar10": {100: 8.42, 20: 11.01, 10: 14.20}, "cifar100": {100: 10.28, 20: 15.60, 10: 18.03}}),
    ("da-agkd", "DiffAugment + AGKD only", {**_KD, "kd": "agkd"}, {"cifar10": {20: 12.97, 10: 15.85}}),
    ("da-cgkd", "DiffAugment + CGKD only", {**_KD, "kd": "cgkd"}, {"cifar10": {20: 12.77, 10: 18.66}}),
    ("lecam-da", "LeCam + DiffAugment", _LECAM, {}),
    ("lecam-da-kd", "LeCam + DiffAugment + KD-DLGAN", {**_LECAM, **_KD},
     {"cifar10": {100: 8.19, 20: 11.45, 10: 13.22}, "cifar100": {100: 10.12, 20: 18.70, 10: 22.40}}),
]

# KD-DLGAN Discussion 1 (CIFAR 10%, DiffAugment base): other ways to distil the same CLIP teacher
# into D (docs/baselines.md). Paper FIDs are reported for CIFAR-10 only.
_KD_BASELINES = [  # (suffix, description, fields, paper FIDs)
    ("kd", "DiffAugment + KD (CLIP): plain feature distillation (AGKD's L_KD, no swapped targets)",
     {"teacher": "clip", "kd": "plainkd"}, {}),
    ("fitnets", "DiffAugment + FitNets (CLIP feature hints into D's feature head)",
     {"teacher": "clip", "kd": "fitnets"}, {"cifar10": {10: 22.03}}),
    ("ld", "DiffAugment + label distillation (CLIP zero-shot class probabilities)",
     {"teacher": "clip", "kd": "ld"}, {"cifar10": {10: 20.46}}),
    ("pkd", "DiffAugment + probabilistic KD (PKT) from CLIP", {"teacher": "clip", "kd": "pkd"},
     {"cifar10": {10: 21.34}}),
    ("spkd", "DiffAugment + similarity-preserving KD from CLIP", {"teacher": "clip", "kd": "spkd"},
     {"cifar10": {10: 19.11}}),
    ("da-kd-blip", "DiffAugment + KD-DLGAN with a BLIP teacher (ITC features, blip-itm-base-coco)",
     {"teacher": "blip", "kd": "agkd,cgkd"}, {"cifar10": {10: 15.74}}),
    ("vision-aided", "DiffAugment + vision-aided D (frozen CLIP ViT-B/32 + MLP head, Kumari et al.)",
     {"vision_aided": "clip"}, {"cifar10": {10: 16.24}}),
    # the vision-aided release's own CLIP stage: 600 epochs (15,000 G steps at 10%; docs/baselines.md)
    ("vision-aided-600ep", "DiffAugment + vision-aided D, the vision-aided release's CLIP-stage schedule "
     "(600 epochs)", {"vision_aided": "clip", "steps": 600 * 5000 // (50 * 4)}, {}),
]


def _biggan_cifar(dataset: str, pct: int, variant: str, what: str, fields: dict[str, Any],
                  fids: dict[str, dict[int, float]]) -> Preset:
    # 5,000 epochs at 10% / 20%; 1,000 epochs on the full set (released DiffAugment scripts).
    # As released: the subset drawn by np.random.seed(0); np.random.choice, and G_ema sampled with
    # BatchNorm batch statistics in batches of 50 (for samples, FID, generate and evaluate).
    n_images = 50_000 * pct // 100
    epochs = 1000 if pct == 100 else 5000
    steps = epochs * n_images // (50 * 4)
    suffix = "" if pct == 100 else f"-{pct}pct"
    return Preset(
        name=f"biggan-{dataset}{suffix}-{variant}",
        description=f"BigGAN 32px, {what}, {dataset.upper()} {pct}% data",
        overrides={"data_fraction": pct / 100, "data_draw": "released", "data_seed": 0, "steps": steps,
                   "sample_every_steps": 4000, "eval_every_steps": 4000, "eval_protocol": "cifar",
                   "ema_bn_mode": "batch", "ema_bn_batch": 50, **fields},
        paper_fid=fids.get(dataset, {}).get(pct),
    )


# StyleGAN2 few-shot rows (METHOD.md 2.2 and 5): 256 px, batch 16, 300 kimg (AnimalFace 500),
# non-saturating loss + lazy R1 (gamma 10, every 16 D steps), Adam 0.002 (0, 0.99), 2 mapping
# layers, mirror flips; DiffAugment's low-shot config (fmaps 1: channel_base 32768, G EMA
# half-life 10 kimg) on stylegan2-ada-pytorch's loss (style mixing 0.9, path length 2 every 4
# G steps, lazy regularisation in separate optimiser steps with scaled lr and betas), mbstd 4.
# docs/fidelity.md lists where this differs from the TF code behind the published DA numbers.
_SG2_LOWSHOT: dict[str, Any] = {
    "arch": "stylegan2", "resolution": 256, "z_dim": 512, "w_dim": 512, "channel_base": 32768,
    "channel_max": 512, "mapping_layers": 2, "mbstd_group": 4, "conditional": False, "loss": "ns",
    "r1_gamma": 10.0, "r1_every": 16, "style_mixing": 0.9, "pl_weight": 2.0, "pl_every": 4,
    "lazy_reg": "separate", "batch_size": 16, "d_steps": 1, "g_lr": 0.002, "d_lr": 0.002,
    "betas": (0.0, 0.99), "ema_decay": 0.5 ** (16 / 10_000), "ema_start_steps": 0,
    "diffaugment": "color,translation,cutout",
    "eval_protocol": "fewshot", "eval_metric": "fid", "eval_every_steps": 1250,
    "sample_every_steps": 1250, "ckpt_every_steps": 1250, "log_every_steps": 100,
}
_SG2_DATASETS = {  # preset name -> (data name, kimg, title, index into METHOD.md's few-shot rows)
    "obama": ("obama", 300, "100-shot Obama", 0), "grumpy-cat": ("grumpy-cat", 300, "100-shot Grumpy Cat", 1),
    "panda": ("panda", 300, "100-shot Panda", 2),
    "animalface-cat": ("animalface-cat", 500, "AnimalFace cat", 3),
    "animalface-dog": ("animalface-dog", 500, "AnimalFace dog", 4),
}
_NO_DA = {"diffaugment": ""}
_INSGEN = {**_NO_DA, "ada": "bgc", "insgen": True}
# LeCam's released StyleGAN2 code: decay 0.99, no warm-up. Its weight for few-shot sets is not
# released (METHOD neither): 0.01 keeps R_LC near the ns loss's scale.
_LECAM_SG2 = {"lecam_weight": 0.01, "lecam_decay": 0.99, "lecam_start_steps": 0}
_SG2_VARIANTS = [  # (suffix, description, fields, paper FIDs per dataset or None)
    ("da", "DiffAugment (color,translation,cutout)", {}, (46.87, 27.08, 12.06, 42.44, 58.85)),
    ("da-kd", "DiffAugment + KD-DLGAN (AGKD + CGKD, CLIP ViT-B/32)", _KD, (31.54, 20.13, 8.93, 32.99, 51.63)),
    ("lecam", "LeCam + DiffAugment", _LECAM_SG2, (33.16, 24.93, 10.16, 34.18, 54.88)),
    ("lecam-kd", "LeCam + DiffAugment + KD-DLGAN", {**_LECAM_SG2, **_KD}, (29.38, 19.65, 8.41, 31.89, 50.22)),
    ("ada", "ADA (bgc, target 0.6)", {**_NO_DA, "ada": "bgc"}, None),
    ("ada-kd", "ADA + KD-DLGAN", {**_NO_DA, "ada": "bgc", **_KD}, None),
    ("apa", "APA (target 0.6)", {**_NO_DA, "apa": True}, None),
    ("apa-kd", "APA + KD-DLGAN", {**_NO_DA, "apa": True, **_KD}, None),
    # InsGen's released code is built on ADA (its contrastive views come from the ADA pipeline)
    ("insgen", "InsGen (ADA bgc + instance discrimination)", _INSGEN, (45.85, 27.48, 12.13, 41.33, 55.12)),
    ("insgen-kd", "InsGen + KD-DLGAN", {**_INSGEN, **_KD}, (38.28, 22.16, 9.51, 32.39, 50.13)),
]


def _stylegan2_fewshot(key: str, suffix: str, what: str, fields: dict[str, Any],
                       fids: tuple[float, ...] | None) -> Preset:
    data, kimg, title, index = _SG2_DATASETS[key]
    return Preset(
        name=f"stylegan2-{key}-{suffix}",
        description=f"StyleGAN2 256px, {what}, {title} ({kimg} kimg)",
        overrides={**_SG2_LOWSHOT, "data": data, "prompts": key, "steps": kimg * 1000 // 16, **fields},
        paper_fid=fids[index] if fids else None,
    )


# ImageNet 64 x 64 with 10%, 5%, 2.5% of the training set (docs/baselines.md): BigGAN at 64 px
# (BigGAN-PyTorch's arch[64], ch 64, no attention) with the BigGAN paper's optimisation (Adam
# G 1e-4, D 4e-4, betas (0, 0.999), 2 D steps, batch 256, EMA 0.9999 from step 20k); data: a
# `kdgan data prepare-imagenet` zip of the subset; evaluation: protocol imagenet.
_IMAGENET64: dict[str, Any] = {
    "arch": "biggan", "resolution": 64, "g_ch": 64, "d_ch": 64, "z_dim": 128, "batch_size": 256,
    "d_steps": 2, "g_lr": 1e-4, "d_lr": 4e-4, "betas": (0.0, 0.999), "adam_eps": 1e-6,
    "ema_decay": 0.9999, "ema_start_steps": 20_000, "steps": 100_000, "eval_protocol": "imagenet",
    "eval_every_steps": 10_000, "sample_every_steps": 2000, "ckpt_every_steps": 2000, "xflip": True,
}
_IMAGENET_VARIANTS = [  # (suffix, description, fields, {pct: (FID, IS)} from the paper)
    ("da", "DiffAugment", {}, {10: (32.82, 12.76)}),
    ("da-kd", "DiffAugment + KD-DLGAN", _KD, {10: (19.99, 14.25)}),
    ("lecam-da", "LeCam + DiffAugment", _LECAM, {}),
    ("lecam-da-kd", "LeCam + DiffAugment + KD-DLGAN", {**_LECAM, **_KD}, {}),
    ("ada", "ADA (bgc, target 0.6)", {"diffaugment": "", "ada": "bgc"}, {}),
    ("ada-kd", "ADA + KD-DLGAN", {"diffaugment": "", "ada": "bgc", **_KD}, {}),
]


def _imagenet64(pct: str, variant: str, what: str, fields: dict[str, Any],
                scores: dict[float, tuple[float, float]]) -> Preset:
    fid, inception_score = scores.get(float(pct), (None, None))
    return Preset(
        name=f"biggan-imagenet64-{pct}pct-{variant}",
        description=f"BigGAN 64px, {what}, ImageNet {pct}% (class-balanced) data",
        overrides={**_IMAGENET64, "data": f"imagenet64-{pct}pct.zip", **fields},
        paper_fid=fid, paper_is=inception_score,
    )


# The CPU demo: a 16-channel BigGAN on the 100 embedded LFW faces, in bfloat16 autocast (1.34x
# the fp32 speed on an AVX-512 BF16 CPU, benchmarks/demo_step.py); 2,000 G steps is where its
# samples become recognisable faces (600, the earlier length, gave face silhouettes with a
# checkerboard texture: docs/kd-evidence.md).
_DEMO: dict[str, Any] = {
    "data": "lfw-faces", "g_ch": 16, "d_ch": 16, "z_dim": 64, "batch_size": 20,
    "d_steps": 2, "g_lr": 5e-4, "d_lr": 5e-4, "steps": 2000, "ema_decay": 0.99,
    "ema_start_steps": 100, "log_every_steps": 50, "sample_every_steps": 500,
    "ckpt_every_steps": 500, "diffaugment": "color,translation,cutout", "precision": "bf16",
}

# The CPU-scale KD evidence (docs/kd-evidence.md): 500 CIFAR-10 training images (50 per class, a
# fixed draw from the 5,000 of cifar10-jpeg-10pct.zip), a 16-channel class-conditional BigGAN,
# DiffAugment translation,cutout; the teacher is a classifier trained on images the GAN never sees.
_CIFAR_CPU: dict[str, Any] = {
    "data_fraction": 0.1, "data_balanced": True, "data_draw": "generator", "g_ch": 16, "d_ch": 16,
    "z_dim": 64, "batch_size": 20, "d_steps": 2, "g_lr": 5e-4, "d_lr": 5e-4, "steps": 2000,
    "ema_decay": 0.999, "ema_start_steps": 200, "log_every_steps": 50, "sample_every_steps": 500,
    "ckpt_every_steps": 500, "diffaugment": "translation,cutout", "eval_protocol": "cifar",
}
_CLASSIFIER_KD = {"teacher": "classifier", "kd": "agkd,cgkd"}

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset("cifar10-cpu-da", "CPU-scale evidence: 500 CIFAR-10 images (--data cifar10-jpeg-10pct.zip), "
               "16-channel BigGAN, DiffAugment", _CIFAR_CPU),
        Preset("cifar10-cpu-da-kd", "the same + KD-DLGAN (AGKD + CGKD) from a classifier teacher "
               "(--teacher-weights DIR of `kdgan teacher train`)", {**_CIFAR_CPU, **_CLASSIFIER_KD}),
        Preset("demo", "Few-minute CPU demo on the embedded 100 LFW faces (small BigGAN, 32 px), no KD",
               _DEMO),
        Preset(
            "demo-kd",
            "The demo with KD-DLGAN: AGKD from the offline TF Inception-v3 teacher (add --teacher clip "
            "for CLIP with AGKD + CGKD when its weights are present)",
            # the Inception teacher at 75 px (its smallest input; the faces are 25 px; `resolve`
            # drops it for another --teacher) on every 4th D step, with the paper's distances: the
            # released per-sample norm (l2) makes this 16-channel D stop discriminating
            # (docs/kd-evidence.md)
            {
                **_DEMO, "teacher": "inception", "kd": "auto", "clip_on": "clean", "kd_every": 4,
                "agkd_distance": "l1", "cgkd_distance": "l1", "teacher_resolution": 75,
            },
        ),
        Preset(
            "tiny",
            "Smallest useful network, for tests and smoke runs",
            {
                "g_ch": 4, "d_ch": 4, "z_dim": 8, "batch_size": 8, "d_steps": 2, "steps": 4,
                "ema_start_steps": 2, "log_every_steps": 1, "sample_every_steps": 2,
                "ckpt_every_steps": 2,
            },
        ),
        Preset(
            "stylegan2-tiny",
            "Smallest StyleGAN2 (64 px, few channels), for tests and smoke runs",
            {
                **_SG2_LOWSHOT, "resolution": 64, "z_dim": 32, "w_dim": 32, "channel_base": 512,
                "channel_max": 32, "batch_size": 8, "steps": 4, "r1_every": 2, "pl_every": 2,
                "ema_start_steps": 2, "log_every_steps": 1, "sample_every_steps": 2, "ckpt_every_steps": 2,
                "eval_every_steps": 0,
            },
        ),
        *(_biggan_cifar(ds, pct, *variant) for variant in _VARIANTS
          for ds in ("cifar10", "cifar100") for pct in (100, 20, 10)),
        *(_biggan_cifar(ds, 10, *variant) for variant in _KD_BASELINES for ds in ("cifar10", "cifar100")),
        *(_stylegan2_fewshot(key, *variant) for key in _SG2_DATASETS for variant in _SG2_VARIANTS),
        *(_imagenet64(pct, *variant) for variant in _IMAGENET_VARIANTS for pct in ("10", "5", "2.5")),
    ]
}


COMPRESS_METHODS = ("akdg", "mse", "mse+adv", "vanilla")

# Defaults of `kdgan compress` (AKDG, METHOD.md section 3: non-saturating loss + R1 gamma 10 for
# both discriminators, lambda = 1); the teacher fixes z_dim, classes and resolution.
COMPRESS_DEFAULTS: dict[str, Any] = {
    "loss": "ns", "r1_gamma": 10.0, "diffaugment": "", "d_steps": 1, "batch_size": 64,
    "g_lr": 2e-4, "d_lr": 2e-4, "betas": (0.0, 0.99), "ema_decay": 0.999, "ema_start_steps": 1000,
    "steps": 50_000, "sample_every_steps": 1000, "ckpt_every_steps": 2000,
}


TEACHERS = ("clip", "inception", "classifier", "clip-tiny-random", "clip-random", "blip",
            "blip-tiny-random")  # teachers by name
TEACHER_FAMILIES = ("torchvision", "timm")  # image-only teachers named FAMILY:MODEL
# teachers with text (or class) embeddings, so CGKD; the classifier's are its class vectors
TEXT_TEACHERS = ("clip", "classifier", "clip-tiny-random", "clip-random", "blip", "blip-tiny-random")
CLIP_TEACHERS = ("clip", "clip-tiny-random", "clip-random")  # open_clip models (vision-aided backbones)
# Distillation terms: KD-DLGAN's AGKD and CGKD; plainkd = AGKD's L_KD without the swapped targets
# ("DA + KD (CLIP)"); fitnets, ld, pkd, spkd = the other methods of Discussion 1.
KD_TERMS = ("agkd", "cgkd", "plainkd", "fitnets", "ld", "pkd", "spkd")
TEXT_TERMS = ("cgkd", "ld")  # terms that need the teacher's text features of the prompts


def is_teacher_name(name: str) -> bool:
    """A teacher `build_teacher` knows: one of TEACHERS, or FAMILY:MODEL for a TEACHER_FAMILIES member."""
    family, _, model = name.partition(":")
    return name in TEACHERS or (family in TEACHER_FAMILIES and bool(model))
MODEL_TEACHERS = ("clip", "clip-random")  # teachers whose network `teacher_model` names
DEFAULT_TEACHER_MODEL = "ViT-B-32"


def kd_terms(cfg: TrainConfig) -> list[str]:
    """The distillation terms in use: [] without a teacher, else the names listed in `kd`;
    `auto` is AGKD + CGKD with a text teacher and AGKD alone with an image-only one."""
    if not cfg.teacher:
        return []
    if cfg.kd.strip() == "auto":
        return ["agkd", "cgkd"] if cfg.teacher in TEXT_TEACHERS else ["agkd"]
    return [t.strip() for t in cfg.kd.split(",") if t.strip()]


def field_names() -> list[str]:
    """Names of all TrainConfig fields."""
    return [f.name for f in fields(TrainConfig)]


def _coerce(name: str, value: Any) -> Any:
    """Convert a value (possibly a command-line string) to the type of field `name`."""
    default = getattr(TrainConfig(), name)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v]
            return tuple(float(v) for v in value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise KdganError(
            f"config field {name!r} expects a {type(default).__name__}, got {value!r}"
        ) from None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check value ranges; raise KdganError naming the field and the fix."""
    checks = [
        (0 < cfg.data_fraction <= 1, "data_fraction must be in (0, 1], e.g. 0.1 for 10%"),
        (cfg.batch_size >= 1, "batch_size must be at least 1"),
        (cfg.d_steps >= 1, "d_steps must be at least 1"),
        (cfg.steps >= 1, "steps must be at least 1"),
        (cfg.arch == "stylegan2" or cfg.resolution in (32, 64),
         "resolution must be 32 or 64 for the BigGAN networks (StyleGAN2: a power of two, 8 to 1024)"),
        (cfg.arch != "stylegan2"
         or (8 <= cfg.resolution <= 1024 and not cfg.resolution & (cfg.resolution - 1)),
         f"resolution {cfg.resolution} is not available for stylegan2; use a power of two from 8 to 1024"),
        (cfg.loss in ("hinge", "ns"), f"loss must be hinge or ns, not {cfg.loss!r}"),
        (cfg.precision in ("fp32", "bf16", "fp16"), "precision must be fp32, bf16 or fp16"),
        (cfg.arch in ("biggan", "stylegan2", "dcgan", "mlp"),
         f"arch {cfg.arch!r} is not available; use biggan, stylegan2, dcgan or mlp"),
        (min(cfg.w_dim, cfg.channel_base, cfg.channel_max, cfg.mapping_layers, cfg.mbstd_group) >= 1,
         "w_dim, channel_base, channel_max, mapping_layers and mbstd_group must be at least 1"),
        (min(cfg.d_channel_base, cfg.d_channel_max) >= 0,
         "d_channel_base and d_channel_max must be at least 0 (0: the same as G's)"),
        (cfg.r1_every >= 1 and cfg.pl_every >= 1 and cfg.pl_batch_shrink >= 1,
         "r1_every, pl_every and pl_batch_shrink must be at least 1"),
        (0 <= cfg.style_mixing <= 1, "style_mixing is a probability in [0, 1]"),
        (cfg.pl_weight >= 0 and 0 < cfg.pl_decay <= 1, "pl_weight >= 0 and pl_decay in (0, 1]"),
        (cfg.arch == "stylegan2" or (cfg.style_mixing == 0 and cfg.pl_weight == 0),
         "style_mixing and pl_weight need the StyleGAN2 generator; "
         "use --set arch=stylegan2 or set them to 0"),
        (0 <= cfg.ada_target < 1 and 0 <= cfg.ada_p <= 1 and 0 <= cfg.apa_target < 1,
         "ada_target and apa_target must be in [0, 1) (0.6 in the papers), ada_p in [0, 1]"),
        (cfg.ada_kimg > 0 and cfg.ada_every >= 1, "ada_kimg must be > 0 and ada_every >= 1"),
        (not ((cfg.apa or cfg.ada) and cfg.compress_teacher),
         "ADA and APA are for GAN training, not generator compression; drop --set ada / apa"),
        (cfg.g_ch >= 1 and cfg.d_ch >= 1, "g_ch and d_ch must be at least 1"),
        (cfg.vision_aided in ("", *CLIP_TEACHERS),
         f"vision_aided must be clip, clip-tiny-random or clip-random (or empty), not {cfg.vision_aided!r}"),
        (not (cfg.vision_aided and cfg.compress_teacher),
         "the vision-aided D is for GAN training, not generator compression; drop --set vision_aided"),
        (cfg.vision_aided_warmup >= 0, "vision_aided_warmup must be >= 0 (G steps)"),
        (not (cfg.insgen and cfg.compress_teacher),
         "InsGen is for GAN training, not generator compression; drop --set insgen"),
        (cfg.insgen_queue >= 0 and cfg.insgen_temperature > 0 and 0 <= cfg.insgen_momentum < 1
         and min(cfg.insgen_real_weight, cfg.insgen_fake_weight, cfg.insgen_g_weight, cfg.insgen_noise) >= 0,
         "insgen_queue >= 0 (0 = 5% of the data), insgen_temperature > 0, insgen_momentum in [0, 1), "
         "InsGen weights and insgen_noise >= 0"),
        (cfg.r1_gamma >= 0, "r1_gamma must be >= 0 (0 turns R1 off)"),
        (cfg.compress_method in COMPRESS_METHODS,
         f"compress_method must be one of {', '.join(COMPRESS_METHODS)}, not {cfg.compress_method!r}"),
        (cfg.akdg_weight >= 0 and 0 <= cfg.mse_alpha <= 1, "akdg_weight >= 0 and mse_alpha in [0, 1]"),
        (not (cfg.compress_teacher and cfg.teacher),
         "KD-DLGAN (teacher) and generator compression (compress_teacher) cannot be combined in one run"),
        (0 <= cfg.ema_decay < 1, "ema_decay must be in [0, 1)"),
        (min(cfg.log_every_steps, cfg.sample_every_steps, cfg.ckpt_every_steps) >= 1,
         "log/sample/ckpt intervals must be at least 1 step"),
        (cfg.keep_ckpts >= 1, "keep_ckpts must be at least 1"),
        (cfg.ckpt_every_minutes >= 0, "ckpt_every_minutes must be >= 0 (0 turns time-based checkpoints off)"),
        (cfg.eval_every_steps >= 0, "eval_every_steps must be >= 0 (0 turns evaluation off)"),
        (cfg.eval_metric in ("fid", "kid"), "eval_metric must be fid or kid"),
        (cfg.eval_protocol != "custom" or cfg.eval_num_gen > 0,
         "eval_protocol custom needs eval_num_gen > 0"),
        (cfg.lecam_weight >= 0 and 0 <= cfg.lecam_decay < 1, "lecam_weight >= 0, lecam_decay in [0, 1)"),
        (cfg.teacher == "" or is_teacher_name(cfg.teacher),
         f"teacher must be {', '.join(TEACHERS)}, torchvision:MODEL or timm:MODEL, not {cfg.teacher!r}"),
        (cfg.teacher_resolution == 0 or (cfg.teacher_resolution > 0
                                         and (":" in cfg.teacher or cfg.teacher == "inception")),
         "teacher_resolution is the input size of a torchvision:/timm: or inception teacher "
         "(0 = its default)"),
        (cfg.lecam_start_steps >= 0 and cfg.lecam_warmup in ("g-steps", "d-updates"),
         "lecam_start_steps must be >= 0 and lecam_warmup g-steps or d-updates"),
        (cfg.lazy_reg in ("separate", "fused"), "lazy_reg must be separate or fused"),
        (cfg.compile_mode in ("default", "reduce-overhead", "max-autotune"),
         "compile_mode must be default, reduce-overhead or max-autotune"),
        (cfg.teacher_dtype in ("auto", "fp32", "fp16", "bf16"),
         "teacher_dtype must be auto, fp32, fp16 or bf16"),
        (cfg.memory_format in ("auto", "channels_last", "contiguous"),
         "memory_format must be auto, channels_last or contiguous"),
        (cfg.data_draw in ("released", "generator"), "data_draw must be released or generator"),
        (cfg.ema_bn_mode in ("batch", "running", "standing") and cfg.ema_bn_batch >= 1,
         "ema_bn_mode must be batch, running or standing, and ema_bn_batch at least 1"),
        (set(kd_terms(cfg)) <= set(KD_TERMS), f"kd terms are {', '.join(KD_TERMS)}, not {cfg.kd!r}"),
        (min(cfg.fitnets_weight, cfg.ld_weight, cfg.pkd_weight, cfg.spkd_weight) >= 0
         and cfg.ld_temperature > 0, "fitnets/ld/pkd/spkd weights must be >= 0 and ld_temperature > 0"),
        (cfg.teacher in MODEL_TEACHERS or not cfg.teacher_model,
         f"teacher_model names the open_clip network of --teacher clip or clip-random; the "
         f"{cfg.teacher or 'absent'} teacher has none, so drop --teacher-model"),
        (cfg.agkd_distance in ("l2", "l1"), "agkd_distance must be l2 or l1"),
        (cfg.kd_every >= 1, "kd_every must be at least 1 (1 = KD on every D step)"),
        (cfg.kd_trunk_grad or bool(cfg.teacher),
         "kd_trunk_grad=false stops KD's gradient at D's trunk, but there is no KD without a teacher; "
         "add --teacher or drop kd_trunk_grad"),
        (cfg.kd_target_norm in ("none", "rms", "standard"), "kd_target_norm must be none, rms or standard"),
        (0 <= cfg.agkd_p <= 1, "agkd_p must be in [0, 1]"),
        (cfg.cgkd_norm in ("row", "frobenius"), "cgkd_norm must be row or frobenius"),
        (cfg.cgkd_distance in ("sq_sum", "l1"), "cgkd_distance must be sq_sum or l1"),
        (cfg.clip_input in ("official", "normalized"), "clip_input must be official or normalized"),
        (cfg.clip_on in ("augmented", "clean"), "clip_on must be augmented or clean"),
        (cfg.pd_mode in ("off", "generator"), "pd_mode must be off or generator"),
        (not (cfg.teacher and cfg.teacher not in TEXT_TEACHERS
              and (set(TEXT_TERMS) & set(kd_terms(cfg)) or cfg.pd_mode != "off")),
         f"CGKD, label distillation (ld) and pairwise diversity need text features, and the {cfg.teacher} "
         f"teacher is image-only; use --kd agkd (and pd_mode off) with --teacher {cfg.teacher}, or "
         "--teacher clip or classifier"),
    ]
    for ok, message in checks:
        if not ok:
            raise KdganError(f"invalid config: {message}{_flag_hint(message)}")
    from kdgan.augment import parse_policy
    from kdgan.augment.ada import parse_ops

    parse_policy(cfg.diffaugment)
    parse_policy(cfg.vision_aided_policy)
    parse_ops(cfg.ada)
    return cfg


def closest(name: str, choices, lister: str) -> str:
    """'did you mean X? `lister` lists all N' for an unknown name (or just the lister)."""
    import difflib

    choices = list(choices)
    near = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    head = f"did you mean {' or '.join(near)}? " if near else ""
    return f"{head}`{lister}` lists all {len(choices)}"


# `kdgan train`'s own flags; every other field is set with --set FIELD=VALUE
TRAIN_FLAGS = ("data", "steps", "batch_size", "device", "seed", "precision", "resolution", "split",
               "data_fraction", "teacher", "teacher_model", "teacher_weights", "kd", "prompts")


def _flag_hint(message: str) -> str:
    """' (flag --steps)' / ' (--set lecam_decay=...)': where to change the fields a check names."""
    if "--" in message:  # the message already says which flag to change
        return ""
    names = set(field_names())
    named = list(dict.fromkeys(w for w in (w.strip(",.:;()'") for w in message.split()) if w in names))
    if not named:
        return ""
    where = [f"flag --{n.replace('_', '-')}" if n in TRAIN_FLAGS else f"--set {n}=..." for n in named[:3]]
    return f" ({', '.join(where)})"


def resolve(preset: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Build a config from a preset name and field overrides (command-line values win)."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise KdganError(f"unknown preset {preset!r}; {closest(preset, PRESETS, 'kdgan presets')}")
        values.update(PRESETS[preset].overrides)
        # a preset's input size for its own teacher does not carry over to another teacher
        # (demo-kd --teacher clip): dropped unless given on the command line
        if (overrides.get("teacher") not in (None, values.get("teacher"))
                and overrides.get("teacher_resolution") is None):
            values.pop("teacher_resolution", None)
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("teacher") in MODEL_TEACHERS and not values.get("teacher_model"):
        values["teacher_model"] = DEFAULT_TEACHER_MODEL  # recorded as used, not left implicit
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        hints = "; ".join(f"{u}: {closest(u, field_names(), 'kdgan train --preset P --dry-run')}"
                          for u in unknown)
        raise KdganError(f"unknown config field(s) {', '.join(unknown)} ({hints} with their values)")
    return validate(TrainConfig(**{k: _coerce(k, v) for k, v in values.items()}))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """JSON-friendly dict of a config."""
    d = dataclasses.asdict(cfg)
    d["betas"] = list(cfg.betas)
    return d


def upgrade(d: dict[str, Any]) -> dict[str, Any]:
    """A saved config dict in the current conventions: earlier versions wrote teacher_model
    ViT-B-32 for teachers that have no model choice (none, inception, clip-tiny-random)."""
    d = dict(d)
    if d.get("teacher", "") not in MODEL_TEACHERS:
        d["teacher_model"] = ""
    return d


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved by `to_dict` (unknown keys from newer versions are an error)."""
    return resolve(None, upgrade(d))


def dumps(cfg: TrainConfig) -> str:
    """The config as indented JSON."""
    return json.dumps(to_dict(cfg), indent=2)
