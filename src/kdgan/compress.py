"""Generator compression (AKDG, Tsunashima et al., ICPR 2020): teacher loading, student sizing, the
teacher-vs-student report (size, multiply-adds, speed, FID / KID, samples from the same z).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from kdgan import config as config_lib
from kdgan.data import ImageSet, to_uint8
from kdgan.errors import KdganError
from kdgan.nets import load_generator

log = logging.getLogger(__name__)

STUDENTS = ("dcgan", "mlp", "biggan", "same")  # `same`: the teacher's own family, narrower
_STUDENT_BASE_CH = {"dcgan": 512, "mlp": 512}  # the AKDG paper's student widths at --width 1


# --------------------------------------------------------------------------- teacher
def weights_sha256(net: nn.Module) -> str:
    """sha256 over a network's state (names, dtypes, shapes, bytes), independent of the file format."""
    h = hashlib.sha256()
    for name, t in sorted(net.state_dict().items()):
        t = t.detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def load_teacher_generator(path: str | os.PathLike, device: torch.device | str) -> tuple[nn.Module, str]:
    """The frozen teacher G_T (eval mode, no gradients) and the sha256 of its weights."""
    G = load_generator(path, device)
    return G, weights_sha256(G)


def read_teacher_info(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """(network config, training config or {}) of a teacher checkpoint, export folder or file."""
    from kdgan.training.checkpoint import load_checkpoint

    p = Path(path)
    if p.suffix == ".pt":
        ckpt = load_checkpoint(p)
        return dict(ckpt["nets"]["G_ema"]["config"]), dict(ckpt.get("config", {}))
    G = load_generator(p)
    cfg_file = (p if p.is_dir() else p.parent) / "config.json"
    training = json.loads(cfg_file.read_text()).get("training", {}) if cfg_file.exists() else {}
    return dict(G.config), training


def check_teacher_fits(G_teacher: nn.Module, cfg: config_lib.TrainConfig, dataset: ImageSet) -> None:
    """Refuse a student config or data that does not match the teacher, naming the fix."""
    if cfg.z_dim != G_teacher.z_dim:
        raise KdganError(f"the student's z_dim {cfg.z_dim} differs from the teacher's {G_teacher.z_dim}; "
                         "they share latents, so drop --set z_dim (kdgan compress takes it from the teacher)")
    if cfg.resolution != G_teacher.img_resolution:
        raise KdganError(f"resolution {cfg.resolution} differs from the teacher's {G_teacher.img_resolution} "
                         "px; drop --resolution (kdgan compress takes it from the teacher)")
    if G_teacher.c_dim > 0 and dataset.num_classes != G_teacher.c_dim:
        found = "no labels" if dataset.labels is None else f"{dataset.num_classes} classes"
        raise KdganError(f"the teacher is conditional on {G_teacher.c_dim} classes but the data has "
                         f"{found}; use the data the teacher was trained on")


def compress_fields(teacher: str, student: str, width: float, method: str) -> dict[str, Any]:
    """Config fields of a compression run: COMPRESS_DEFAULTS, the student, and the teacher's
    latent size, classes, resolution and D width."""
    if student not in STUDENTS:
        raise KdganError(f"unknown student {student!r}; choose from {', '.join(STUDENTS)}")
    if not 0 < width <= 4:
        raise KdganError(f"--width must be in (0, 4], got {width}")
    if not Path(teacher).exists():
        raise KdganError(f"teacher {teacher} does not exist; pass a kdgan checkpoint (.pt), export "
                         "folder or G_ema.safetensors")
    net, training = read_teacher_info(teacher)
    arch = net["arch"] if student in ("same", net["arch"]) else student
    widths: dict[str, Any] = {}
    if arch in _STUDENT_BASE_CH:
        base = _STUDENT_BASE_CH[arch]
        step = 2 ** max(1, round(np.log2(net["img_resolution"] / 4))) if arch == "dcgan" else 1
        widths["g_ch"] = max(step, int(round(base * width / step)) * step)
    elif arch == net["arch"] == "stylegan2":
        # G's channels narrowed by --width; the mapping network and D keep the teacher run's widths
        widths = {"channel_base": max(1, int(round(net["channel_base"] * width))),
                  "channel_max": max(1, int(round(net["channel_max"] * width))),
                  "w_dim": net["w_dim"], "mapping_layers": net["mapping_layers"],
                  "d_channel_base": int(training.get("d_channel_base") or training.get("channel_base")
                                        or net["channel_base"]),
                  "d_channel_max": int(training.get("d_channel_max") or training.get("channel_max")
                                       or net["channel_max"]),
                  "mbstd_group": int(training.get("mbstd_group", 4))}
    elif arch == net["arch"]:
        widths["g_ch"] = max(1, int(round(net["ch"] * width)))
    else:
        raise KdganError(f"student {student!r} is a different family from the teacher ({net['arch']}); "
                         "use dcgan, mlp, or same (the teacher's family, narrowed by --width)")
    return {
        **config_lib.COMPRESS_DEFAULTS,
        "compress_teacher": str(teacher), "compress_method": method, "arch": arch, **widths,
        "z_dim": net["z_dim"], "resolution": net["img_resolution"], "conditional": net["c_dim"] > 0,
        "d_ch": int(training.get("d_ch", 64)),
    }


# --------------------------------------------------------------------------- size and speed
def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


@torch.no_grad()
def count_macs_per_image(G: nn.Module) -> int:
    """Multiply-adds per generated image, from torch.utils.flop_counter (conv, linear, matmul).

    Counted at batch 2 minus batch 1 on the CPU, so per-forward costs that do not scale with the
    batch (spectral-norm weight scaling) are left out; FLOPs = 2 x multiply-adds.
    """
    from torch.utils.flop_counter import FlopCounterMode

    G = _cpu_copy(G)
    flops = []
    for b in (1, 2):
        z, labels = torch.randn(b, G.z_dim), torch.zeros(b, dtype=torch.long)
        with FlopCounterMode(display=False) as counter:
            G(z, labels)
        flops.append(counter.get_total_flops())
    return int((flops[1] - flops[0]) // 2)


def _cpu_copy(G: nn.Module) -> nn.Module:
    return copy.deepcopy(G).cpu().eval() if next(G.parameters()).device.type != "cpu" else G.eval()


@torch.no_grad()
def time_forward(G: nn.Module, batch: int, device: torch.device, runs: int, warmup: int = 2) -> list[float]:
    """Seconds per G forward of `batch` images on `device` (each run synchronised), `runs` times."""
    G = G.to(device).eval()
    z = torch.randn(batch, G.z_dim, device=device)
    labels = torch.arange(batch, device=device) % max(G.c_dim, 1)
    times = []
    for i in range(warmup + runs):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        G(z, labels)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times


def speed_profile(G: nn.Module, device: torch.device, latency_runs: int = 20, throughput_batch: int = 256,
                  throughput_runs: int = 3) -> dict[str, float]:
    """Median latency at batch 1 (ms) and median throughput at `throughput_batch` (images/s)."""
    lat = statistics.median(time_forward(G, 1, device, latency_runs))
    thr = statistics.median(time_forward(G, throughput_batch, device, throughput_runs, warmup=1))
    return {"latency_ms_b1": lat * 1e3, f"throughput_b{throughput_batch}": throughput_batch / thr}


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({torch.get_num_threads()} threads)"


# --------------------------------------------------------------------------- report
@torch.no_grad()
def save_pairs_grid(G_teacher: nn.Module, G_student: nn.Module, path: Path, seed: int,
                    cols: int = 10, pairs: int = 4) -> None:
    """A grid from the same z and labels: rows alternate teacher, student (`pairs` of them)."""
    from kdgan.training.monitor import save_image_grid

    device = next(G_student.parameters()).device
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(pairs * cols, G_teacher.z_dim, generator=g).to(device)
    labels = (torch.arange(pairs * cols) % max(G_teacher.c_dim, 1)).to(device)
    rows = []
    for p in range(pairs):
        sl = slice(p * cols, (p + 1) * cols)
        rows += [to_uint8(G_teacher(z[sl], labels[sl])), to_uint8(G_student(z[sl], labels[sl]))]
    save_image_grid(torch.cat(rows), path, cols)


def _fmt_metric(entry: dict[str, Any] | None, scale: float = 1.0) -> str:
    if entry is None:
        return "-"
    return f"{entry['mean'] * scale:.2f} +- {entry['std'] * scale:.2f}"


def write_report(run_dir: str | os.PathLike, metrics: tuple[str, ...] | None = None, repeat: int = 1,
                 speed_devices: tuple[str, ...] | None = None, latency_runs: int = 20,
                 throughput_batch: int = 256, protocol: str | None = None, num_gen: int | None = None,
                 ref: str | None = None) -> Path:
    """Teacher vs student of a `kdgan compress` run: report.md, report.json and a sample grid.

    Quality uses the run's evaluation settings (eval_protocol, eval_num_gen, eval_ref,
    inception) unless `protocol`, `num_gen` or `ref` are given, with the same seeds for
    teacher and student; speed is measured on the CPU and, when present, the GPU.
    """
    from kdgan.metrics import evaluate, generate_uint8, get_protocol, load_inception, reference_features
    from kdgan.metrics.evaluate import parse_metrics
    from kdgan.training.checkpoint import CheckpointManager
    from kdgan.utils.dist import resolve_device

    run = Path(run_dir)
    ckpt = CheckpointManager(run / "checkpoints", 1).load_latest()
    if ckpt is None:
        raise KdganError(f"{run} has no checkpoint; train it with kdgan compress first")
    cfg = config_lib.from_dict(ckpt["config"])
    if not cfg.compress_teacher:
        raise KdganError(f"{run} is not a compression run (no compress_teacher in its config)")
    device = resolve_device(cfg.device)
    G_teacher, sha = load_teacher_generator(cfg.compress_teacher, device)
    saved_sha = ckpt.get("compress", {}).get("teacher_sha256", "")
    if sha != saved_sha:
        raise KdganError(f"the teacher at {cfg.compress_teacher} is not the one {run} was distilled from "
                         f"(weights sha256 {sha[:12]}, recorded {saved_sha[:12]}); restore that file")
    G_student = load_generator(run / "checkpoints" / f"ckpt-{int(ckpt['step']):09d}.pt", device)
    step = int(ckpt["step"])
    del ckpt

    nets = {"teacher": G_teacher, "student": G_student}
    rows: dict[str, dict[str, Any]] = {k: {"parameters": count_parameters(G),
                                           "macs_per_image": count_macs_per_image(G),
                                           "arch": G.config["arch"], "ch": G.config.get("ch"),
                                           "width": _width_text(G.config)}
                                       for k, G in nets.items()}
    devices = speed_devices or (("cpu", "cuda") if torch.cuda.is_available() else ("cpu",))
    speed_names = {}
    for dev_name in devices:
        dev = torch.device(dev_name)
        speed_names[dev_name] = device_name(dev)
        for k, G in nets.items():
            log.info("timing the %s on %s", k, speed_names[dev_name])
            prof = speed_profile(G, dev, latency_runs, throughput_batch)
            rows[k].update({f"{dev_name}/{m}": v for m, v in prof.items()})
        for G in nets.values():
            G.to(device)

    proto = get_protocol(protocol or cfg.eval_protocol, num_gen or cfg.eval_num_gen or None)
    extractor = load_inception(cfg.inception, device)
    names = parse_metrics(",".join(metrics or ("fid", "kid", "is")), proto)  # IS: "unavailable" w/o logits
    ref_features = reference_features(ref or cfg.eval_ref or cfg.data, proto.ref_split, extractor)
    quality = {}
    for k, G in nets.items():
        log.info("evaluating the %s (%s, %d images x %d)", k, proto.name, proto.num_gen, repeat)
        quality[k] = evaluate(lambda s, G=G: generate_uint8(G, proto.num_gen, s, 100, device),
                              ref_features, extractor, proto, names, repeats=repeat, seed=cfg.seed)
        rows[k].update({m: v for m, v in quality[k]["metrics"].items()})

    grid = run / "samples" / "teacher-vs-student.png"
    save_pairs_grid(G_teacher, G_student, grid, cfg.seed)

    report = {"run": str(run), "step": step, "method": cfg.compress_method, "teacher": cfg.compress_teacher,
              "teacher_sha256": sha, "student": {"arch": cfg.arch, "g_ch": cfg.g_ch}, "rows": rows,
              "devices": speed_names, "quality": quality, "grid": str(grid)}
    (run / "report.json").write_text(json.dumps(report, indent=2, default=float))
    md = run / "report.md"
    md.write_text(format_report(report, throughput_batch))
    return md


def _width_text(config: dict[str, Any]) -> str:
    if config["arch"] == "stylegan2":
        return f"channels min({config['channel_base']} / r, {config['channel_max']})"
    return f"ch {config.get('ch')}"


def _row_width(row: dict[str, Any]) -> str:
    return row.get("width") or f"ch {row['ch']}"  # reports written before "width" existed


def format_report(report: dict[str, Any], throughput_batch: int = 256) -> str:
    """The markdown of a report dict (teacher | student | student / teacher)."""
    t, s = report["rows"]["teacher"], report["rows"]["student"]
    lines = [
        f"# Compression report: {Path(report['run']).name}",
        "",
        f"Teacher `{report['teacher']}` (weights sha256 {report['teacher_sha256'][:12]}), "
        f"student {s['arch']} ({_row_width(s)}) trained by **{report['method']}** "
        f"for {report['step']} steps.",
        "",
        "| | teacher | student | student / teacher |",
        "| --- | --- | --- | --- |",
        f"| network | {t['arch']} ({_row_width(t)}) "
        f"| {s['arch']} ({_row_width(s)}) | |",
        f"| parameters | {t['parameters']:,} | {s['parameters']:,} | "
        f"{s['parameters'] / t['parameters']:.3f} |",
        f"| multiply-adds / image | {t['macs_per_image'] / 1e6:,.1f}M | {s['macs_per_image'] / 1e6:,.1f}M | "
        f"{s['macs_per_image'] / max(t['macs_per_image'], 1):.3f} |",
    ]
    for dev, name in report["devices"].items():
        lat, thr = f"{dev}/latency_ms_b1", f"{dev}/throughput_b{throughput_batch}"
        lines.append(f"| latency, batch 1, {name} | {t[lat]:.2f} ms | {s[lat]:.2f} ms | "
                     f"{t[lat] / s[lat]:.2f}x faster |")
        lines.append(f"| throughput, batch {throughput_batch}, {name} | {t[thr]:,.0f} img/s | "
                     f"{s[thr]:,.0f} img/s | {s[thr] / t[thr]:.2f}x |")
    q = report["quality"]["teacher"]
    for key, label, scale in (("fid", "FID", 1.0), ("kid", "KID x 1e3", 1e3), ("is", "IS", 1.0)):
        if key in t:
            lines.append(f"| {label} | {_fmt_metric(t.get(key), scale)} | "
                         f"{_fmt_metric(s.get(key), scale)} | |")
    for key, reason in q.get("unavailable", {}).items():
        lines.append(f"| {key.upper()} | unavailable | unavailable | {reason} |")
    ref, gen = q["reference"], q["generated"]
    lines += [
        "",
        f"Quality: protocol {q['protocol']}, {gen['num_images']} generated per network (seeds "
        f"{gen['seeds']}, the same z for both) vs {ref['num_images']} reference images ({ref['source']}, "
        f"split {ref['split']}, sha256 {ref['content_sha256'][:12]}); {q['feature_extractor']}, "
        f"resize {q['resize']}. Speed: median of repeated forwards, in eval mode, fp32.",
        *[f"Note: {n}" for n in q["notes"]],
        "",
        f"![teacher (odd rows) and student (even rows) from the same z]"
        f"({Path(report['grid']).relative_to(report['run'])})",
        "",
        "Rows alternate teacher, student; each pair shares z and class.",
    ]
    return "\n".join(lines) + "\n"

