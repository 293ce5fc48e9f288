"""The training loop: D steps, a G step, EMA; logging, samples, checkpoints, resume, export."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from kdgan import config as config_lib
from kdgan.augment import DiffAugment
from kdgan.augment.ada import AdaptiveP, ADAugment, Augment
from kdgan.config import TrainConfig
from kdgan.data import ImageSet, load_images, select_subset, to_model_range, to_uint8
from kdgan.errors import KdganError, TrainingDiverged
from kdgan.losses.insgen import InsGen, default_queue_size, lazy_ratio
from kdgan.losses.kd_dlgan import TeacherFeatureNorm
from kdgan.losses.regularizers import LeCam, PathLengthPenalty
from kdgan.nets import build_discriminator, build_generator, save_generator
from kdgan.nets.layers import init_normal_002, recompute_standing_statistics, sn_linear
from kdgan.nets.vision_aided import VisionAidedD
from kdgan.teachers import build_teacher
from kdgan.teachers.prompts import resolve_prompts
from kdgan.training.checkpoint import FORMAT, CheckpointManager
from kdgan.training.ema import ema_decay_at, update_ema
from kdgan.training.graphs import StepGraphs
from kdgan.training.graphs import blockers as graph_blockers
from kdgan.training.lock import run_lock
from kdgan.training.monitor import RunMonitor, save_image_grid
from kdgan.training.objectives import (
    Discriminators,
    DistillObjective,
    GANObjective,
    KDSettings,
    Regularization,
)
from kdgan.utils.dist import (
    average_gradients,
    broadcast_module,
    init_distributed,
    params_checksum,
    resolve_device,
)
from kdgan.utils.seed import get_rng_state, seed_all, set_rng_state

log = logging.getLogger(__name__)

# Real data below this size is kept on the GPU, so batches are gathered there.
_GPU_DATA_BYTES = 2 << 30
_clock = time.monotonic  # wall clock of the time-based checkpoints (tests replace it)


def _cpu_has_fast_bf16() -> bool:
    """Whether oneDNN runs bfloat16 natively on this CPU (else it is emulated, often slower)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def compute_setting(device: torch.device, world_size: int) -> dict[str, Any]:
    """What decides the floating-point order of a run besides its config and seed: the same config
    and seed reproduce a run bit for bit only where these are equal (the CPU thread count changes
    how reductions split, and a GAN amplifies the last bit within a few steps)."""
    return {"torch": str(torch.__version__), "device": device.type, "world_size": world_size,
            "cpu_threads": torch.get_num_threads(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_bf16": _cpu_has_fast_bf16(),
            "gpu": str(torch.cuda.get_device_name(device)) if device.type == "cuda" else ""}


_TEACHER_DTYPES = {"auto": None, "fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_FUSED_ADAM_DEVICES = ("cpu", "cuda")  # where torch has a fused Adam
# What checkpoints written before a compute key existed ran with (kdgan's earlier implementation).
_COMPUTE_BEFORE = {"adam": "default", "memory_format": "contiguous", "cuda_graphs": False}


def describe_compute_change(saved: dict[str, Any], now: dict[str, Any]) -> str:
    """'' when a resumed run continues in the setting it was saved in, else what changed."""
    if saved:
        saved = {**_COMPUTE_BEFORE, **saved}
        if "teacher_dtype" not in saved:  # before teacher_dtype: half on a GPU, fp32 on a CPU
            saved["teacher_dtype"] = "float16" if saved.get("device") == "cuda" else "float32"
    keys = ["torch", "device", "world_size", "gpu", "adam", "memory_format", "cuda_graphs",
            "teacher_dtype"] + (
        ["cpu_threads", "cpu_capability", "cpu_bf16"] if now.get("device") == "cpu" else [])
    return "; ".join(f"{k} {saved[k]!r} -> {now[k]!r}" for k in keys
                     if k in saved and k in now and saved[k] != now[k])


def memory_format_of(cfg: TrainConfig) -> str:
    """The activation layout of a run's G and D, channels_last or contiguous (config field
    memory_format; auto: channels_last except for StyleGAN2)."""
    if cfg.memory_format == "auto":
        return "contiguous" if cfg.arch == "stylegan2" else "channels_last"
    return cfg.memory_format


def adam(params, device: torch.device, **kwargs: Any) -> torch.optim.Adam:
    """Adam with torch's fused implementation where torch has one (on CUDA one kernel for all
    parameters; on the CPU a vectorised kernel per parameter): the same update to float rounding,
    without a host read of the step count per parameter."""
    betas = kwargs.pop("betas")
    return torch.optim.Adam(params, betas=(float(betas[0]), float(betas[1])),
                            fused=device.type in _FUSED_ADAM_DEVICES or None, **kwargs)


def load_adam_state(opt: torch.optim.Adam, state: dict[str, Any]) -> None:
    """`opt.load_state_dict(state)`, then the implementation and layout of this run: the saved
    param groups bring back the saving run's `fused` flag (None before kdgan used the fused
    Adam), and the moments come back in the layout they were saved in, which the fused kernel
    reads as if it were the parameter's (a run resumed with another memory_format would take
    wrong steps on the CPU and fail on CUDA)."""
    fused = opt.defaults.get("fused")
    opt.load_state_dict(state)
    for group in opt.param_groups:
        group["fused"] = fused
        if fused:
            group["foreach"] = None
        for p in group["params"]:
            st = opt.state.get(p, {})
            for key, value in st.items():
                if not isinstance(value, torch.Tensor):
                    continue
                if key == "step":
                    st[key] = value.to(dtype=torch.float32, device=p.device) if fused else value
                elif value.shape == p.shape:
                    st[key] = torch.empty_like(p).copy_(value)


def load_training_set(cfg: TrainConfig) -> ImageSet:
    """The images a config trains on: the source at `resolution`, then the configured subset."""
    ds, skipped = load_images(cfg.data, split=cfg.split, resolution=cfg.resolution)
    for name, reason in skipped[:20]:
        log.warning("skipped %s: %s", name, reason)
    if len(skipped) > 20:
        log.warning("... and %d more unreadable files", len(skipped) - 20)
    indices = select_subset(len(ds), cfg.data_fraction, cfg.data_seed, ds.labels, cfg.data_balanced,
                            cfg.data_draw)
    if (cfg.data_fraction < 1 and cfg.data_draw == "released" and len(ds) == 50_000
            and ds.meta.get("order") != "cifar-original"):
        log.warning("the released code draws its CIFAR subset over the original image order (the "
                    "CIFAR python archives, e.g. --data cifar10); %s is in another order, so this "
                    "is a different random subset than the paper's", cfg.data)
    return ds.take(indices)


def lazy_adam_settings(cfg: TrainConfig, net: str) -> tuple[float, tuple[float, float]]:
    """Adam lr and betas of G or D: with lazy regularisation in separate steps (lazy_reg =
    separate, every k > 1 steps), lr x k / (k + 1) and betas ^ (k / (k + 1)) as stylegan2-ada,
    since k main steps then take k + 1 optimiser steps; else the configured values."""
    lr = cfg.g_lr if net == "G" else cfg.d_lr
    if net == "G":
        lazy = cfg.pl_weight > 0 and cfg.pl_every > 1
        every = cfg.pl_every
    else:
        lazy = cfg.r1_gamma > 0 and cfg.r1_every > 1 and not cfg.compress_teacher
        every = cfg.r1_every
    if cfg.lazy_reg != "separate" or not lazy:
        return lr, cfg.betas
    ratio = every / (every + 1)
    return lr * ratio, (cfg.betas[0] ** ratio, cfg.betas[1] ** ratio)


def net_configs(cfg: TrainConfig, c_dim: int, kd_dim: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Config dicts of G and D for a run: StyleGAN2 G and D (D's widths may differ from G's,
    as for a narrowed StyleGAN2 student), or a BigGAN / DCGAN / MLP G with the BigGAN
    projection D (the DCGAN and MLP AKDG students are judged by a BigGAN D)."""
    if cfg.arch == "stylegan2":
        common = {"arch": "stylegan2", "c_dim": c_dim, "img_resolution": cfg.resolution}
        g = {**common, "channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
             "z_dim": cfg.z_dim, "w_dim": cfg.w_dim, "mapping_layers": cfg.mapping_layers}
        d = {**common, "channel_base": cfg.d_channel_base or cfg.channel_base,
             "channel_max": cfg.d_channel_max or cfg.channel_max, "kd_dim": kd_dim,
             "mbstd_group": cfg.mbstd_group}
        return g, d
    g = {"arch": cfg.arch, "z_dim": cfg.z_dim, "c_dim": c_dim, "img_resolution": cfg.resolution,
         "ch": cfg.g_ch, "bn_mode": cfg.ema_bn_mode, "bn_batch": cfg.ema_bn_batch}
    d = {"arch": "biggan", "c_dim": c_dim, "img_resolution": cfg.resolution, "ch": cfg.d_ch, "kd_dim": kd_dim}
    return g, d


class Trainer:
    """Owns G, D, G_ema, optimisers, data and the step counter; `run()` trains to `cfg.steps`."""

    def __init__(self, cfg: TrainConfig, run_dir: str | Path, dataset: ImageSet | None = None):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.device, int(os.environ.get("LOCAL_RANK", "0")))
        self.info = init_distributed(self.device.type)
        self.compute = compute_setting(self.device, self.info.world_size)  # fixed for the process
        if cfg.batch_size % self.info.world_size:
            raise KdganError(
                f"batch_size {cfg.batch_size} is not divisible by the {self.info.world_size} "
                "processes; choose a multiple of the process count"
            )
        self.local_batch = cfg.batch_size // self.info.world_size

        self.dataset = dataset if dataset is not None else load_training_set(cfg)
        if len(self.dataset) < cfg.batch_size:
            raise KdganError(
                f"the data has {len(self.dataset)} images, fewer than one batch of {cfg.batch_size}; "
                f"use --batch-size {len(self.dataset)} or less, or more data"
            )
        self.data_hash = self.dataset.content_hash()
        use_labels = cfg.conditional and self.dataset.labels is not None
        self.c_dim = self.dataset.num_classes if use_labels else 0
        self.cfg = cfg = dataclasses.replace(cfg, conditional=use_labels)  # record what is used

        self.G_teacher, self.G_teacher_sha256 = None, ""  # compression: frozen, never saved
        if cfg.compress_teacher:
            from kdgan.compress import check_teacher_fits, load_teacher_generator

            self.G_teacher, self.G_teacher_sha256 = load_teacher_generator(cfg.compress_teacher, self.device)
            check_teacher_fits(self.G_teacher, cfg, self.dataset)
            self.c_dim = self.G_teacher.c_dim
            use_labels = self.c_dim > 0
            self.cfg = cfg = dataclasses.replace(cfg, conditional=use_labels)

        self.teacher = None  # frozen; never in an optimiser or a checkpoint
        if config_lib.kd_terms(cfg):
            self.teacher = build_teacher(cfg.teacher, cfg.teacher_model, cfg.teacher_weights,
                                         cfg.clip_input, self.device, use_compile=cfg.teacher_compile,
                                         resolution=cfg.teacher_resolution,
                                         dtype=_TEACHER_DTYPES[cfg.teacher_dtype])
            self.compute["teacher_dtype"] = str(self.teacher.dtype).removeprefix("torch.")
        seed_all(cfg.seed)  # identical initialisation on every rank
        g_config, d_config = net_configs(cfg, self.c_dim, self.teacher.dim if self.teacher else 0)
        if cfg.arch == "stylegan2" and self.local_batch % d_config["mbstd_group"]:
            raise KdganError(
                f"the per-process batch {self.local_batch} is not a multiple of mbstd_group "
                f"{cfg.mbstd_group}; choose a batch size that is, or --set mbstd_group=1"
            )
        self.G = build_generator(g_config).to(self.device)
        if self.G_teacher is None:
            self.D = build_discriminator(d_config).to(self.device)
        else:  # D_S and/or D_KD, both with the data discriminator's architecture
            roles = DistillObjective.MEMBERS[cfg.compress_method]
            self.D = Discriminators({r: build_discriminator(d_config) for r in roles}).to(self.device)
        if not cfg.kd_trunk_grad and getattr(self.D, "kd_head", None) is not None:
            # the head sees D's pooled features detached: KD fits the head without moving the trunk
            self.D.kd_head.register_forward_pre_hook(lambda _module, args: tuple(a.detach() for a in args))
        self.compute["memory_format"] = memory_format_of(cfg)
        if self.compute["memory_format"] == "channels_last":  # weights in NHWC: activations follow
            self.G.to(memory_format=torch.channels_last)
            self.D.to(memory_format=torch.channels_last)
        broadcast_module(self.G, self.info)
        broadcast_module(self.D, self.info)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        # torch.compile'd views of G and D (same parameters) for the plain passes; R1 and path
        # length need second derivatives, which compiled graphs do not give, so they stay eager.
        self.G_fast, self.D_fast = self.G, self.D
        if cfg.compile:
            mode = None if cfg.compile_mode == "default" else cfg.compile_mode
            self.G_fast, self.D_fast = torch.compile(self.G, mode=mode), torch.compile(self.D, mode=mode)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
        g_lr, g_betas = lazy_adam_settings(cfg, "G")
        self.opt_G = adam(self.G.parameters(), self.device, lr=g_lr, betas=g_betas, eps=cfg.adam_eps)
        self.opt_D = None  # MSE distillation trains no discriminator
        if any(True for _ in self.D.parameters()):
            d_lr, d_betas = lazy_adam_settings(cfg, "D")
            self.opt_D = adam(self.D.parameters(), self.device, lr=d_lr, betas=d_betas, eps=cfg.adam_eps)
        self.compute["adam"] = "fused" if self.opt_G.defaults["fused"] else "default"
        self.ada_p = self.apa_p = None  # adaptive probabilities (state of the objective)
        p_max = 1.0 if cfg.ada_p_cap else None
        if cfg.ada:
            self.ada_p = AdaptiveP(cfg.ada_target, cfg.batch_size, cfg.ada_every, cfg.ada_kimg, cfg.ada_p,
                                   p_max)
        if cfg.apa:
            self.apa_p = AdaptiveP(cfg.apa_target, cfg.batch_size, cfg.ada_every, cfg.ada_kimg, p_max=p_max)
        for control in (self.ada_p, self.apa_p):
            if control is not None:
                control.to(self.device)
        self.augment = Augment(DiffAugment(cfg.diffaugment),
                               ADAugment(cfg.ada, self.ada_p) if cfg.ada else None)
        self.objective = self._build_objective()
        # Trainable modules outside D that D's loss trains (heads of LD, InsGen, vision-aided D),
        # built under the same seed on every rank; groups without an lr take D's lr and betas.
        aux_groups = self.objective.param_groups()
        self.aux_params = [p for g in aux_groups for p in g["params"]]
        self.opt_aux = None
        if self.aux_params:
            self.opt_aux = adam(aux_groups, self.device, lr=cfg.d_lr, betas=cfg.betas, eps=cfg.adam_eps)
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
        if cfg.precision == "bf16" and self.device.type == "cpu" and not self.compute["cpu_bf16"]:
            log.warning("precision bf16 on a CPU without native bfloat16 (AVX-512 BF16 / AMX) may be "
                        "slower than fp32; add --set precision=fp32 if the steps are slow")
        self.scalers = {k: torch.amp.GradScaler(self.device.type, enabled=cfg.precision == "fp16")
                        for k in ("G", "D")}
        seed_all(cfg.seed + self.info.rank)  # per-rank stream for sampling and augmentation

        images = torch.from_numpy(self.dataset.images).permute(0, 3, 1, 2).contiguous()
        on_gpu = self.device.type == "cuda" and images.numel() < _GPU_DATA_BYTES
        self.images = images.to(self.device) if on_gpu else images
        labels = self.dataset.labels if use_labels else np.zeros(len(self.dataset), np.int64)
        self.labels = torch.from_numpy(labels).to(self.images.device)
        self._perms: dict[int, torch.Tensor] = {}
        self._clean_features: torch.Tensor | None = None  # clip_on = clean: teacher features per image
        self._clean_known: torch.Tensor | None = None
        self.step = 0
        self.ckpts = CheckpointManager(self.run_dir / "checkpoints", cfg.keep_ckpts)
        self._stop = threading.Event()
        self._eval: tuple | None = None  # (protocol, extractor, reference features), built lazily
        self.graphs: StepGraphs | None = None  # cuda_graphs: the steps as replayed CUDA graphs
        if cfg.cuda_graphs:
            why = graph_blockers(self)
            if why:
                log.warning("cuda_graphs: the steps run without CUDA graphs: %s", "; ".join(why))
            else:
                self.graphs = StepGraphs(self)
        self.compute["cuda_graphs"] = self.graphs is not None

    # ------------------------------------------------------------------ objectives
    def _build_objective(self) -> GANObjective | DistillObjective:
        """The GAN game (with LeCam, R1 and KD-DLGAN as configured), or AKDG when compressing."""
        cfg = self.cfg
        if self.G_teacher is not None:
            return DistillObjective(cfg.compress_method, self.G_teacher, cfg.loss, self.augment, cfg.z_dim,
                                    self.c_dim, cfg.akdg_weight, cfg.mse_alpha, cfg.r1_gamma)
        lecam = None
        if cfg.lecam_weight > 0:
            lecam = LeCam(cfg.lecam_decay, cfg.lecam_start_steps, cfg.lecam_rectified, cfg.lecam_warmup,
                          cfg.d_steps).to(self.device)
        reg = Regularization(
            r1_gamma=cfg.r1_gamma, r1_every=cfg.r1_every,
            pl=PathLengthPenalty(cfg.pl_decay).to(self.device) if cfg.pl_weight > 0 else None,
            pl_weight=cfg.pl_weight, pl_every=cfg.pl_every, pl_batch_shrink=cfg.pl_batch_shrink,
            style_mixing=cfg.style_mixing, ada=self.ada_p, apa=self.apa_p,
            separate=cfg.lazy_reg == "separate")
        return GANObjective(cfg.loss, self.augment, cfg.z_dim, self.c_dim, lecam, cfg.lecam_weight,
                            self._kd_settings(), reg=reg, insgen=self._insgen(),
                            vision_aided=self._vision_aided())

    def _vision_aided(self) -> VisionAidedD | None:
        """The vision-aided D: the teacher's CLIP (or one loaded for it) + a trainable head."""
        cfg = self.cfg
        if not cfg.vision_aided:
            return None
        # fp32 as released (G's gradient passes through it), unless vision_aided_half; the KD
        # teacher (fp16 on CUDA: its features are only targets) is shared when its dtype agrees
        half = cfg.vision_aided_half and self.device.type == "cuda"
        backbone = self.teacher
        if (backbone is None or cfg.teacher != cfg.vision_aided
                or backbone.dtype != (torch.float16 if half else torch.float32)):
            backbone = build_teacher(cfg.vision_aided, cfg.teacher_model, cfg.teacher_weights, "official",
                                     self.device, half=half)
        log.info("vision-aided D on %s, on after %d G steps", backbone.name, cfg.vision_aided_warmup)
        return VisionAidedD(backbone, self.c_dim, cfg.vision_aided_policy,
                            "relu" if cfg.arch != "stylegan2" else "lrelu", cfg.vision_aided_warmup,
                            cfg.d_steps).to(self.device)

    def _insgen(self) -> InsGen | None:
        """InsGen's momentum D and contrastive heads (queues of 5% of the data by default)."""
        cfg = self.cfg
        if not cfg.insgen:
            return None
        queue = cfg.insgen_queue or default_queue_size(len(self.dataset), cfg.xflip)
        log.info("InsGen: queues of %d keys, temperature %g, momentum %g", queue, cfg.insgen_temperature,
                 cfg.insgen_momentum)
        # The heads' Adam takes the lazy ratio of D's / G's regularisation interval whether or not
        # that regulariser is on, as InsGen's training loop builds them (its intervals are always set).
        d_ratio, g_ratio = lazy_ratio(cfg.r1_every), lazy_ratio(cfg.pl_every)
        return InsGen(
            self.D, queue, cfg.insgen_temperature, cfg.insgen_momentum, cfg.insgen_real_weight,
            cfg.insgen_fake_weight, cfg.insgen_g_weight, cfg.insgen_noise,
            d_opt=(cfg.d_lr * d_ratio, tuple(b**d_ratio for b in cfg.betas)),
            g_opt=(cfg.g_lr * g_ratio, tuple(b**g_ratio for b in cfg.betas))).to(self.device)

    def _kd_settings(self) -> KDSettings | None:
        cfg = self.cfg
        terms = tuple(config_lib.kd_terms(cfg))
        if not terms:
            return None
        text, ld_head = None, None
        if set(terms) & set(config_lib.TEXT_TERMS) or cfg.pd_mode == "generator":
            # unlabelled data: a classifier teacher's own classes
            prompts = resolve_prompts(cfg.prompts, self.dataset.class_names or list(self.teacher.class_names))
            text = self.teacher.text_features(prompts).float()  # once, kept for the whole run
            shown = "; ".join(prompts[:4]) + (" ..." if len(prompts) > 4 else "")
            log.info("CGKD prompts (%d): %s", len(prompts), shown)
        if "ld" in terms:  # label distillation: a linear classifier over the prompts on D^f's output
            ld_head = sn_linear(self.teacher.dim, len(text))
            init_normal_002(ld_head)
            ld_head = ld_head.to(self.device)
        log.info("teacher %s (%d-d, input %s%s), KD terms %s%s", self.teacher.name, self.teacher.dim,
                 self.teacher.input_convention,
                 f", weights sha256 {self.teacher.weights_sha256}" if self.teacher.weights_sha256 else "",
                 "+".join(terms),
                 f", every {cfg.kd_every} D steps (weights x {cfg.kd_every})" if cfg.kd_every > 1 else "")
        if not self.teacher.supports_text:
            log.info("the %s teacher is image-only, so AGKD only; --teacher classifier (or clip, with "
                     "CLIP weights present) gives AGKD + CGKD", self.teacher.name)
        return KDSettings(
            self.teacher, terms, text, cfg.agkd_weight, cfg.agkd_distance, cfg.agkd_p, cfg.cgkd_weight,
            cfg.cgkd_norm, cfg.cgkd_distance, cfg.cgkd_fake_only, cfg.clip_on, cfg.pd_mode, cfg.pd_weight,
            self.clean_real_features if cfg.clip_on == "clean" else None, cfg.kd_every,
            fitnets_weight=cfg.fitnets_weight, ld_weight=cfg.ld_weight, ld_temperature=cfg.ld_temperature,
            pkd_weight=cfg.pkd_weight, spkd_weight=cfg.spkd_weight, ld_head=ld_head,
            norm=(TeacherFeatureNorm(cfg.kd_target_norm, self.teacher.dim).to(self.device)
                  if cfg.kd_target_norm != "none" else None),
            norm_source=self.norm_fit_features)

    @torch.no_grad()
    def norm_fit_features(self, max_images: int = 1000) -> torch.Tensor:
        """Teacher features of up to `max_images` clean real images (a fixed draw by data_seed),
        to fit kd_target_norm on; with clip_on = clean they also fill the feature cache."""
        n = len(self.dataset)
        g = torch.Generator().manual_seed(self.cfg.data_seed)
        idx = torch.randperm(n, generator=g)[:max_images]
        feats = []
        for chunk in idx.split(64):
            if self.cfg.clip_on == "clean":
                feats.append(self.clean_real_features(chunk))
            else:
                images = to_model_range(self.images[chunk.to(self.images.device)].to(self.device))
                feats.append(self.teacher.image_features(images).float())
        return torch.cat(feats)

    @torch.no_grad()
    def clean_real_features(self, indices: torch.Tensor) -> torch.Tensor:
        """Teacher features of the un-augmented real images `indices` (as `real_batch` returns
        them: i + N for the mirror image of image i), each computed once."""
        n = len(self.dataset)
        if self._clean_features is None:
            self._clean_features = torch.zeros(2 * n, self.teacher.dim, device=self.device)
            self._clean_known = torch.zeros(2 * n, dtype=torch.bool, device=self.device)
        idx = indices.to(self.device)
        missing = idx[~self._clean_known[idx]].unique()
        if len(missing):
            images = to_model_range(self.images[(missing % n).to(self.images.device)].to(self.device))
            images = torch.where((missing >= n).view(-1, 1, 1, 1), images.flip(3), images)
            self._clean_features[missing] = self.teacher.image_features(images)
            self._clean_known[missing] = True
        return self._clean_features[idx]

    # ------------------------------------------------------------------ data
    def _permutation(self, epoch: int) -> torch.Tensor:
        """The order of the data in `epoch`, where the images are (a seeded CPU draw, copied to a
        GPU once per epoch without waiting for it)."""
        if epoch not in self._perms:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perms = {e: p for e, p in self._perms.items() if e >= epoch - 1}
            perm = torch.randperm(len(self.dataset), generator=g)
            if self.images.is_cuda:
                perm = perm.pin_memory().to(self.images.device, non_blocking=True)
            self._perms[epoch] = perm
        return self._perms[epoch]

    def real_batch(self, batch_index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The `batch_index`-th real batch of this rank: a pure function of the index, so resume
        needs no sampler state. Images (B, 3, R, R) in [-1, 1], labels (B,), and indices (B,) into
        the mirrored data set: i for image i, i + N for its mirror image (xflip). Slices of the
        epochs' permutations (a batch spans at most two: it is no larger than the data), so the
        GPU is never waited for."""
        n = len(self.dataset)
        start = batch_index * self.cfg.batch_size + self.info.rank * self.local_batch
        epoch, offset = divmod(start, n)
        idx = self._permutation(epoch)[offset:offset + self.local_batch]
        if len(idx) < self.local_batch:
            idx = torch.cat([idx, self._permutation(epoch + 1)[:self.local_batch - len(idx)]])
        x = to_model_range(self.images[idx].to(self.device, non_blocking=True))
        labels = self.labels[idx].to(self.device, non_blocking=True)
        idx = idx.to(self.device, non_blocking=True)
        if self.cfg.xflip:
            flip = torch.rand(x.shape[0], 1, 1, 1, device=self.device) < 0.5
            x = torch.where(flip, x.flip(3), x)
            idx = idx + n * flip.view(-1).long()
        return x, labels, idx

    # ------------------------------------------------------------------ step
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        # inside a CUDA graph capture the cast-weight cache would hold the capture's tensors
        return torch.autocast(self.device.type, dtype=self.autocast_dtype, cache_enabled=self.graphs is None)

    def _optimize(self, name: str, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        net, opt = (self.G, self.opt_G) if name == "G" else (self.D, self.opt_D)
        aux = self.opt_aux if name == "D" else None  # auxiliary heads step with D
        scaler = self.scalers[name]
        total = torch.stack(list(terms.values())).sum()
        opt.zero_grad(set_to_none=True)
        if aux is not None:
            aux.zero_grad(set_to_none=True)
        scaler.scale(total).backward()
        average_gradients(list(net.parameters()) + (self.aux_params if aux is not None else []), self.info)
        scaler.step(opt)
        if aux is not None:
            scaler.step(aux)
        scaler.update()
        return total.detach()

    def _d_requires_grad(self, flag: bool) -> None:
        """Weight gradients on or off for D and the auxiliary heads that train with it."""
        self.D.requires_grad_(flag)
        for p in self.aux_params:
            p.requires_grad_(flag)

    def train_step(self) -> dict[str, torch.Tensor]:
        """One G step after `d_steps` D steps; returns detached loss terms and stats."""
        if self.graphs is not None:  # cuda_graphs: a captured step replayed (training/graphs.py)
            return self.graphs.step()
        d0 = self.step * self.cfg.d_steps
        logs = self.step_body(lambda i: self.real_batch(d0 + i))
        self.end_step()
        return logs

    def step_body(self, reals: Callable[[int], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
                  ) -> dict[str, torch.Tensor]:
        """The D steps and the G step of G step `self.step`, on the real batches `reals(i)` of its
        D steps (images, labels, indices; see real_batch): everything a CUDA graph of the step
        holds. Its Python branches depend on the step only through `objective.branches`."""
        cfg = self.cfg
        logs: dict[str, torch.Tensor] = {}
        if cfg.compile and cfg.compile_mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()  # the last step's graph outputs are done with
        self._d_requires_grad(True)
        for i in range(self.d_steps_per_step):
            d_step = self.step * cfg.d_steps + i
            real, labels, idx = reals(i)
            D = self.D if self.objective.needs_second_derivative(d_step) else self.D_fast
            with self._autocast():
                terms, stats = self.objective.d_terms(self.G_fast, D, real, labels, idx, d_step)
            self._optimize("D", terms)
            with self._autocast():  # lazy R1 in its own step (lazy_reg = separate)
                reg_terms, reg_stats = self.objective.d_reg_terms(self.D, real, labels, d_step)
            if reg_terms:
                self._optimize("D", reg_terms)
            for k, v in {**terms, **stats, **reg_terms, **reg_stats}.items():
                logs[k] = logs.get(k, 0.0) + v.detach() / cfg.d_steps
        self._d_requires_grad(False)  # no D weight gradients in the G phase
        with self._autocast():
            terms, stats = self.objective.g_terms(self.G_fast, self.D_fast, self.local_batch, self.device,
                                                  self.step, G_eager=self.G)
        self._optimize("G", terms)
        with self._autocast():  # lazy path length in its own step (lazy_reg = separate)
            reg_terms, reg_stats = self.objective.g_reg_terms(self.G, self.D, self.local_batch, self.device,
                                                              self.step)
        if reg_terms:
            self._optimize("G", reg_terms)
        self._d_requires_grad(True)
        logs.update({k: v.detach() for k, v in {**terms, **stats, **reg_terms, **reg_stats}.items()})
        return logs

    def end_step(self) -> None:
        """What follows a step outside its graph: the step count and G_ema (whose decay ramps)."""
        self.step += 1
        update_ema(self.G_ema, self.G, ema_decay_at(self.step, self.cfg.ema_decay, self.cfg.ema_start_steps))

    @property
    def d_steps_per_step(self) -> int:
        """D steps per G step: cfg.d_steps, or none when no D trains (MSE distillation)."""
        return self.cfg.d_steps if self.opt_D is not None else 0

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit-exactly (RNG of every rank included)."""
        rng = get_rng_state()
        if self.info.world_size > 1:
            gathered: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng)
            rng_states = gathered
        else:
            rng_states = [rng]

        def net(m: torch.nn.Module) -> dict[str, Any]:
            return {"config": dict(m.config), "state": m.state_dict()}

        return {
            "format": FORMAT,
            "step": self.step,
            "config": config_lib.to_dict(self.cfg),
            "dataset": {"content_sha256": self.data_hash, "num_images": len(self.dataset),
                        "class_names": self.dataset.class_names},
            "nets": {"G": net(self.G), "D": net(self.D), "G_ema": net(self.G_ema)},
            "optim": {"G": self.opt_G.state_dict(), "D": self.opt_D.state_dict() if self.opt_D else {},
                      "aux": self.opt_aux.state_dict() if self.opt_aux else {}},
            "scalers": {k: s.state_dict() for k, s in self.scalers.items()},
            "objective": self.objective.state_dict(),
            "rng": rng_states,
            "compute": dict(self.compute),
            # compression: which frozen teacher the student learns from (the teacher is not stored)
            "compress": {"teacher": self.cfg.compress_teacher, "teacher_sha256": self.G_teacher_sha256},
            # KD-DLGAN: which frozen teacher D distils from (the teacher is not stored)
            "kd_teacher": {"teacher": self.cfg.teacher, "weights": self.cfg.teacher_weights,
                           "weights_sha256": self.teacher.weights_sha256 if self.teacher else ""},
        }

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        """Restore a checkpoint written by `state_dict` (after checking it fits this run)."""
        # fields added after a checkpoint was written take the values that reproduce what it
        # computed (LEGACY_VALUES), else their defaults; fields with no effect in both are skipped
        saved = config_lib.upgrade({**config_lib.to_dict(TrainConfig()), **config_lib.LEGACY_VALUES,
                                    **ckpt["config"]})
        saved["conditional"] = bool(ckpt["nets"]["G"]["config"].get("c_dim"))  # the effective value
        now = config_lib.to_dict(self.cfg)
        diff = config_lib.changed_fields(saved, now)
        if diff:
            raise KdganError(
                f"{self.run_dir} holds a run with a different config ({'; '.join(diff)}); "
                "re-run with the original flags to resume it (a preset or default that changed since "
                "takes --set FIELD=OLD for each), or use a new --outdir"
            )
        if ckpt["dataset"]["content_sha256"] != self.data_hash:
            raise KdganError(
                f"the data differs from the data {self.run_dir} was trained on (content hash "
                "changed); point --data at the original data, or use a new --outdir"
            )
        saved_teacher = ckpt.get("compress", {}).get("teacher_sha256", "")
        if saved_teacher != self.G_teacher_sha256:
            raise KdganError(
                f"{self.run_dir} was distilled from a different teacher generator (sha256 of its "
                f"weights {saved_teacher[:12] or 'none'} -> {self.G_teacher_sha256[:12] or 'none'}); "
                "pass the original --teacher to resume, or use a new --outdir"
            )
        saved_kd = ckpt.get("kd_teacher", {}).get("weights_sha256", "")
        now_kd = self.teacher.weights_sha256 if self.teacher else ""
        if saved_kd and saved_kd != now_kd:
            raise KdganError(
                f"{self.run_dir} was trained with different {self.cfg.teacher} teacher weights (sha256 "
                f"{saved_kd[:12]} -> {now_kd[:12] or 'none'}); pass the original --teacher-weights "
                "file to resume, or use a new --outdir"
            )
        changed = describe_compute_change(ckpt.get("compute", {}), self.compute)
        if changed and self.info.is_main:
            hint = (" (CPU threads: OMP_NUM_THREADS, or the same --jobs of `kdgan compare` on a "
                    "machine with as many cores)" if "cpu_threads" in changed else "")
            log.warning("resuming in another compute setting than step %d was saved in (%s): the run "
                        "goes on correctly but will not be bit-identical to an uninterrupted one; "
                        "for an exact resume use the original setting%s", ckpt["step"], changed, hint)
        if self.graphs is not None:  # the graphs hold the optimiser state tensors replaced below
            self.graphs.reset()
        for name in ("G", "D", "G_ema"):
            getattr(self, name).load_state_dict(ckpt["nets"][name]["state"])
        load_adam_state(self.opt_G, ckpt["optim"]["G"])
        if self.opt_D is not None:
            load_adam_state(self.opt_D, ckpt["optim"]["D"])
        if self.opt_aux is not None:
            load_adam_state(self.opt_aux, ckpt["optim"]["aux"])
        for k, s in self.scalers.items():
            if ckpt["scalers"][k]:
                s.load_state_dict(ckpt["scalers"][k])
        self.objective.load_state_dict(ckpt.get("objective", {}))
        rng = ckpt["rng"]
        set_rng_state(rng[self.info.rank] if self.info.rank < len(rng) else rng[0])
        self.step = int(ckpt["step"])

    # ------------------------------------------------------------------ outputs
    def grid_latents(self) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Fixed z and labels for sample grids: one row per class (up to 10), else 8 x 8."""
        cols = 10 if self.c_dim else 8
        rows = min(self.c_dim, 10) if self.c_dim else 8
        g = torch.Generator().manual_seed(self.cfg.seed)
        z = torch.randn(rows * cols, self.cfg.z_dim, generator=g)
        labels = torch.arange(rows).repeat_interleave(cols) % max(self.c_dim, 1)
        return z.to(self.device), labels.to(self.device), cols

    def _ema_ready_to_sample(self) -> None:
        """ema_bn_mode standing: G_ema's BatchNorm statistics recomputed from fresh batches (its
        buffers are otherwise copies of G's, which lag behind G_ema's averaged weights)."""
        if getattr(self.G_ema, "bn_mode", None) == "standing":
            recompute_standing_statistics(self.G_ema, batch_size=self.cfg.ema_bn_batch)

    @torch.no_grad()
    def save_samples(self, path: Path) -> None:
        self._ema_ready_to_sample()
        z, labels, cols = self.grid_latents()
        save_image_grid(to_uint8(self.G_ema(z, labels)), path, cols)

    def export(self, folder: Path) -> Path:
        """G_ema as safetensors (config in the metadata) + config.json, for `load_generator`."""
        self._ema_ready_to_sample()
        return save_generator(folder, self.G_ema.state_dict(), self.G_ema.config,
                              config_lib.to_dict(self.cfg), self.dataset.class_names, self.step)

    def evaluate(self) -> dict[str, Any]:
        """Score G_ema with the configured protocol (one repeat, a fixed seed, a private RNG)."""
        from kdgan.metrics import evaluate, generate_uint8, get_protocol, load_inception, reference_features

        cfg = self.cfg
        if self._eval is None:
            proto = get_protocol(cfg.eval_protocol, cfg.eval_num_gen or None)
            extractor = load_inception(cfg.inception, self.device)
            ref = reference_features(cfg.eval_ref or cfg.data, proto.ref_split, extractor)
            self._eval = (proto, extractor, ref)
        proto, extractor, ref = self._eval
        self._ema_ready_to_sample()
        return evaluate(lambda s: generate_uint8(self.G_ema, proto.num_gen, s, 100, self.device),
                        ref, extractor, proto, (cfg.eval_metric,), repeats=1, seed=cfg.seed)

    # ------------------------------------------------------------------ loop
    def _check_finite(self, logs: dict[str, torch.Tensor], bad_steps: torch.Tensor) -> None:
        if bad_steps.item() == 0:
            return
        terms = [k for k, v in logs.items() if not torch.isfinite(torch.as_tensor(v)).all()]
        last = self.ckpts.steps()
        where = (f"the last good checkpoint is {self.ckpts.path(last[-1])}" if last
                 else "no checkpoint was written yet")
        raise TrainingDiverged(
            f"training diverged: non-finite loss ({', '.join(terms) or 'a loss term'}) by step "
            f"{self.step}; stopped without saving, {where}. Lower the learning rates "
            "(--set g_lr=..., d_lr=...) or use --precision fp32, and use a new --outdir"
        )

    def _install_signal_handlers(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return

        def handler(signum: int, _frame: Any) -> None:
            if self._stop.is_set():
                raise KeyboardInterrupt
            when = "after this step" if self.info.world_size == 1 else "at the next log step"
            log.warning("received %s: saving a checkpoint %s (again to abort)",
                        signal.Signals(signum).name, when)
            self._stop.set()

        signal.signal(signal.SIGINT, handler)
        signal.signal(signal.SIGTERM, handler)

    def _stop_requested(self) -> bool:
        stop = self._stop.is_set()
        if self.info.world_size > 1:
            flag = torch.tensor([float(stop)], device=self.device)
            dist.all_reduce(flag)
            stop = bool(flag.item() > 0)
        return stop

    def _checkpoint_overdue(self, since: float, at_log: bool) -> bool:
        """True when `ckpt_every_minutes` have passed since `since` (the last checkpoint or the
        start). Under torchrun rank 0's clock decides, at log steps (one broadcast)."""
        minutes = self.cfg.ckpt_every_minutes
        if minutes <= 0 or (self.info.world_size > 1 and not at_log):
            return False
        due = _clock() - since >= minutes * 60
        if self.info.world_size > 1:
            flag = torch.tensor([float(due)], device=self.device)
            dist.broadcast(flag, src=0)
            due = bool(flag.item() > 0)
        return due

    def run(self) -> dict[str, Any]:
        """Train to `cfg.steps` (resuming from the run folder), export, and return a summary.
        The main process holds the run folder's lock throughout: a second training refuses."""
        with run_lock(self.run_dir) if self.info.is_main else contextlib.nullcontext():
            return self._run()

    def _run(self) -> dict[str, Any]:
        cfg, main = self.cfg, self.info.is_main
        ckpt = self.ckpts.load_latest()
        resumed_from = None
        if ckpt is not None:
            self.load_state_dict(ckpt)
            resumed_from = self.step
            log.info("resuming %s from step %d", self.run_dir, self.step)
        del ckpt
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(config_lib.dumps(cfg))
            z, labels, cols = self.grid_latents()
            reals = self.dataset.images[: len(z)]
            save_image_grid(reals, self.run_dir / "samples" / "reals.png", cols)
            log.info(
                "training %s on %d images (%s), %d classes, %d px, device %s%s, %d process(es)",
                cfg.arch, len(self.dataset), cfg.data, self.c_dim, cfg.resolution, self.device,
                (f" ({(n := self.compute['cpu_threads'])} thread{'s' * (n != 1)})"
                 if self.device.type == "cpu" else ""),
                self.info.world_size,
            )
        self._install_signal_handlers()
        images_per_step = cfg.batch_size * (cfg.d_steps if self.opt_D is not None else 1)  # real or teacher
        monitor = RunMonitor(self.run_dir, main, self.step, cfg.steps, images_per_step)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        bad = torch.zeros((), dtype=torch.int64, device=self.device)
        t0, start_step = time.perf_counter(), self.step
        last_ckpt_time = _clock()
        stopped = False
        try:
            while self.step < cfg.steps:
                logs = self.train_step()
                monitor.update()
                total = torch.stack([v for k, v in logs.items() if not k.startswith("stats/")]).sum()
                bad += (~torch.isfinite(total)).long()
                for k, v in logs.items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
                last = self.step == cfg.steps
                at_log = self.step % cfg.log_every_steps == 0 or last
                # one process stops after this step; several agree at log steps (a collective)
                stop = (at_log or self.info.world_size == 1) and self._stop_requested()
                if at_log:
                    self._check_finite(logs, bad)
                    monitor.record(self.step, {k: float(v) / count for k, v in sums.items()})
                    sums, count = {}, 0
                if main and (self.step % cfg.sample_every_steps == 0 or last):
                    path = self.run_dir / "samples" / f"fakes-{self.step:09d}.png"
                    self.save_samples(path)
                    monitor.add_image("samples", path, self.step)
                at_eval = cfg.eval_every_steps > 0 and (self.step % cfg.eval_every_steps == 0 or last)
                at_ckpt = (self.step % cfg.ckpt_every_steps == 0 or last or stop
                           or self._checkpoint_overdue(last_ckpt_time, at_log))
                if at_eval or at_ckpt:
                    self._check_finite(logs, bad)
                    state = self.state_dict()  # collective under torchrun: every rank calls it
                if at_eval and main:
                    result = self.evaluate()
                    value = result["metrics"][cfg.eval_metric]["mean"]
                    monitor.record(self.step, {f"eval/{cfg.eval_metric}": value}, throughput=False)
                    if self.ckpts.save_best(state, cfg.eval_metric, value):
                        log.info("step %d: %s %.4g, new best (checkpoints/best.pt)",
                                 self.step, cfg.eval_metric, value)
                    monitor.reset_clock()
                if at_ckpt and main:
                    self.ckpts.save(state, self.step)
                if at_ckpt:
                    last_ckpt_time = _clock()
                if stop:
                    stopped = True
                    break
        finally:
            monitor.close()
        summary: dict[str, Any] = {
            "step": self.step, "resumed_from": resumed_from, "stopped_early": stopped,
            "seconds": time.perf_counter() - t0, "steps_run": self.step - start_step,
            "checkpoint": str(self.ckpts.path(self.step)) if self.ckpts.steps() else None,
            "samples": str(self.run_dir / "samples"),
        }
        if self.info.world_size > 1:
            sums_all: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(sums_all, params_checksum(self.G) + params_checksum(self.D))
            if len(set(sums_all)) != 1:
                raise KdganError(f"ranks diverged: parameter checksums {sums_all}")
            log.info("parameters identical across %d ranks", self.info.world_size)
        if main and not stopped:
            summary["export"] = str(self.export(self.run_dir / "export"))
        return summary
