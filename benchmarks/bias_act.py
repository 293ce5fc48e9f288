"""StyleGAN2 main step with kdgan's bias + lrelu function vs the three plain ops it replaced, in one
process: time, activations autograd keeps, and (on a GPU) peak memory.

    python benchmarks/bias_act.py [--device cpu|cuda] [--resolution 64] [--channel-base 4096]
        [--batch 8] [--repeats 5] [--precision fp32|bf16]

The step: G on z, D on the fakes and on reals, the non-saturating losses of both, one backward
(every parameter gets its gradient). `bias_lrelu` keeps only its output for the backward; the
reference (`bias_lrelu_reference`: x + b, leaky_relu, * sqrt 2) keeps the pre-activation too.
The two are timed alternately, run by run, so that a drift of the machine hits both.
"""

from __future__ import annotations

import statistics
import time

import torch
import torch.nn.functional as F

import kdgan.nets.stylegan2 as sg2
from fir_derivatives import stylegan2_setup, swapped
from kdgan.utils.memory import SavedTensors


def main() -> None:
    args, G, D, reals, z, autocast = stylegan2_setup(__doc__.splitlines()[0])
    cuda = args.device.startswith("cuda")
    weights = [*G.parameters(), *G.buffers(), *D.parameters(), *D.buffers()]
    sync = torch.cuda.synchronize if cuda else (lambda: None)

    def step():
        G.zero_grad(set_to_none=True)
        D.zero_grad(set_to_none=True)
        with autocast:
            fake = G(z)
            loss = F.softplus(-D(fake)).mean() + F.softplus(D(fake.detach())).mean() + \
                F.softplus(-D(reals)).mean()
        loss.backward()

    impls = {"plain ops": sg2.bias_lrelu_reference, "bias_lrelu": sg2.bias_lrelu}
    res = {name: {"s": []} for name in impls}
    for name, impl in impls.items():  # warm-up, kept activations, peak memory
        with swapped("bias_lrelu", impl):
            step()
            with SavedTensors(exclude=weights) as kept:
                step()
            res[name]["kept_mib"] = kept.peak / 2**20
            if cuda:
                sync()
                torch.cuda.reset_peak_memory_stats()
                step()
                sync()
                res[name]["peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    for _ in range(args.repeats):
        for name, impl in impls.items():
            with swapped("bias_lrelu", impl):
                sync()
                t0 = time.perf_counter()
                step()
                sync()
                res[name]["s"].append(time.perf_counter() - t0)
    where = torch.cuda.get_device_name() if cuda else f"CPU x{torch.get_num_threads()}"
    print(f"StyleGAN2 {args.resolution}px channel_base {args.channel_base} batch {args.batch} "
          f"{args.precision} main step (G, D on fakes and reals, backward) on {where}, median of "
          f"{args.repeats}:")
    for name, r in res.items():
        peak = f", peak memory {r['peak_mib']:.0f} MiB" if "peak_mib" in r else ""
        print(f"  {name} on {where}: {statistics.median(r['s']) * 1e3:.1f} ms, activations kept "
              f"{r['kept_mib']:.1f} MiB{peak}")
    old, new = res["plain ops"], res["bias_lrelu"]
    t_ratio = statistics.median(new["s"]) / statistics.median(old["s"])
    print(f"  ratio bias_lrelu / plain ops: time {t_ratio:.2f}x, "
          f"kept {new['kept_mib'] / old['kept_mib']:.2f}x"
          + (f", peak memory {new['peak_mib'] / old['peak_mib']:.2f}x" if cuda else ""), flush=True)


if __name__ == "__main__":
    main()
