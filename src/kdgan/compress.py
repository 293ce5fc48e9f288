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


def _student_widths(net: dict[str, Any], training: dict[str, Any], arch: str, width: float) -> dict[str, Any]:
    """The width fields of a student of family `arch` at `width` for the teacher `net`."""
    if arch in _STUDENT_BASE_CH:
        base = _STUDENT_BASE_CH[arch]
        step = 2 ** max(1, round(np.log2(net["img_resolution"] / 4))) if arch == "dcgan" else 1
        return {"g_ch": max(step, int(round(base * width / step)) * step)}
    if arch == net["arch"] == "stylegan2":
        # G's channels narrowed by --width; the mapping network and D keep the teacher run's widths
        return {"channel_base": max(1, int(round(net["channel_base"] * width))),
                "channel_max": max(1, int(round(net["channel_max"] * width))),
                "w_dim": net["w_dim"], "mapping_layers": net["mapping_layers"],
                "d_channel_base": int(training.get("d_channel_base") or training.get("channel_base")
                                      or net["channel_base"]),
                "d_channel_max": int(training.get("d_channel_max") or training.get("channel_max")
                                     or net["channel_max"]),
                "mbstd_group": int(training.get("mbstd_group", 4))}
    if arch == net["arch"]:
        return {"g_ch": max(1, int(round(net["ch"] * width)))}
    raise KdganError(f"student {arch!r} is a different family from the teacher ({net['arch']}); "
                     "use dcgan, mlp, or same (the teacher's family, narrowed by --width)")


def _generator_size(config: dict[str, Any]) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of a generator built from `config`."""
    from kdgan.nets import build_generator

    G = build_generator(config).requires_grad_(False)  # as loaded generators are (FlopCounterMode needs it)
    return count_parameters(G), count_macs_per_image(G)


def _student_size(net: dict[str, Any], arch: str, widths: dict[str, Any]) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of the student G these fields build."""
    config = {"arch": arch, **{k: net[k] for k in ("z_dim", "c_dim", "img_resolution")}}
    if arch == "stylegan2":
        config.update({k: widths[k] for k in ("channel_base", "channel_max", "w_dim", "mapping_layers")})
    else:
        config["ch"] = widths["g_ch"]
    return _generator_size(config)


AUTO_WIDTHS = tuple(2.0 ** -k for k in range(9))  # 1, 1/2, ..., 1/256: tried in turn by --width auto


def compress_fields(teacher: str, student: str, width: float | None, method: str) -> dict[str, Any]:
    """Config fields of a compression run: COMPRESS_DEFAULTS, the student, and the teacher's
    latent size, classes, resolution and D width.

    `width` None picks the widest of AUTO_WIDTHS whose student has fewer parameters and fewer
    multiply-adds per image than the teacher (refusing, with the fix, when none has); an explicit
    width that gives a student as large as the teacher is trained, with a warning.
    """
    if student not in STUDENTS:
        raise KdganError(f"unknown student {student!r}; choose from {', '.join(STUDENTS)}")
    if width is not None and not 0 < width <= 4:
        raise KdganError(f"--width must be in (0, 4], got {width}")
    if not Path(teacher).exists():
        raise KdganError(f"teacher {teacher} does not exist; pass a kdgan checkpoint (.pt), export "
                         "folder or G_ema.safetensors")
    net, training = read_teacher_info(teacher)
    arch = net["arch"] if student in ("same", net["arch"]) else student
    teacher_size = _generator_size(net)
    teacher_text = f"{teacher_size[0]:,} parameters, {teacher_size[1] / 1e6:,.1f}M multiply-adds per image"
    if width is None:
        for w in AUTO_WIDTHS:
            widths = _student_widths(net, training, arch, w)
            size = _student_size(net, arch, widths)
            if size[0] < teacher_size[0] and size[1] < teacher_size[1]:
                width = w
                break
        else:
            raise KdganError(
                f"no --student {student} width down to {AUTO_WIDTHS[-1]:g} is smaller than this teacher "
                f"({teacher_text}; the narrowest has {size[0]:,} parameters, {size[1] / 1e6:,.1f}M "
                "multiply-adds); use --student same --width 0.5 (the teacher's family), or pass --width "
                "to train a student that large anyway")
        log.info("student %s --width %g (auto: the widest with fewer parameters and multiply-adds than "
                 "the teacher): %s parameters (%.2fx the teacher's), %.1fM multiply-adds per image (%.2fx)",
                 student, width, f"{size[0]:,}", size[0] / teacher_size[0], size[1] / 1e6,
                 size[1] / teacher_size[1])
    widths = _student_widths(net, training, arch, width)
    size = _student_size(net, arch, widths)
    if size[0] >= teacher_size[0] or size[1] >= teacher_size[1]:
        log.warning("the student (%s parameters, %.1fM multiply-adds per image) is not smaller than the "
                    "teacher (%s): it will be as slow or slower; leave --width out to size it from the "
                    "teacher", f"{size[0]:,}", size[1] / 1e6, teacher_text)
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
    """mean +- std over repeats; the mean alone for one repeat (a std of one value says nothing)."""
    if entry is None:
        return "-"
    if len(entry.get("values", [0, 0])) < 2:
        return f"{entry['mean'] * scale:.2f}"
    return f"{entry['mean'] * scale:.2f} +- {entry['std'] * scale:.2f}"


