"""R1 and path-length step times of the StyleGAN2 networks: kdgan's FIR resampling vs the plain
grouped convolution it replaced (whose double backward loops over channels), in one process.

    python benchmarks/fir_derivatives.py [--device cpu|cuda] [--resolution 64] [--channel-base 4096]
        [--batch 8] [--repeats 5] [--precision fp32|bf16]

Prints, for each step, the median time and the number of convolution kernels dispatched with
each FIR, and the ratio. The reference is `grouped_fir_reference`; the networks are the
real kdgan ones, with `kdgan.nets.stylegan2.fir_filter` swapped for the timing of the reference.
"""

from __future__ import annotations

import argparse
import statistics
import time
from contextlib import contextmanager

import torch

import kdgan.nets.stylegan2 as sg2
from kdgan.losses.regularizers import PathLengthPenalty, r1_penalty
from kdgan.nets import build_discriminator, build_generator
from kdgan.nets.stylegan2 import CountConvolutions, grouped_fir_reference


@contextmanager
def swapped(name: str, impl):
    """`kdgan.nets.stylegan2.<name>` replaced by `impl` while active (the networks look it up at
    call time), so one process times the same networks with either implementation."""
    saved = getattr(sg2, name)
    setattr(sg2, name, impl)
    try:
        yield
    finally:
        setattr(sg2, name, saved)


def stylegan2_setup(description: str):
    """The command line shared by the StyleGAN2 op benchmarks, and what they time on: (args,
    G, D, reals, z, autocast), seeded, on args.device, TF32 and cudnn.benchmark on a GPU."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--device", default="cpu")
    p.add_argument("--resolution", type=int, default=64)
    p.add_argument("--channel-base", type=int, default=4096)
    p.add_argument("--channel-max", type=int, default=512)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    args = p.parse_args()
    dev = args.device
    if dev.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    size = {"img_resolution": args.resolution, "channel_base": args.channel_base,
            "channel_max": args.channel_max}
    D = build_discriminator({"arch": "stylegan2", "c_dim": 0, **size}).to(dev)
    G = build_generator({"arch": "stylegan2", "z_dim": 512, "c_dim": 0, "w_dim": 512,
                         "mapping_layers": 2, **size}).to(dev)
    reals = torch.randn(args.batch, 3, args.resolution, args.resolution, device=dev)
    z = torch.randn(args.batch, 512, device=dev)
    autocast = torch.autocast(dev.split(":")[0], dtype=torch.bfloat16, enabled=args.precision == "bf16")
    return args, G, D, reals, z, autocast


def timed(step, repeats: int, device: str) -> tuple[float, int]:
    """Median seconds of `step()` over repeats (after one warm-up) and its convolution calls."""
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    step()
    with CountConvolutions() as count:
        step()
    times = []
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), count.calls


def main() -> None:
    args, G, D, reals, z, autocast = stylegan2_setup(__doc__.splitlines()[0])
    dev = args.device
    pl = PathLengthPenalty().to(dev)

    def r1_step():
        x = reals.detach().requires_grad_(True)
        with autocast:
            loss = r1_penalty(D(x), x)
        loss.backward()

    def pl_step():
        with autocast:
            loss = pl(G, z, None)
        loss.backward()

    where = torch.cuda.get_device_name() if dev.startswith("cuda") else f"CPU x{torch.get_num_threads()}"
    print(f"StyleGAN2 {args.resolution}px channel_base {args.channel_base} batch {args.batch} "
          f"{args.precision} on {where}, median of {args.repeats}:")
    for name, step in (("R1", r1_step), ("path length", pl_step)):
        with swapped("fir_filter", grouped_fir_reference):
            old_s, old_n = timed(step, args.repeats, dev)
        new_s, new_n = timed(step, args.repeats, dev)
        print(f"  {name} step: plain grouped FIR {old_s * 1000:.1f} ms ({old_n} convolutions), "
              f"kdgan FIR {new_s * 1000:.1f} ms ({new_n} convolutions), "
              f"{old_s / new_s:.2f}x faster", flush=True)


if __name__ == "__main__":
    main()
