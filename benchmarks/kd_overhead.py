"""Step-time ratio (DA + KD-DLGAN) / (DA) at the BigGAN-CIFAR preset (batch 50, 4 D steps).

Teachers: the tiny random CLIP and the full-size ViT-B/32 architecture with random weights
(the cost of the real teacher without needing its weights). Prints one line per device and
teacher: median seconds per G step and the ratio to plain DA. Target on a GPU: <= 1.5x.

    python benchmarks/kd_overhead.py [--device cpu|cuda|all] [--steps 1] [--repeats 3] [--precision bf16]
                                     [--teacher-dtype auto|fp32|fp16|bf16]
"""

from __future__ import annotations

import argparse

import torch

from kdgan.config import resolve
from train_step import time_step

PRESET = "biggan-cifar10-10pct-da"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda if present)")
    p.add_argument("--steps", type=int, default=1, help="G steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the median is used")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"],
                   help="autocast of G and D (the teacher is fp16 on GPU regardless)")
    p.add_argument("--clip-on", default="augmented", choices=["augmented", "clean"])
    p.add_argument("--compile", action="store_true", help="torch.compile the teacher's image tower")
    p.add_argument("--teacher-dtype", default="auto", choices=["auto", "fp32", "fp16", "bf16"],
                   help="the teacher's dtype (config teacher_dtype; auto: fp16 on a GPU, fp32 on a CPU)")
    args = p.parse_args()
    for dev in (["cpu", "cuda"] if args.device == "all" else [args.device]):
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        base = {"device": dev, "precision": args.precision, "data": "synthetic", "eval_every_steps": 0}
        da, name, _ = time_step(resolve(PRESET, base), args.steps, args.repeats)
        print(f"{name}: DA {da:.3f} s per G step (batch 50, 4 D steps)", flush=True)
        for teacher in ("clip-tiny-random", "clip-random"):
            cfg = resolve(PRESET, {**base, "teacher": teacher, "kd": "agkd,cgkd", "prompts": "cifar10",
                                   "clip_on": args.clip_on, "teacher_compile": args.compile,
                                   "teacher_dtype": args.teacher_dtype})
            kd, _, _ = time_step(cfg, args.steps, args.repeats)
            label = "tiny CLIP" if teacher == "clip-tiny-random" else "ViT-B/32 (random weights)"
            extra = (", compiled" if args.compile else "") + (f", teacher {args.teacher_dtype}"
                                                              if args.teacher_dtype != "auto" else "")
            print(f"{name}: DA + KD-DLGAN, {label}, clip_on {args.clip_on}{extra}: {kd:.3f} s per G step, "
                  f"ratio {kd / da:.2f}x; median of {args.repeats} x {args.steps}", flush=True)


if __name__ == "__main__":
    main()
