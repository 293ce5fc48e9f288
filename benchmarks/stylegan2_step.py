"""Seconds per kimg of StyleGAN2 few-shot training (the DA recipe, batch 16), with and without KD.

Runs the real `Trainer.train_step` of the `stylegan2-obama-da` preset (lazy R1 every 16 D steps,
path length every 4 G steps, style mixing, G EMA) on random images at --resolution, and the
same with KD-DLGAN (AGKD + CGKD) from the full-size ViT-B/32 CLIP architecture with random
weights (the real teacher's cost without its weights). kimg = 1,000 real images shown to D,
as in StyleGAN2-ADA; each timed run covers --steps G steps (a multiple of 16 amortises the
lazy regularisers exactly). NVlabs publishes 21.6 to 24.2 s/kimg at 256 px on one V100.

    python benchmarks/stylegan2_step.py [--device cpu|cuda|all] [--resolution 256] [--steps 16]
        [--repeats 3] [--precision fp32|bf16] [--teacher clip-random|clip-tiny-random|none]
        [--channel-base 32768] [--channel-max 512]    (narrower networks for a CPU figure)
"""

from __future__ import annotations

import argparse

import torch

from kdgan.config import resolve
from train_step import time_step

PRESET = "stylegan2-obama-da"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda if present)")
    p.add_argument("--resolution", type=int, default=256, help="px (the paper: 256; CPU: try 64)")
    p.add_argument("--steps", type=int, default=16, help="G steps per timed run (multiple of 16)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the median is printed")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--teacher", default="clip-random", help="KD teacher, or none to skip the KD row")
    p.add_argument("--channel-base", type=int, default=32768,
                   help="32768 = the few-shot presets' 256 px config (DiffAugment's fmaps 1)")
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--compile", action="store_true", help="torch.compile G and D (plain passes)")
    args = p.parse_args()
    for dev in (["cpu", "cuda"] if args.device == "all" else [args.device]):
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        base = {"device": dev, "precision": args.precision, "data": "synthetic", "eval_every_steps": 0,
                "resolution": args.resolution, "channel_base": args.channel_base,
                "channel_max": args.channel_max, "compile": args.compile}
        cfg = resolve(PRESET, base)
        per_kimg = 1000 / cfg.batch_size  # G steps per kimg (1 D step per G step)
        da, name, peak = time_step(cfg, args.steps, args.repeats, num_images=100)
        width = "" if (args.channel_base, args.channel_max) == (32768, 512) else \
            f" (channel_base {args.channel_base}, channel_max {args.channel_max})"
        width += " compiled" if args.compile else ""
        print(f"StyleGAN2 {args.resolution}px{width} batch {cfg.batch_size} {args.precision} on {name}: "
              f"DA {da * per_kimg:.1f} s/kimg ({da * 1000:.0f} ms per step), {peak}; "
              f"median of {args.repeats} x {args.steps} steps", flush=True)
        if args.teacher == "none":
            continue
        kd_cfg = resolve(PRESET, {**base, "teacher": args.teacher, "kd": "agkd,cgkd"})
        kd, _, peak = time_step(kd_cfg, args.steps, args.repeats, num_images=100)
        label = {"clip-random": "ViT-B/32, random weights", "clip-tiny-random": "tiny CLIP"}.get(
            args.teacher, args.teacher)
        print(f"StyleGAN2 {args.resolution}px{width} batch {cfg.batch_size} {args.precision} on {name}: "
              f"DA + KD-DLGAN ({label}) {kd * per_kimg:.1f} s/kimg ({kd * 1000:.0f} ms per step), "
              f"ratio {kd / da:.2f}x, {peak}; median of {args.repeats} x {args.steps} steps", flush=True)


if __name__ == "__main__":
    main()
