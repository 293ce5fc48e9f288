"""Side-by-side speed of kdgan and the anchors' own code, in one process, same configs and inputs.

A. StyleGAN2 at the `stylegan2-obama-da` config (256 px, channel_base 32768, channel_max 512,
   2 mapping layers, batch 16): kdgan's Trainer (its networks, Adam optimisers and objective,
   DiffAugment off) against NVlabs stylegan2-ada-pytorch (`training/networks.py` Generator and
   Discriminator with the same sizes, its `training/loss.py` StyleGAN2Loss and the phase order of
   its training loop, no augment pipe). Both sides run their own code for each phase:
     main step    D on fakes and reals (non-saturating loss), then G through D; backward, Adam
     R1 step      D on reals that require grad, R1 by autograd.grad(create_graph=True), backward
     path length  G on batch / 2, the path-length penalty (create_graph=True), backward, Adam
     memory       peak allocated GPU memory over one main step (weights and Adam state included)
     s/kimg       main + R1 / 16 + PL / 4 per step of 16 real images (the preset's lazy
                  intervals), 62.5 steps per kimg; combined from the medians above
   fp32 with TF32 on for both (NVlabs: num_fp16_res 0, conv_clamp None); the mixed-precision row
   pits NVlabs' own setting (fp16 in the 4 highest resolutions, conv_clamp 256) against kdgan
   under bf16 autocast (main step and its memory).
B. BigGAN-CIFAR DA (channel 64, batch 50, 4 D steps per G step, translation + cutout): kdgan's
   `Trainer.train_step` (benchmarks/train_step.py's time_step, preset biggan-cifar10-10pct-da)
   against the released KD-DLGAN code (github.com/cuikaiwen18/KD_DLGAN, BigGAN-PyTorch based),
   its G, D, G_D, EMA and hinge losses built from its own modules with the settings of its
   scripts/DiffAugment-biggan-cifar10-0.1.sh, in a loop that does what its train function does
   minus the KD terms. Then DA + KD-DLGAN: its own train function (CLIP ViT-B/32, random weights,
   fp16 as clip.load gives it) against kdgan's biggan-cifar10-10pct-da-kd with the same teacher.
   One GPU, so without the script's nn.DataParallel wrapper, and the real batches already on the
   device (both favour the released code). Its z_ / y_ are its Distribution tensor subclass, which
   torch carries through every op of G and D: that Python overhead is part of its cost as released.
   Target for kdgan: at least 3x the released code's throughput.

The anchors are imported from the checkouts given (nothing of theirs is copied into kdgan).
NVlabs' CUDA ops (upfirdn2d, bias_act) are compiled here with torch.utils.cpp_extension for the
device's compute capability only and handed to NVlabs' modules through their `_plugin`
globals, because its custom_ops.get_plugin cannot import what torch 2.x builds. If the build
fails, NVlabs runs its reference ops and the output says why.

    python benchmarks/anchors.py --device cuda --nvlabs PATH --kddlgan PATH [--json anchors.json]
    python benchmarks/anchors.py --device cpu --nvlabs PATH --kddlgan PATH --threads 1   (tiny config)
    python benchmarks/anchors.py --dry          (lists the measurements; needs no GPU, no checkouts)
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import importlib
import importlib.util
import io
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
import types
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from kdgan.config import resolve
from kdgan.data import ImageSet
from kdgan.training.loop import Trainer, net_configs
from kdgan.utils.syncs import HostSyncs

SG2_PRESET = "stylegan2-obama-da"
BIGGAN_PRESET = "biggan-cifar10-10pct-da"
BIGGAN_KD_PRESET = "biggan-cifar10-10pct-da-kd"
RELEASED_SCRIPT = "biggan_cifar/scripts/DiffAugment-biggan-cifar10-0.1.sh"  # the released CIFAR-10 10% DA run
KIMG = 1000  # real images per kimg, as StyleGAN2-ADA counts
THROUGHPUT_TARGET = 3.0  # kdgan / released BigGAN-CIFAR throughput
# the tiny CPU configs: exercise every code path end to end, the figures mean nothing
TINY_SG2 = {"resolution": 32, "channel_base": 2048, "channel_max": 64}
TINY_BIGGAN = {"g_ch": 16, "d_ch": 16, "batch_size": 10}
# --cpu-size medium: the CPU figure of every ratio, at a size where the layers do real work (the
# FIR benchmark's StyleGAN2 size; BigGAN at half the channels and batch) in a few minutes
CPU_SIZES = {
    "tiny": (dict(TINY_SG2), dict(TINY_BIGGAN)),
    "medium": ({"resolution": 64, "channel_base": 4096, "channel_max": 512, "batch_size": 8},
               {"g_ch": 32, "d_ch": 32, "batch_size": 25}),
}
CPU_SIZE = "tiny"  # set by --cpu-size
PLUGINS = {"upfirdn2d": "upfirdn2d_plugin", "bias_act": "bias_act_plugin"}  # NVlabs op module -> plugin name
BUILD_TIMEOUT_S = 240  # the two plugins took 22-24 s on an H200 (nvcc 13, 16 cores)
_BUILD = ("import sys, torch.utils.cpp_extension as e; e.load(name=sys.argv[1], sources=sys.argv[2:], "
          "extra_cuda_cflags=['--use_fast_math'], verbose=False)")


# --------------------------------------------------------------------------- timing
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(step, device: torch.device, repeats: int, warmup: int, max_s: float) -> dict:
    """Median wall seconds of `step()` over up to `repeats` timed calls after `warmup` untimed
    ones (synchronised around each call); stops early once the timed calls pass `max_s` seconds
    (at least 2 calls when repeats >= 2), so a slow step cannot eat the slot."""
    for _ in range(warmup):
        step()
    sync(device)
    times, start = [], time.perf_counter()
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t0)
        if len(times) >= min(2, repeats) and time.perf_counter() - start > max_s:
            break
    return {"s": statistics.median(times), "runs": len(times), "all_s": times}


def peak_memory_mib(step, device: torch.device) -> float | None:
    """Peak allocated GPU memory (MiB) over one call of `step` (None on the CPU)."""
    if device.type != "cuda":
        return None
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    step()
    sync(device)
    return torch.cuda.max_memory_allocated(device) / 2**20


def kept_mib(step, modules) -> float:
    """Most MiB of activations autograd keeps at once over one call of `step` (weights excluded):
    the activation part of peak memory, on any device (kdgan.utils.memory.SavedTensors)."""
    from kdgan.utils.memory import SavedTensors

    weights = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    with SavedTensors(exclude=weights) as kept:
        step()
    return kept.peak / 2**20


def free(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# --------------------------------------------------------------------------- configs
def sg2_config(device: str, tiny: bool, precision: str = "fp32", compile_: bool = False):
    """The StyleGAN2 preset both sides are built from (DiffAugment off: NVlabs' networks have none)."""
    return resolve(SG2_PRESET, {"device": device, "precision": precision, "data": "synthetic",
                                "compile": compile_, "eval_every_steps": 0, "diffaugment": "",
                                **(TINY_SG2 if tiny else {})})


def biggan_config(device: str, tiny: bool, kd_teacher: str = ""):
    base = {"device": device, "data": "synthetic", "eval_every_steps": 0, **(TINY_BIGGAN if tiny else {})}
    if not kd_teacher:
        return resolve(BIGGAN_PRESET, base)
    return resolve(BIGGAN_KD_PRESET, {**base, "teacher": kd_teacher, "kd": "agkd,cgkd", "prompts": "cifar10"})


def plan(device: str, tiny: bool, kd: bool, mixed: bool, compiled: bool = False,
         biggan_bf16: bool = False) -> list[str]:
    """The configs, then one line per measurement this run makes (the dry mode prints them)."""
    c = sg2_config(device, tiny)
    b = biggan_config(device, tiny)
    sg2 = f"StyleGAN2 {c.resolution}px"
    big = f"BigGAN-CIFAR DA (ch {b.g_ch}, batch {b.batch_size}, {b.d_steps} D steps per G step)"
    lines = [
        f"config: {sg2} = {SG2_PRESET} (channel_base {c.channel_base}, channel_max {c.channel_max}, "
        f"{c.mapping_layers} mapping layers, batch {c.batch_size}), DiffAugment off; kdgan's Trainer vs "
        "NVlabs' Generator / Discriminator + StyleGAN2Loss (num_fp16_res 0, conv_clamp None), TF32 on",
        f"config: {big} = {BIGGAN_PRESET} vs the released KD_DLGAN code with {RELEASED_SCRIPT}",
        f"would measure: {sg2} fp32 main step (D on fakes and reals, G through D, backward, Adam), median ms",
        f"would measure: {sg2} fp32 R1 step (D on reals, autograd.grad with create_graph, double backward), "
        "median ms",
        f"would measure: {sg2} fp32 path-length step (G on batch / {c.pl_batch_shrink}, penalty with "
        "create_graph, backward), median ms",
        f"would measure: {sg2} fp32 peak GPU memory of the main step, MiB (CUDA only)",
        f"would measure: {sg2} fp32 activations autograd keeps at once over the main step, MiB (any device)",
        f"would measure: {sg2} fp32 few-shot step, s/kimg = (main + R1 / {c.r1_every} + PL / {c.pl_every}) x "
        f"{KIMG / c.batch_size:g} steps per kimg",
    ]
    if compiled:
        lines.append(f"would measure: {sg2} fp32 main step of kdgan with compile=true (torch.compile'd G and "
                     "D, compile time included in the part's wall time), median ms")
    if mixed:
        lines.append(f"would measure: {sg2} mixed-precision main step and its peak memory, kdgan bf16 "
                     "autocast vs NVlabs num_fp16_res 4, conv_clamp 256")
    lines.append(f"would measure: {big}, ms per G step, kdgan Trainer.train_step vs the released G, D, G_D, "
                 f"EMA and hinge losses; throughput ratio (target >= {THROUGHPUT_TARGET:g}x)")
    lines.append(f"would measure: {big}, ops that launch a kernel and host syncs per G step, both sides "
                 "(the launch overhead behind a GPU ratio)")
    if biggan_bf16:
        lines.append(f"would measure: {big}, kdgan in bf16 autocast, ms per G step; throughput against "
                     "kdgan fp32 and the released code (fp32)")
    if device == "cuda":
        lines.append(f"would measure: {big}, kdgan with cuda_graphs=true (whole steps as CUDA graphs) in fp32"
                     + (" and bf16" if biggan_bf16 else "") + f", ms per G step; throughput against kdgan "
                     f"fp32 eager and the released code (target >= {THROUGHPUT_TARGET:g}x)")
    if kd:
        teacher = "a tiny random CLIP" if tiny else "CLIP ViT-B/32, random weights"
        lines.append(f"would measure: {big} + KD-DLGAN ({teacher}), ms per G step, kdgan {BIGGAN_KD_PRESET} "
                     "vs the released train function; ratio")
    return lines


# --------------------------------------------------------------------------- NVlabs
def _ensure_distutils() -> str:
    """NVlabs' dnnlib imports distutils.util.strtobool, gone from Python 3.12's standard library
    (setuptools usually provides it); without it, a stand-in module holding that one function."""
    try:
        importlib.import_module("distutils.util")
        return ""
    except ImportError:
        pass

    def strtobool(value: str) -> int:
        v = value.lower()
        if v in ("y", "yes", "t", "true", "on", "1"):
            return 1
        if v in ("n", "no", "f", "false", "off", "0"):
            return 0
        raise ValueError(f"invalid truth value {value!r}")

    pkg, util = types.ModuleType("distutils"), types.ModuleType("distutils.util")
    util.strtobool, pkg.util = strtobool, util
    sys.modules.update({"distutils": pkg, "distutils.util": util})
    return "distutils.util is missing (Python >= 3.12 without setuptools): a stand-in gives dnnlib strtobool"


def import_nvlabs(root: Path) -> types.SimpleNamespace:
    """NVlabs' modules, imported from the checkout at `root`."""
    if not (root / "training" / "networks.py").is_file():
        raise SystemExit(f"--nvlabs {root}: no training/networks.py there "
                         "(a stylegan2-ada-pytorch checkout?)")
    note = _ensure_distutils()
    sys.path.insert(0, str(root))
    ops = ("upfirdn2d", "bias_act", "conv2d_gradfix", "grid_sample_gradfix")
    names = ("training.networks", "training.loss", "torch_utils.misc", *(f"torch_utils.ops.{x}" for x in ops))
    mods = {n.rsplit(".", 1)[1]: importlib.import_module(n) for n in names}
    return types.SimpleNamespace(root=root, note=note, **mods)


def build_nvlabs_ops(nv: types.SimpleNamespace, device: torch.device, ext_dir: str) -> dict:
    """Compile NVlabs' upfirdn2d and bias_act plugins for this GPU's compute capability only (the
    two in parallel subprocesses, then loaded here from the build cache), check each against
    NVlabs' reference op, and hand them to its modules. Returns {impl, reason, build_s}."""
    for name in PLUGINS:  # no attempt from NVlabs' own loader (it fails on torch 2.x, and
        getattr(nv, name)._inited = True  # upfirdn2d would retry it on every call): reference until set
    if device.type != "cuda":
        return {"impl": "reference", "reason": "CPU run (NVlabs' CUDA ops need a GPU)", "build_s": 0.0}
    from torch.utils.cpp_extension import load

    major, minor = torch.cuda.get_device_capability(device)
    os.environ["TORCH_CUDA_ARCH_LIST"] = f"{major}.{minor}"
    if ext_dir:
        os.environ["TORCH_EXTENSIONS_DIR"] = str(Path(ext_dir).resolve())
    ops_dir = nv.root / "torch_utils" / "ops"
    sources = {name: [str(ops_dir / f"{name}.cpp"), str(ops_dir / f"{name}.cu")] for name in PLUGINS}
    t0 = time.perf_counter()
    procs = {name: subprocess.Popen([sys.executable, "-c", _BUILD, plugin, *sources[name]],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name, plugin in PLUGINS.items()}
    failed = {}
    for name, proc in procs.items():
        try:
            out = proc.communicate(timeout=BUILD_TIMEOUT_S)[0]
        except subprocess.TimeoutExpired:
            proc.kill()
            out = proc.communicate()[0] + f"\ntimed out after {BUILD_TIMEOUT_S} s"
        if proc.returncode != 0:
            tail = [x for x in out.strip().splitlines() if x.strip()][-6:]
            failed[name] = " | ".join(tail)[-1200:]
    built_s = time.perf_counter() - t0
    if failed:
        return {"impl": "reference", "build_s": built_s,
                "reason": "; ".join(f"{k} build failed: {v}" for k, v in failed.items())}
    try:
        plugins = {name: load(name=plugin, sources=sources[name], extra_cuda_cflags=["--use_fast_math"],
                              verbose=False) for name, plugin in PLUGINS.items()}
    except Exception as e:  # noqa: BLE001 - any failure means: measure with the reference ops
        return {"impl": "reference", "build_s": time.perf_counter() - t0,
                "reason": f"loading the built plugins failed: {type(e).__name__}: {str(e)[-600:]}"}
    for name, plugin in plugins.items():
        getattr(nv, name)._plugin = plugin
    try:
        reason = check_nvlabs_ops(nv, device)
    except Exception as e:  # noqa: BLE001 - a broken kernel: measure with the reference ops
        reason = f"running the built plugins failed: {type(e).__name__}: {str(e)[-600:]}"
    if reason:
        for name in PLUGINS:
            getattr(nv, name)._plugin = None
        return {"impl": "reference", "reason": reason, "build_s": time.perf_counter() - t0}
    return {"impl": "cuda", "reason": f"built for sm_{major}{minor} and checked against the reference ops",
            "build_s": time.perf_counter() - t0}


def check_nvlabs_ops(nv: types.SimpleNamespace, device: torch.device) -> str:
    """'' when NVlabs' modules now take the CUDA path and agree with the reference ops."""
    if not (nv.upfirdn2d._init() and nv.bias_act._init()):
        return "NVlabs' _init() still reports no plugin after registration"
    g = torch.Generator(device=device).manual_seed(0)
    x = torch.randn(2, 8, 16, 16, device=device, generator=g)
    f = nv.upfirdn2d.setup_filter([1, 3, 3, 1], device=device)
    b = torch.randn(8, device=device, generator=g)
    pairs = {
        "upfirdn2d": [nv.upfirdn2d.upsample2d(x, f, impl=i) for i in ("cuda", "ref")],
        "bias_act": [nv.bias_act.bias_act(x, b, act="lrelu", impl=i) for i in ("cuda", "ref")],
    }
    bad = [k for k, (a, r) in pairs.items() if not torch.allclose(a, r, rtol=1e-4, atol=1e-4)]
    return f"the CUDA {', '.join(bad)} disagree with the reference ops" if bad else ""


def gradfix_status(nv: types.SimpleNamespace, device: torch.device) -> str:
    """What NVlabs' conv2d_gradfix / grid_sample_gradfix do on this torch (their custom ops gate on
    torch 1.7-1.9). Left disabled: a fallback runs torch's own op, which has double backward."""
    probe = torch.empty(1, 1, 1, 1, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nv.conv2d_gradfix.enabled = nv.grid_sample_gradfix.enabled = True
        conv = nv.conv2d_gradfix._should_use_custom_op(probe)
        grid = nv.grid_sample_gradfix._should_use_custom_op()
        nv.conv2d_gradfix.enabled = nv.grid_sample_gradfix.enabled = False
    where = f"torch {torch.__version__} on {device.type}"
    if conv or grid:
        return f"conv2d_gradfix / grid_sample_gradfix would use their custom ops on {where}; left disabled"
    return (f"conv2d_gradfix and grid_sample_gradfix fall back to F.conv2d / F.grid_sample on {where} "
            "(native double backward; autograd.grad skips weight gradients itself); grid_sample is unused "
            "(no augment pipe)")


# --------------------------------------------------------------------------- StyleGAN2 sides
class KdganStyleGAN2:
    """kdgan's Trainer on the preset: its G, D, Adam optimisers and objective, one phase at a time
    as `Trainer.train_step` runs them (lazy R1 / path length in their own optimiser steps)."""

    name = "kdgan"

    def __init__(self, cfg, real: torch.Tensor, run_dir: str, autocast: torch.dtype | None = None):
        rng = np.random.default_rng(0)  # the Trainer needs a data set; every step below uses `real`
        r, n = cfg.resolution, cfg.batch_size
        images = rng.integers(0, 256, (n, r, r, 3), dtype=np.uint8)
        data = ImageSet(images, np.zeros(n, dtype=np.int64), ["0"])
        self.t = Trainer(cfg, run_dir, dataset=data)
        self.cfg, self.real, self.autocast = cfg, real, autocast
        self.labels = torch.zeros(real.shape[0], dtype=torch.long, device=real.device)
        g_config, d_config = net_configs(cfg, 0)
        if dict(self.t.G.config) != g_config or dict(self.t.D.config) != d_config:
            raise RuntimeError("the Trainer built other networks than net_configs describes")

    def _ctx(self):
        if self.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(self.real.device.type, dtype=self.autocast)

    @staticmethod
    def _optimize(opt: torch.optim.Optimizer, terms: dict[str, torch.Tensor]) -> None:
        if not terms:
            raise RuntimeError("the objective returned no terms for this phase (preset intervals changed?)")
        opt.zero_grad(set_to_none=True)
        torch.stack(list(terms.values())).sum().backward()
        opt.step()

    def main(self) -> None:
        t = self.t  # G_fast / D_fast: the torch.compile'd views with --compile, else G and D themselves
        with self._ctx():  # d_step 1 / g_step 1: steps without the lazy terms
            terms, _ = t.objective.d_terms(t.G_fast, t.D_fast, self.real, self.labels, None, d_step=1)
        self._optimize(t.opt_D, terms)
        t.D.requires_grad_(False)
        with self._ctx():
            terms, _ = t.objective.g_terms(t.G_fast, t.D_fast, self.cfg.batch_size, self.real.device,
                                           g_step=1)
        self._optimize(t.opt_G, terms)
        t.D.requires_grad_(True)

    def r1(self) -> None:
        t = self.t
        with self._ctx():
            terms, _ = t.objective.d_reg_terms(t.D, self.real, self.labels, d_step=0)
        self._optimize(t.opt_D, terms)

    def pl(self) -> None:
        t = self.t
        t.D.requires_grad_(False)
        with self._ctx():
            terms, _ = t.objective.g_reg_terms(t.G, t.D, self.cfg.batch_size, self.real.device, g_step=0)
        self._optimize(t.opt_G, terms)
        t.D.requires_grad_(True)

    def params(self) -> tuple[int, int]:
        return count(self.t.G), count(self.t.D)

    def modules(self) -> list[torch.nn.Module]:
        return [self.t.G, self.t.D]


class NVlabsStyleGAN2:
    """NVlabs' Generator / Discriminator and StyleGAN2Loss, each phase as its training loop runs it:
    zero_grad, the phase's module alone requiring grad, accumulate_gradients, nan_to_num of the
    gradients, Adam (lr and betas adjusted for lazy regularisation as NVlabs does)."""

    name = "NVlabs"

    def __init__(self, nv: types.SimpleNamespace, cfg, real: torch.Tensor, mixed: bool = False):
        device = real.device
        fp16_res, clamp = (4, 256) if mixed else (0, None)
        self.G = nv.networks.Generator(
            z_dim=cfg.z_dim, c_dim=0, w_dim=cfg.w_dim, img_resolution=cfg.resolution, img_channels=3,
            mapping_kwargs={"num_layers": cfg.mapping_layers},
            synthesis_kwargs={"channel_base": cfg.channel_base, "channel_max": cfg.channel_max,
                              "num_fp16_res": fp16_res, "conv_clamp": clamp},
        ).train().requires_grad_(False).to(device)
        self.D = nv.networks.Discriminator(
            c_dim=0, img_resolution=cfg.resolution, img_channels=3, channel_base=cfg.channel_base,
            channel_max=cfg.channel_max, num_fp16_res=fp16_res, conv_clamp=clamp,
            epilogue_kwargs={"mbstd_group_size": cfg.mbstd_group},
        ).train().requires_grad_(False).to(device)
        self.loss = nv.loss.StyleGAN2Loss(
            device=device, G_mapping=self.G.mapping, G_synthesis=self.G.synthesis, D=self.D,
            augment_pipe=None, style_mixing_prob=cfg.style_mixing, r1_gamma=cfg.r1_gamma,
            pl_batch_shrink=cfg.pl_batch_shrink, pl_decay=cfg.pl_decay, pl_weight=cfg.pl_weight)
        self.opt = {}
        for net, module, every in (("G", self.G, cfg.pl_every), ("D", self.D, cfg.r1_every)):
            ratio = every / (every + 1)
            lr = cfg.g_lr if net == "G" else cfg.d_lr
            self.opt[net] = torch.optim.Adam(module.parameters(), lr=lr * ratio,
                                             betas=[b**ratio for b in cfg.betas], eps=cfg.adam_eps)
        self.nan_to_num = nv.misc.nan_to_num
        self.cfg, self.real = cfg, real
        self.c = torch.zeros(real.shape[0], 0, device=device)

    def _phase(self, phase: str, module: torch.nn.Module, opt: torch.optim.Optimizer, gain: int) -> None:
        z = torch.randn(self.real.shape[0], self.cfg.z_dim, device=self.real.device)
        opt.zero_grad(set_to_none=True)
        module.requires_grad_(True)
        self.loss.accumulate_gradients(phase=phase, real_img=self.real, real_c=self.c, gen_z=z, gen_c=self.c,
                                       sync=True, gain=gain)
        module.requires_grad_(False)
        for p in module.parameters():
            if p.grad is not None:
                self.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
        opt.step()

    def main(self) -> None:
        self._phase("Gmain", self.G, self.opt["G"], 1)
        self._phase("Dmain", self.D, self.opt["D"], 1)

    def r1(self) -> None:
        self._phase("Dreg", self.D, self.opt["D"], self.cfg.r1_every)

    def pl(self) -> None:
        self._phase("Greg", self.G, self.opt["G"], self.cfg.pl_every)

    def params(self) -> tuple[int, int]:
        return count(self.G), count(self.D)

    def modules(self) -> list[torch.nn.Module]:
        return [self.G, self.D]


def run_side(make, device: torch.device, reps: dict, max_s: float, parts=("main", "r1", "pl"),
             warmup: int = 2) -> dict:
    """Build one side, time its phases, measure the main step's memory, then free it."""
    torch.manual_seed(0)
    side = make()
    res = {"params_G": side.params()[0], "params_D": side.params()[1]}
    for part in parts:
        warm = 1 if part == "r1" else warmup
        res[part] = measure(getattr(side, part), device, reps[part], warm, max_s)
    res["peak_mib"] = peak_memory_mib(side.main, device)
    res["kept_mib"] = kept_mib(side.main, side.modules())
    del side
    free(device)
    return res


# --------------------------------------------------------------------------- released KD-DLGAN
def import_released(root: Path) -> tuple[types.SimpleNamespace, str]:
    """The released code's modules (third_party/ and biggan_cifar/losses.py) from the checkout."""
    if not (root / "third_party" / "BigGAN.py").is_file() or not (root / RELEASED_SCRIPT).is_file():
        raise SystemExit(f"--kddlgan {root}: no third_party/BigGAN.py or {RELEASED_SCRIPT} there "
                         "(a cuikaiwen18/KD_DLGAN checkout?)")
    note = ""
    if importlib.util.find_spec("h5py") is None:  # third_party/datasets imports it for ImageNet HDF5 only
        sys.modules["h5py"] = types.ModuleType("h5py")
        note = "h5py is not installed: a stand-in lets third_party/datasets import (its HDF5 sets are unused)"
    sys.path[:0] = [str(root), str(root / "biggan_cifar")]
    mods = {"BigGAN": importlib.import_module("third_party.BigGAN"),
            "utils": importlib.import_module("third_party.utils"),
            "train_fns": importlib.import_module("third_party.train_fns"),
            "losses": importlib.import_module("losses")}
    return types.SimpleNamespace(root=root, **mods), note


def released_config(rel: types.SimpleNamespace, overrides: dict) -> dict:
    """The config its train.py builds from the released script's command line (parser defaults plus
    the script's flags), with the values its run() derives from the data set."""
    text = (rel.root / RELEASED_SCRIPT).read_text()
    words = shlex.split(" ".join(x.rstrip("\\") for x in text.splitlines() if not x.lstrip().startswith("#")))
    config = vars(rel.utils.prepare_parser().parse_args(words[words.index("train.py") + 1:]))
    config.update(overrides)
    config["resolution"] = rel.utils.imsize_dict[config["dataset"]]
    config["n_classes"] = rel.utils.nclass_dict[config["dataset"]]
    config["G_activation"] = rel.utils.activation_dict[config["G_nl"]]
    config["D_activation"] = rel.utils.activation_dict[config["D_nl"]]
    return config


class ReleasedCLIP:
    """What the released train function uses of OpenAI's clip.load("ViT-B/32") model: encode_image
    casting its input to the model's dtype (fp16 on a GPU), and encode_text. The released images
    are its Distribution tensor subclass (z_ is one, and torch carries the subclass through G and D);
    open_clip's layers call .to(), which that subclass breaks, so the teacher gets plain tensors
    (OpenAI's clip would carry the subclass through the ViT too: slightly slower, not faster)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.dtype = next(model.parameters()).dtype

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images.as_subclass(torch.Tensor).type(self.dtype))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens)


def released_clip(device: torch.device, tiny: bool) -> tuple[ReleasedCLIP, torch.Tensor]:
    """A random-weight CLIP for the released train function and its text features (K, 512) in fp16
    (its losses multiply them with .half() features). GPU: the ViT-B/32 architecture in fp16, as
    clip.load gives; CPU: a tiny CLIP of the same interface (224 px input, 512-d features)."""
    import open_clip
    from open_clip.model import CLIP

    torch.manual_seed(1234)
    if tiny:
        vision = {"image_size": 224, "layers": 1, "width": 64, "patch_size": 32, "head_width": 32}
        text = {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 1}
        model = CLIP(embed_dim=512, vision_cfg=vision, text_cfg=text)
    else:
        model = open_clip.create_model("ViT-B-32", pretrained=None, device="cpu")
    model = model.eval().to(device)
    if device.type == "cuda":
        model = model.half()
    clip = ReleasedCLIP(model)
    tokens = open_clip.get_tokenizer("ViT-B-32")([f"a photo of class {i}" for i in range(10)]).to(device)
    return clip, clip.encode_text(tokens).half()  # prompt text is irrelevant to the cost (computed once)


class ReleasedBigGAN:
    """The released BigGAN-CIFAR G, D, G_D, G_ema and EMA, built as its run() builds them."""

    def __init__(self, rel: types.SimpleNamespace, config: dict, device: torch.device, tiny: bool):
        self.rel, self.config, self.device, self.tiny = rel, config, device, tiny
        with contextlib.redirect_stdout(io.StringIO()):  # its constructors print parameter counts
            rel.utils.seed_rng(config["seed"])
            self.G = rel.BigGAN.Generator(**config).to(device)
            self.D = rel.BigGAN.Discriminator(**config).to(device)
            G_ema = rel.BigGAN.Generator(**{**config, "skip_init": True, "no_optim": True}).to(device)
            self.ema = rel.utils.ema(self.G, G_ema, config["ema_decay"], config["ema_start"])
        self.GD = rel.BigGAN.G_D(self.G, self.D)
        self.z_, self.y_ = rel.utils.prepare_z_y(config["batch_size"], self.G.dim_z, config["n_classes"],
                                                 device=str(device))
        self.ema_losses = rel.utils.ema_losses(start_itr=1000)  # as its train.py
        self.state_dict = {"itr": 0, "epoch": 0, "save_num": 0, "save_best_num": 0, "best_IS": 0,
                           "best_FID": 999999, "config": config}
        n = config["batch_size"] * config["num_D_steps"]  # one loader batch feeds the D steps of a G step
        g = torch.Generator(device=device).manual_seed(0)
        self.x = torch.rand(n, 3, 32, 32, device=device, generator=g) * 2 - 1
        self.y = torch.randint(0, config["n_classes"], (n,), device=device, generator=g)
        self.kd_train = None

    def da_step(self) -> None:
        """One G step of the DA game: what its GAN_training_function does without the KD terms
        (real images requiring grad, hinge losses with the loss EMAs, the .item() reads, G EMA)."""
        c, G, D, losses, utils = self.config, self.G, self.D, self.rel.losses, self.rel.utils
        b, itr = c["batch_size"], self.state_dict["itr"]
        self.G.train()
        self.D.train()
        G.optim.zero_grad()
        D.optim.zero_grad()
        xs, ys = torch.split(self.x, c["batch_size"]), torch.split(self.y, c["batch_size"])
        utils.toggle_grad(D, True)
        utils.toggle_grad(G, False)
        d_real_total = 0.0
        for i in range(c["num_D_steps"]):
            D.optim.zero_grad()
            self.z_.sample_()
            self.y_.sample_()
            x = xs[i] * 1
            x.requires_grad = True
            (d_fake, d_real), _, _, _ = self.GD(self.z_[:b], self.y_[:b], x, ys[i], train_G=False,
                                                policy=c["DiffAugment"])
            loss_real, loss_fake = losses.discriminator_loss(d_fake, d_real, self.ema_losses, itr)
            (loss_real + loss_fake).backward()
            loss_real.item(), loss_fake.item()
            d_real_total += torch.mean(d_real).item()
            torch.mean(d_fake).item()
            D.optim.step()
        utils.toggle_grad(D, False)
        utils.toggle_grad(G, True)
        G.optim.zero_grad()
        self.z_.sample_()
        self.y_.sample_()
        d_fake, _, _ = self.GD(self.z_, self.y_, train_G=True, policy=c["DiffAugment"])
        g_loss = losses.generator_loss(d_fake, d_real_total)
        g_loss.backward()
        self.ema_losses.update(g_loss.item(), "G_loss", itr)
        G.optim.step()
        self.ema.update(itr)
        self.state_dict["itr"] += 1

    def kd_step(self) -> None:
        """One G step of its own train function (DA + KD-DLGAN terms with the CLIP teacher)."""
        if self.kd_train is None:
            clip, text = released_clip(self.device, self.tiny)
            self.kd_train = self.rel.train_fns.GAN_training_function(
                self.G, self.D, self.GD, clip, text, self.z_, self.y_, self.ema, self.state_dict, self.config,
                self.ema_losses)
        self.G.train()
        self.D.train()
        self.kd_train(self.x, self.y)
        self.state_dict["itr"] += 1


def time_released(step, steps: int, repeats: int, device: torch.device, max_s: float) -> dict:
    """Seconds per G step of the released code, timed as train_step.time_step times kdgan's."""
    res = measure(lambda: [step() for _ in range(steps)], device, repeats, 1, max_s)
    return {**res, "s": res["s"] / steps, "all_s": [t / steps for t in res["all_s"]]}


# Ops that allocate or only change a tensor's metadata: no kernel runs for them on a GPU.
_NO_KERNEL = {"aten.empty", "aten.empty_strided", "aten.empty_like", "aten.as_strided_", "aten.detach_",
              "aten.lift_fresh", "aten._local_scalar_dense", "aten.set_", "aten.resize_"}


class KernelOps(TorchDispatchMode):
    """Counts the ops a step dispatches that run a kernel (views and allocations left out). A
    launch-bound GPU step costs about a fixed host time per such op, so on the CPU this count
    is the part of a GPU ratio that launch overhead decides."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if not func.is_view and str(func.overloadpacket) not in _NO_KERNEL:
            self.count += 1
        return func(*args, **(kwargs or {}))


def ops_and_syncs(step) -> tuple[int, int]:
    """Kernel ops and host syncs (kdgan.utils.syncs.HostSyncs) of one call of `step`, after one
    warm-up call. The syncs leave out torch.optim's step-count reads, which on CUDA read host
    tensors (the released code's Adam is not fused)."""
    step()
    with HostSyncs(optimizer_step_reads=False) as syncs, KernelOps() as ops:
        step()
    return ops.count, syncs.total


# --------------------------------------------------------------------------- parts
def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU x{torch.get_num_threads()} threads"


def nv_cuda(out: dict) -> bool:
    return out.get("nvlabs_ops", {}).get("impl") == "cuda"


def ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "n/a"


def stylegan2_part(nv, device: torch.device, tiny: bool, args, out: dict, save) -> None:
    cfg = sg2_config(device.type, tiny)
    where = device_name(device)
    tag = f"StyleGAN2 {cfg.resolution}px{f' ({CPU_SIZE})' if tiny else ''}"
    g = torch.Generator(device=device).manual_seed(0)
    real = torch.rand(cfg.batch_size, 3, cfg.resolution, cfg.resolution, device=device, generator=g) * 2 - 1
    reps = {"main": args.repeats, "r1": args.repeats_r1, "pl": args.repeats}
    res = {}
    with tempfile.TemporaryDirectory() as tmp:
        res["kdgan"] = run_side(lambda: KdganStyleGAN2(cfg, real, tmp), device, reps, args.max_s)
    res["nvlabs"] = run_side(lambda: NVlabsStyleGAN2(nv, cfg, real), device, reps, args.max_s)
    k, n = res["kdgan"], res["nvlabs"]
    print(f"anchors: {tag} parameters: kdgan G {k['params_G'] / 1e6:.2f}M D {k['params_D'] / 1e6:.2f}M, "
          f"NVlabs G {n['params_G'] / 1e6:.2f}M D {n['params_D'] / 1e6:.2f}M", flush=True)
    label = {"main": "main step", "r1": "R1 step", "pl": "path-length step"}
    for part in ("main", "r1", "pl"):
        kp, np_ = k[part], n[part]
        print(f"anchors: {tag} fp32 {label[part]} on {where}: kdgan {kp['s'] * 1e3:.1f} ms, "
              f"NVlabs {np_['s'] * 1e3:.1f} ms, ratio kdgan/NVlabs {ratio(kp['s'], np_['s'])} "
              f"(median of {kp['runs']} / {np_['runs']})", flush=True)
    if device.type == "cuda":
        print(f"anchors: {tag} fp32 main-step peak GPU memory on {where}: kdgan {k['peak_mib']:.0f} MiB, "
              f"NVlabs {n['peak_mib']:.0f} MiB, ratio kdgan/NVlabs {ratio(k['peak_mib'], n['peak_mib'])}",
              flush=True)
    print(f"anchors: {tag} fp32 main step, activations kept for the backward (most at once, weights "
          f"excluded; {'NVlabs with its CUDA ops' if nv_cuda(out) else 'NVlabs with its reference ops'}): "
          f"kdgan {k['kept_mib']:.1f} MiB, NVlabs {n['kept_mib']:.1f} MiB, ratio kdgan/NVlabs "
          f"{ratio(k['kept_mib'], n['kept_mib'])}", flush=True)
    per_kimg = KIMG / cfg.batch_size
    for side in (k, n):
        side["step_s"] = side["main"]["s"] + side["r1"]["s"] / cfg.r1_every + side["pl"]["s"] / cfg.pl_every
        side["s_per_kimg"] = side["step_s"] * per_kimg
    print(f"anchors: {tag} fp32 few-shot step on {where}: kdgan {k['s_per_kimg']:.1f} s/kimg, NVlabs "
          f"{n['s_per_kimg']:.1f} s/kimg, ratio kdgan/NVlabs {ratio(k['s_per_kimg'], n['s_per_kimg'])} "
          f"(main + R1/{cfg.r1_every} + PL/{cfg.pl_every} per step of {cfg.batch_size} images, "
          f"{per_kimg:g} steps per kimg)", flush=True)
    fields = ("resolution", "channel_base", "channel_max", "mapping_layers", "batch_size", "r1_every",
              "pl_every", "pl_batch_shrink", "style_mixing")
    out["stylegan2"] = {"config": {**{f: getattr(cfg, f) for f in fields}, "tiny": tiny}, "fp32": res}
    save()
    if args.compile:
        t0 = time.perf_counter()
        try:
            with tempfile.TemporaryDirectory() as tmp:
                compiled = sg2_config(device.type, tiny, compile_=True)
                c = run_side(lambda: KdganStyleGAN2(compiled, real, tmp), device, {"main": args.repeats},
                             args.max_s, parts=("main",), warmup=3)
        except Exception as e:  # a compiler failure must not cost the rows after it
            print(f"anchors: {tag} compiled main step failed after {time.perf_counter() - t0:.0f} s: "
                  f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}", flush=True)
            res["kdgan_compiled"] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            free(device)
            c = None
    if args.compile and c is not None:
        c["wall_s"] = time.perf_counter() - t0
        print(f"anchors: {tag} fp32 main step with torch.compile (kdgan compile=true; R1 / PL stay eager) on "
              f"{where}: kdgan {c['main']['s'] * 1e3:.1f} ms, NVlabs {n['main']['s'] * 1e3:.1f} ms, ratio "
              f"{ratio(c['main']['s'], n['main']['s'])}"
              + (f"; peak memory {c['peak_mib']:.0f} MiB" if c["peak_mib"] else "")
              + f"; {c['wall_s']:.0f} s with the compile", flush=True)
        res["kdgan_compiled"] = c
        save()
    if device.type != "cuda" or args.no_mixed:
        reason = "--no-mixed" if args.no_mixed else "CUDA only"
        print(f"anchors: {tag} mixed-precision row skipped ({reason})", flush=True)
        return
    mixed = {}
    with tempfile.TemporaryDirectory() as tmp:
        bf16 = sg2_config(device.type, tiny, "bf16")
        mixed["kdgan"] = run_side(lambda: KdganStyleGAN2(bf16, real, tmp, torch.bfloat16), device, reps,
                                  args.max_s, parts=("main",))
    mixed["nvlabs"] = run_side(lambda: NVlabsStyleGAN2(nv, cfg, real, mixed=True), device, reps, args.max_s,
                               parts=("main",))
    k, n = mixed["kdgan"], mixed["nvlabs"]
    km, nm = k["main"], n["main"]
    print(f"anchors: {tag} mixed precision main step on {where}: kdgan (bf16 autocast) {km['s'] * 1e3:.1f} "
          f"ms, NVlabs (fp16 in the 4 highest resolutions, conv_clamp 256) {nm['s'] * 1e3:.1f} ms, ratio "
          f"kdgan/NVlabs {ratio(km['s'], nm['s'])}; peak memory kdgan {k['peak_mib']:.0f} MiB, NVlabs "
          f"{n['peak_mib']:.0f} MiB, ratio {ratio(k['peak_mib'], n['peak_mib'])}; activations kept kdgan "
          f"{k['kept_mib']:.0f} MiB, NVlabs {n['kept_mib']:.0f} MiB (median of {km['runs']} / {nm['runs']})",
          flush=True)
    out["stylegan2"]["mixed"] = mixed
    save()


def target(throughput_ratio: float) -> str:
    """The BigGAN-CIFAR throughput target and whether a ratio meets it."""
    met = "met" if throughput_ratio >= THROUGHPUT_TARGET else "not met"
    return f"target >= {THROUGHPUT_TARGET:g}x: {met}"


def biggan_part(rel, device: torch.device, tiny: bool, args, out: dict, save) -> None:
    from train_step import random_data, time_step

    where = device_name(device)
    tag = "BigGAN-CIFAR" + (f" ({CPU_SIZE})" if tiny else "")
    cfg = biggan_config(device.type, tiny)
    overrides = {"G_ch": cfg.g_ch, "D_ch": cfg.d_ch, "batch_size": cfg.batch_size} if tiny else {}
    config = released_config(rel, overrides)
    pairs = (("g_ch", "G_ch"), ("d_ch", "D_ch"), ("batch_size", "batch_size"), ("d_steps", "num_D_steps"),
             ("z_dim", "dim_z"), ("diffaugment", "DiffAugment"), ("g_lr", "G_lr"), ("d_lr", "D_lr"))
    mismatch = {a: (getattr(cfg, a), config[b]) for a, b in pairs if getattr(cfg, a) != config[b]}
    if mismatch:
        print(f"anchors: {tag} WARNING: kdgan and the released config differ: {mismatch}", flush=True)
    res = {"config": {"ch": cfg.g_ch, "batch": cfg.batch_size, "d_steps": cfg.d_steps,
                      "diffaugment": cfg.diffaugment, "released_script": RELEASED_SCRIPT, "tiny": tiny}}
    torch.manual_seed(0)
    k_s, _, _ = time_step(cfg, args.steps, args.repeats_biggan)
    free(device)
    released = ReleasedBigGAN(rel, config, device, tiny)
    r = time_released(released.da_step, args.steps, args.repeats_biggan, device, args.max_s)
    del released
    free(device)
    thr = r["s"] / k_s
    print(f"anchors: {tag} DA (batch {cfg.batch_size}, {cfg.d_steps} D steps) on {where}: kdgan "
          f"{k_s * 1e3:.1f} ms per G step, released KD_DLGAN code {r['s'] * 1e3:.1f} ms per G step, ratio "
          f"kdgan/released {k_s / r['s']:.2f}x time = {thr:.2f}x throughput ({target(thr)}); median of "
          f"{args.repeats_biggan} x {args.steps} steps", flush=True)
    res["da"] = {"kdgan_s": k_s, "released": r, "throughput_ratio": thr}
    out["biggan"] = res
    save()
    with tempfile.TemporaryDirectory() as tmp:  # what launch overhead makes of the GPU ratio
        trainer = Trainer(cfg, tmp, dataset=random_data(cfg))
        k_ops, k_syncs = ops_and_syncs(trainer.train_step)
        del trainer
    released = ReleasedBigGAN(rel, config, device, tiny)
    r_ops, r_syncs = ops_and_syncs(released.da_step)
    del released
    free(device)
    print(f"anchors: {tag} DA, per G step on {where}: ops that launch a kernel (dispatched ops, views and "
          f"allocations left out) kdgan {k_ops}, released {r_ops} ({r_ops / k_ops:.2f}x kdgan's); host syncs "
          f"(Adam's host step counts left out) kdgan {k_syncs}, released {r_syncs}", flush=True)
    res["da"].update(kdgan_ops=k_ops, released_ops=r_ops, kdgan_syncs=k_syncs, released_syncs=r_syncs)
    save()
    if not args.no_mixed:  # the same step in bf16 autocast: what a user may choose, not like for like
        torch.manual_seed(0)
        bf_s, _, _ = time_step(dataclasses.replace(cfg, precision="bf16"), args.steps, args.repeats_biggan)
        free(device)
        print(f"anchors: {tag} DA, kdgan in bf16 autocast on {where}: {bf_s * 1e3:.1f} ms per G step, "
              f"{k_s / bf_s:.2f}x kdgan fp32's throughput, {r['s'] / bf_s:.2f}x the released code's (fp32); "
              f"median of {args.repeats_biggan} x {args.steps} steps", flush=True)
        res["da_bf16"] = {"kdgan_s": bf_s, "throughput_ratio": r["s"] / bf_s}
        save()
    if device.type == "cuda":  # whole steps as CUDA graphs: one launch per step instead of thousands
        for precision in ("fp32",) if args.no_mixed else ("fp32", "bf16"):
            torch.manual_seed(0)
            g_s, _, _ = time_step(dataclasses.replace(cfg, precision=precision, cuda_graphs=True), args.steps,
                                  args.repeats_biggan)
            free(device)
            thr = r["s"] / g_s
            print(f"anchors: {tag} DA, kdgan {precision} with cuda_graphs=true on {where}: "
                  f"{g_s * 1e3:.1f} ms per G step, {k_s / g_s:.2f}x kdgan fp32 eager's throughput, "
                  f"{thr:.2f}x the released code's (fp32; {target(thr)}); median of {args.repeats_biggan} x "
                  f"{args.steps} steps", flush=True)
            res[f"da_graphs_{precision}"] = {"kdgan_s": g_s, "throughput_ratio": thr}
            save()
    if args.no_kd:
        print(f"anchors: {tag} DA + KD-DLGAN row skipped (--no-kd)", flush=True)
        return
    teacher = "clip-random" if device.type == "cuda" and not tiny else "clip-tiny-random"
    torch.manual_seed(0)
    k_s, _, _ = time_step(biggan_config(device.type, tiny, teacher), args.steps, args.repeats_biggan)
    free(device)
    released = ReleasedBigGAN(rel, config, device, tiny)
    r = time_released(released.kd_step, args.steps, args.repeats_biggan, device, args.max_s)
    del released
    free(device)
    label = "ViT-B/32 random weights" if teacher == "clip-random" else "tiny random CLIP"
    print(f"anchors: {tag} DA + KD-DLGAN ({label}) on {where}: kdgan {k_s * 1e3:.1f} ms per G step, released "
          f"train function {r['s'] * 1e3:.1f} ms per G step, ratio kdgan/released {k_s / r['s']:.2f}x time = "
          f"{r['s'] / k_s:.2f}x throughput; median of {args.repeats_biggan} x {args.steps} steps", flush=True)
    res["da_kd"] = {"teacher": teacher, "kdgan_s": k_s, "released": r, "throughput_ratio": r["s"] / k_s}
    save()


# --------------------------------------------------------------------------- main
def timed_part(label: str, key: str, run, out: dict) -> None:
    """Run one part, record its wall time in out[key]["wall_s"] and print it."""
    t0 = time.perf_counter()
    run()
    out[key]["wall_s"] = time.perf_counter() - t0
    print(f"anchors: {label} part took {out[key]['wall_s']:.0f} s", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="cuda, cpu (a tiny config), or auto (cuda if visible)")
    p.add_argument("--nvlabs", default="", help="path of a NVlabs/stylegan2-ada-pytorch checkout")
    p.add_argument("--kddlgan", default="", help="path of a cuikaiwen18/KD_DLGAN checkout")
    p.add_argument("--json", default="", help="write every figure to this JSON file (after each part)")
    p.add_argument("--dry", action="store_true", help="print what would be measured (no GPU, no checkouts)")
    p.add_argument("--repeats", type=int, default=10, help="timed runs of the StyleGAN2 main and PL steps")
    p.add_argument("--repeats-r1", type=int, default=3, help="timed runs of the StyleGAN2 R1 step")
    p.add_argument("--repeats-biggan", type=int, default=5, help="timed runs of the BigGAN-CIFAR steps")
    p.add_argument("--steps", type=int, default=3, help="BigGAN-CIFAR G steps per timed run")
    p.add_argument("--max-s", type=float, default=12.0,
                   help="stop repeating a measurement once its timed runs pass this many s (min 2 runs)")
    p.add_argument("--no-mixed", action="store_true",
                   help="skip the mixed-precision rows (StyleGAN2 on a GPU, BigGAN-CIFAR kdgan bf16)")
    p.add_argument("--no-kd", action="store_true", help="skip the BigGAN-CIFAR DA + KD-DLGAN row")
    p.add_argument("--compile", action="store_true",
                   help="also time kdgan's StyleGAN2 main step with compile=true (torch.compile'd G and D)")
    p.add_argument("--ext-dir", default="", help="TORCH_EXTENSIONS_DIR of NVlabs' plugins (default: torch's)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument("--cpu-size", choices=sorted(CPU_SIZES), default="tiny",
                   help="the CPU run's config: tiny (exercises the code, seconds) or medium (the CPU figure "
                        "of every ratio, 64 px StyleGAN2 and a 32-channel BigGAN, minutes)")
    args = p.parse_args()
    global CPU_SIZE
    CPU_SIZE = args.cpu_size
    TINY_SG2.clear(), TINY_SG2.update(CPU_SIZES[args.cpu_size][0])
    TINY_BIGGAN.clear(), TINY_BIGGAN.update(CPU_SIZES[args.cpu_size][1])
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    cuda = torch.cuda.is_available()
    dev = ("cuda" if cuda else "cpu") if args.device == "auto" else args.device
    have = bool(args.nvlabs or args.kddlgan)
    if args.dry or not have:
        why = "--dry" if args.dry else "no --nvlabs / --kddlgan checkout given"
        dev = "cuda" if args.device == "auto" else args.device  # the real run, unless asked for another
        tiny = dev == "cpu"
        size = f" a {args.cpu_size} CPU config" if tiny else ""
        print(f"anchors (dry run, {why}; nothing is run): with --device {dev} --nvlabs PATH --kddlgan PATH "
              f"it measures{size}, kdgan vs the anchor, same inputs, one "
              "process:")
        mixed = dev.startswith("cuda") and not args.no_mixed
        for line in plan(dev, tiny, not args.no_kd, mixed, args.compile, not args.no_mixed):
            print(f"  {line}")
        return
    device = torch.device(dev)
    if device.type == "cuda" and not cuda:
        sys.exit("anchors: --device cuda but no CUDA device is visible (--device cpu: the tiny run; --dry)")
    tiny = device.type == "cpu"
    if tiny and args.cpu_size == "tiny":
        args.repeats, args.repeats_r1, args.repeats_biggan, args.steps = (min(args.repeats, 2),
                                                                          min(args.repeats_r1, 1),
                                                                          min(args.repeats_biggan, 2), 1)
    torch.backends.cuda.matmul.allow_tf32 = True  # TF32 on for both sides
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    t_start = time.perf_counter()
    out: dict = {"device": device_name(device), "torch": torch.__version__, "cuda": torch.version.cuda,
                 "tiny": tiny, "cpu_size": args.cpu_size if tiny else None, "tf32": True,
                 "cudnn_benchmark": True}

    def save() -> None:
        out["wall_s"] = time.perf_counter() - t_start
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(out, indent=2))

    mode = "TF32 on, cudnn.benchmark on"
    if tiny:
        mode = "tiny CPU config (the figures exercise the code, they mean nothing)"
        if args.cpu_size == "medium":
            mode = f"medium CPU config {TINY_SG2} / {TINY_BIGGAN}, {torch.get_num_threads()} threads"
    print(f"anchors: {device_name(device)}, torch {torch.__version__}, CUDA {torch.version.cuda}, {mode}",
          flush=True)
    if args.nvlabs:
        nv = import_nvlabs(Path(args.nvlabs).expanduser().resolve())
        if nv.note:
            print(f"anchors: NVlabs note: {nv.note}", flush=True)
        ops = build_nvlabs_ops(nv, device, args.ext_dir)
        ops["gradfix"] = gradfix_status(nv, device)
        out["nvlabs_ops"] = ops
        print(f"anchors: NVlabs ops: {'CUDA plugins' if ops['impl'] == 'cuda' else 'reference ops'} "
              f"({ops['reason']}); build {ops['build_s']:.1f} s", flush=True)
        print(f"anchors: NVlabs gradfix: {ops['gradfix']}", flush=True)
        save()
        timed_part("StyleGAN2", "stylegan2", lambda: stylegan2_part(nv, device, tiny, args, out, save), out)
    else:
        print("anchors: StyleGAN2 part skipped (no --nvlabs)", flush=True)
    if args.kddlgan:
        rel, note = import_released(Path(args.kddlgan).expanduser().resolve())
        if note:
            print(f"anchors: KD_DLGAN note: {note}", flush=True)
        timed_part("BigGAN-CIFAR", "biggan", lambda: biggan_part(rel, device, tiny, args, out, save), out)
    else:
        print("anchors: BigGAN-CIFAR part skipped (no --kddlgan)", flush=True)
    save()
    wrote = f"; wrote {args.json}" if args.json else ""
    print(f"anchors: done in {out['wall_s']:.0f} s{wrote}", flush=True)


if __name__ == "__main__":
    main()
