"""Where a training step's time goes: torch.profiler over a few steps, the top operators.

Runs the real `Trainer.train_step` of a preset on random data (as train_step.py does) and
prints the operators with the most self time on the device (CUDA time on a GPU, CPU time
otherwise), so that speed work starts from a measurement.

    python benchmarks/profile_step.py [--preset biggan-cifar10-10pct-da] [--device cuda]
        [--precision fp32|bf16] [--steps 4] [--top 25] [--set FIELD=VALUE ...] [--trace FILE.json]
"""

from __future__ import annotations

import argparse
import tempfile

import torch
from torch.profiler import ProfilerActivity, profile

from kdgan.config import resolve
from kdgan.training.loop import Trainer
from train_step import parse_fields, random_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="biggan-cifar10-10pct-da")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    p.add_argument("--steps", type=int, default=4, help="profiled G steps (after 3 warm-up steps)")
    p.add_argument("--top", type=int, default=25, help="operators listed")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE")
    p.add_argument("--trace", help="also write a Chrome trace here")
    args = p.parse_args()
    fields = {"device": args.device, "precision": args.precision, "data": "synthetic", "eval_every_steps": 0}
    fields.update(parse_fields(args.sets))
    cfg = resolve(args.preset, fields)
    data = random_data(cfg, 200)
    cuda = torch.device(args.device).type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(cfg, tmp, dataset=data)
        for _ in range(3):
            trainer.train_step()
        if cuda:
            torch.cuda.synchronize()
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=activities) as prof:
            for _ in range(args.steps):
                trainer.train_step()
            if cuda:
                torch.cuda.synchronize()
    key = "self_cuda_time_total" if cuda else "self_cpu_time_total"
    print(f"{args.preset} {args.precision} on {torch.cuda.get_device_name() if cuda else 'CPU'}, "
          f"{args.steps} G steps, {' '.join(args.sets)}")
    print(prof.key_averages().table(sort_by=key, row_limit=args.top, max_name_column_width=60))
    if args.trace:
        prof.export_chrome_trace(args.trace)


if __name__ == "__main__":
    main()