def report_settings(cfg: config_lib.TrainConfig, protocol: str | None = None, num_gen: int | None = None,
                    ref: str | None = None, ref_split: str | None = None,
                    announce: bool = True) -> tuple[Any, str]:
    """The report's protocol and reference source, checked without loading any images (so
    `kdgan compress` can refuse before its first step). The default protocol (the run's
    eval_protocol, cifar) needs a test split; data without one falls back to `fewshot`
    (all training images as reference), saying so. Errors name `kdgan compress` flags."""
    from kdgan.data.sources import source_splits, split_available
    from kdgan.metrics import get_protocol

    name = protocol or cfg.eval_protocol
    n = num_gen or cfg.eval_num_gen or None
    if name == "custom" and not n:
        raise KdganError("--report-protocol custom needs --report-num-gen N")
    if cfg.inception not in ("auto", "torch-fidelity", "tf-torchscript"):
        raise KdganError(f"inception {cfg.inception!r} is unknown; --set inception=auto, torch-fidelity or "
                         "tf-torchscript")
    proto = get_protocol(name, n, ref_split)
    source = ref or cfg.eval_ref or cfg.data
    splits = source_splits(source)
    available = lambda split: split_available(splits, split)  # noqa: E731
    if available(proto.ref_split):
        return proto, source
    have = f"the splits {', '.join(splits)}" if splits else "no split folders"
    if protocol is None and ref is None and ref_split is None and available("train"):
        fallback = get_protocol("fewshot", num_gen)
        if announce:
            log.info("the report's default protocol %s compares with the %r split, which %s lacks (it has "
                     "%s): the report uses protocol fewshot instead (generated images vs the training "
                     "images); choose with --report-protocol, --report-ref or --report-ref-split",
                     proto.name, proto.ref_split, source, have)
        return fallback, source
    raise KdganError(
        f"the report's protocol {proto.name} compares with the {proto.ref_split!r} split, but {source} has "
        f"{have}; pass --report-ref DATA (data with a {proto.ref_split}/ folder, e.g. the CIFAR archive), "
        f"--report-ref-split {splits[0] if splits else 'train'}, or --report-protocol fewshot")


def write_report(run_dir: str | os.PathLike, metrics: tuple[str, ...] | None = None, repeat: int = 1,
                 speed_devices: tuple[str, ...] | None = None, latency_runs: int = 20,
                 throughput_batch: int = 256, protocol: str | None = None, num_gen: int | None = None,
                 ref: str | None = None, ref_split: str | None = None, full: bool = False,
                 announce: bool = True) -> Path:
    """Teacher vs student of a `kdgan compress` run: report.md, report.json and a sample grid.

    Quality uses the run's evaluation settings (eval_protocol, eval_num_gen, eval_ref,
    inception) unless `protocol`, `num_gen`, `ref` or `ref_split` are given (see
    `report_settings`), with the same seeds for teacher and student; speed is measured on
    the CPU and, when present, the GPU. `announce`: log a fallback to the fewshot protocol
    (False when the check before training has logged it already).
    """
    from kdgan.metrics import evaluate, generate_uint8, load_inception, reference_features
    from kdgan.metrics.evaluate import parse_metrics, plan_for_device
    from kdgan.training.checkpoint import CheckpointManager
    from kdgan.utils.dist import resolve_device

    run = Path(run_dir)
    ckpt = CheckpointManager(run / "checkpoints", 1).load_latest()
    if ckpt is None:
        raise KdganError(f"{run} has no checkpoint; train it with kdgan compress first")
    cfg = config_lib.from_dict(ckpt["config"])
    if not cfg.compress_teacher:
        raise KdganError(f"{run} is not a compression run (no compress_teacher in its config)")
    proto, ref_source = report_settings(cfg, protocol, num_gen, ref, ref_split, announce)
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

    extractor = load_inception(cfg.inception, device)
    resolution = G_teacher.config.get("img_resolution", 32)
    proto, repeat, lines = plan_for_device(proto, device, extractor, resolution,
                                           num_gen or cfg.eval_num_gen or None, repeat, full, networks=2)
    for line in lines:  # teacher and student
        log.info("report %s", line.replace("--full", "--report-full"))
    names = parse_metrics(",".join(metrics or ("fid", "kid", "is")), proto)  # IS: "unavailable" w/o logits
    ref_features = reference_features(ref_source, proto.ref_split, extractor)
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


def _speed_text(speedup: float) -> str:
    """A student / teacher speed ratio in words: '4.30x faster', '1.41x slower' (never '0.71x faster')."""
    if speedup >= 1:
        return f"{speedup:.2f}x faster"
    return f"{1 / speedup:.2f}x slower"


def format_report(report: dict[str, Any], throughput_batch: int = 256) -> str:
    """The markdown of a report dict (teacher | student | student / teacher)."""
    from kdgan.metrics.reference import describe_source
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
                     f"{_speed_text(t[lat] / s[lat])} |")
        lines.append(f"| throughput, batch {throughput_batch}, {name} | {t[thr]:,.0f} img/s | "
                     f"{s[thr]:,.0f} img/s | {_speed_text(s[thr] / t[thr])} |")
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
        f"{gen['seeds']}, the same z for both) vs {ref['num_images']} reference images "
        f"({describe_source(ref['source'], ref['split'])}, sha256 {ref['content_sha256'][:12]}); "
        f"{q['feature_extractor']}, "
        f"resize {q['resize']}. Speed: median of repeated forwards, in eval mode, fp32.",
        *[f"Note: {n}" for n in q["notes"]],
        "",
        f"![teacher (odd rows) and student (even rows) from the same z]"
        f"({Path(report['grid']).relative_to(report['run'])})",
        "",
        "Rows alternate teacher, student; each pair shares z and class.",
    ]
    return "\n".join(lines) + "\n"

