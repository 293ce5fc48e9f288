"""Teacher vs student generators: parameters, multiply-adds, latency at batch 1 and throughput.

Speed does not depend on the weights, so by default the teacher is a randomly initialised
BigGAN-CIFAR generator (ch 64, 10 classes: the KD-DLGAN / DiffAugment recipe) and the
students are the AKDG paper's DCGAN and MLP and a half-width BigGAN. Medians of several
timed forwards (fp32, eval mode, no grad); the speed-up is latency_teacher / latency_student.

    python benchmarks/compress.py [--teacher CKPT] [--device cpu|cuda|all] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from kdgan.compress import count_macs_per_image, count_parameters, device_name, time_forward
from kdgan.nets import build_generator, load_generator


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--teacher", help="a trained generator (default: random-weight BigGAN-CIFAR)")
    p.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda if present)")
    p.add_argument("--runs", type=int, default=20, help="timed batch-1 forwards (median)")
    p.add_argument("--throughput-runs", type=int, default=5, help="timed large-batch forwards (median)")
    p.add_argument("--batch", type=int, default=256, help="throughput batch size")
    args = p.parse_args()

    torch.manual_seed(0)
    if args.teacher:
        teacher = load_generator(args.teacher)
    else:
        cifar = {"arch": "biggan", "z_dim": 128, "c_dim": 10, "img_resolution": 32, "ch": 64}
        teacher = build_generator(cifar)
    base = {"z_dim": teacher.z_dim, "c_dim": teacher.c_dim, "img_resolution": teacher.img_resolution}
    nets = {
        f"teacher {teacher.config['arch']} ch {teacher.config['ch']}": teacher,
        "student dcgan (AKDG, ch 512)": build_generator({"arch": "dcgan", **base, "ch": 512}),
        "student mlp (AKDG, 512 units)": build_generator({"arch": "mlp", **base, "ch": 512}),
    }
    if teacher.config["arch"] == "biggan":
        half = teacher.config["ch"] // 2
        narrow = build_generator({"arch": "biggan", **base, "ch": half})
        nets[f"student biggan ch {half} (--width 0.5)"] = narrow

    devices = ["cpu", "cuda"] if args.device == "all" else [args.device]
    for dev_name in devices:
        if dev_name.startswith("cuda") and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        device = torch.device(dev_name)
        print(f"\n{device_name(device)}, torch {torch.__version__}; latency median of {args.runs}, "
              f"throughput median of {args.throughput_runs} at batch {args.batch}")
        print(f"{'network':<38} {'params':>10} {'MACs/img':>10} {'lat b1 ms':>10} {'img/s':>10} "
              f"{'speed-up':>9} {'thr ratio':>9}")
        ref = None
        for name, G in nets.items():
            G = G.to(device).eval()
            lat = statistics.median(time_forward(G, 1, device, args.runs))
            thr = args.batch / statistics.median(time_forward(G, args.batch, device, args.throughput_runs, 1))
            ref = ref or (lat, thr)
            print(f"{name:<38} {count_parameters(G) / 1e6:>9.2f}M {count_macs_per_image(G) / 1e6:>9.1f}M "
                  f"{lat * 1e3:>10.2f} {thr:>10.0f} {ref[0] / lat:>8.2f}x {thr / ref[1]:>8.2f}x", flush=True)


if __name__ == "__main__":
    main()
