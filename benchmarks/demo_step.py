"""Seconds per G step of the CPU demo, `demo` and `demo-kd`, and their ratio (target <= 1.5x).

Times `Trainer.train_step` at each preset's own settings (precision, teacher, teacher input
size, kd_every) on random 32 px images, so nothing else (sampling, checkpoints) is counted.
Run it on a quiet machine: another torch process on the same cores slows it several-fold.

    python benchmarks/demo_step.py [--steps 20] [--repeats 3] [--set FIELD=VALUE ...]
"""

from __future__ import annotations

import argparse

from kdgan.config import resolve
from train_step import parse_fields, time_step


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20, help="G steps per timed run")
    p.add_argument("--repeats", type=int, default=3, help="timed runs; the median is used")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="a config field for both presets (e.g. precision=fp32)")
    args = p.parse_args()
    extra = parse_fields(args.set)
    times = {}
    for preset in ("demo", "demo-kd"):
        cfg = resolve(preset, {"device": "cpu", "eval_every_steps": 0, **extra})
        times[preset], name, peak = time_step(cfg, args.steps, args.repeats, num_images=100)
        print(f"{name}: {preset} ({cfg.precision}): {times[preset]:.3f} s per G step, {peak}; "
              f"median of {args.repeats} x {args.steps}", flush=True)
    print(f"demo-kd / demo: {times['demo-kd'] / times['demo']:.2f}x (target <= 1.5x)")


if __name__ == "__main__":
    main()
