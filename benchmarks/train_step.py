"""Images/s and peak memory of the BigGAN-CIFAR DA training step (batch 50, G + 4 D steps).

Runs the real `Trainer.train_step` on random CIFAR-shaped data (10 classes) so the figure is
the loop's own. Prints one line per device: median over --repeats timed runs of --steps steps.

    python benchmarks/train_step.py [--device cpu|cuda|all] [--steps 3] [--repeats 5]
        [--set FIELD=VALUE ...] [--vs FIELD=VALUE[,FIELD=VALUE] ...]

e.g. the layouts and bf16 side by side, in one process:

    python benchmarks/train_step.py --device cpu --set memory_format=contiguous \
        --vs memory_format=channels_last --vs precision=bf16,memory_format=channels_last
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

import numpy as np
import torch

from kdgan.config import resolve
from kdgan.data import ImageSet
from kdgan.training.graphs import blockers as graph_blockers
from kdgan.training.loop import Trainer


def random_data(cfg, num_images: int = 1000) -> ImageSet:
    """Random images at the config's resolution, 10 classes."""
    rng = np.random.default_rng(0)
    r = cfg.resolution
    return ImageSet(rng.integers(0, 256, (num_images, r, r, 3), dtype=np.uint8),
                    rng.integers(0, 10, num_images), [str(i) for i in range(10)])


def time_step(cfg, steps: int, repeats: int, num_images: int = 1000) -> tuple[float, str, str]:
    """Median seconds per G step of `Trainer.train_step` for a config, the device name and the
    peak-memory line. Random data at the config's resolution (`num_images`, 10 classes)."""
    data = random_data(cfg, num_images)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, dataset=data)
        sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
        # warm-up (allocator, cuDNN autotune, compiling; cuda_graphs: 2 eager steps, then the capture)
        for _ in range(3 if cfg.compile or cfg.cuda_graphs else 1):
            trainer.train_step()
        sync()
        if trainer.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            sync()
            times.append((time.perf_counter() - t0) / steps)
        if cfg.cuda_graphs:
            print(f"train_step: cuda_graphs: {graphs_state(trainer)}", flush=True)
    if trainer.device.type == "cuda":
        name = torch.cuda.get_device_name()
        peak = f"peak GPU memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    else:
        name = f"CPU x{torch.get_num_threads()} threads"
        peak = f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    return statistics.median(times), name, peak


def graphs_state(trainer: Trainer) -> str:
    """What cuda_graphs did in a timed run: graphs replayed, or why the steps ran eagerly."""
    g = trainer.graphs
    if g is None:
        return "not used (" + ("; ".join(graph_blockers(trainer)) or "off") + ")"
    if g.failed:
        return f"capture failed, eager steps ({g.failed})"
    return f"{g.captures} graph(s) captured, {g.replays} replays, {g.eager_steps} eager warm-up steps"


def bench(device: str, steps: int, repeats: int, precision: str, preset: str, compile: bool = False,
          extra: dict | None = None) -> tuple[str, float]:
    """One timed config: its line and its median seconds per G step."""
    extra = extra or {}
    cfg = resolve(preset, {"device": device, "precision": precision, "data": "synthetic",
                           "eval_every_steps": 0, "compile": compile, **extra})
    step_s, name, peak = time_step(cfg, steps, repeats)
    images = cfg.batch_size * cfg.d_steps  # real images consumed per G step
    mode = (f" compiled ({cfg.compile_mode})" if cfg.compile else "")
    fields = "".join(f" {k}={v}" for k, v in extra.items())
    return (f"{preset} {cfg.precision}{mode}{fields} on {name}: {step_s * 1000:.0f} ms per G step "
            f"(batch {cfg.batch_size}, {cfg.d_steps} D steps), {images / step_s:.1f} real images/s, "
            f"{peak}; median of {repeats} x {steps} steps"), step_s


def parse_fields(specs: list[str]) -> dict[str, str]:
    """FIELD=VALUE pairs, several to a spec separated by commas; a piece without '=' continues the
    previous value (diffaugment=color,translation,cutout is one field)."""
    fields: dict[str, str] = {}
    for spec in specs:
        key = None
        for piece in spec.split(","):
            if "=" in piece:
                key, value = piece.split("=", 1)
                fields[key] = value
            elif key is not None:
                fields[key] += "," + piece
            else:
                raise SystemExit(f"benchmarks: {spec!r} does not start with FIELD=VALUE "
                                 "(e.g. memory_format=contiguous)")
    return fields


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda if present)")
    p.add_argument("--steps", type=int, default=1, help="G steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the median is printed")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--preset", default="biggan-cifar10-10pct-da")
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (compiled in the warm-up)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a config field of the timed run (e.g. memory_format=contiguous)")
    p.add_argument("--vs", action="append", default=[], metavar="FIELD=VALUE[,FIELD=VALUE]",
                   help="also time this variant (fields on top of --set) in the same process and print "
                        "its throughput against the first; repeatable")
    args = p.parse_args()
    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    base = parse_fields(args.set)
    for dev in devices:
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        line, first = bench(dev, args.steps, args.repeats, args.precision, args.preset, args.compile, base)
        print(line, flush=True)
        for spec in args.vs:
            variant = {**base, **parse_fields([spec])}
            line, t = bench(dev, args.steps, args.repeats, args.precision, args.preset, args.compile, variant)
            print(f"{line}; {first / t:.2f}x the throughput of the first", flush=True)


if __name__ == "__main__":
    main()
