"""How G_ema's BatchNorm statistics and the label draw change a BigGAN-CIFAR FID (docs/fidelity.md).

Trains a BigGAN-CIFAR preset for a fixed wall-clock budget (no checkpoints), then scores its
G_ema under the cifar protocol (10k generated vs the data's test split; the same seeds for every
setting): BatchNorm running statistics (G's buffers, copied into G_ema: kdgan before issue 15),
batch statistics in batches of 50 (the released code, one GPU) and of 25 (its 2-GPU
DataParallel launch), standing statistics; labels i.i.d. uniform (released) vs classes in turn.
Also prints the mean |difference| between G_ema's images with running and with batch statistics
(images in [-1, 1]) and the first BatchNorm's batch-to-running variance ratio.

    python benchmarks/fidelity_sampling.py --data cifar10-jpeg-10pct.zip --outdir runs/fidelity \
        --train-seconds 240 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import json
import time

import torch

from kdgan.config import resolve
from kdgan.metrics import evaluate, generate_uint8, get_protocol, load_inception, reference_features
from kdgan.nets.layers import recompute_standing_statistics
from kdgan.training.loop import Trainer


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="CIFAR data with train/ and test/ splits")
    p.add_argument("--preset", default="biggan-cifar10-10pct-da")
    p.add_argument("--fraction", type=float, default=1.0, help="data_fraction (1: the data as given)")
    p.add_argument("--outdir", default="runs/fidelity-sampling")
    p.add_argument("--train-seconds", type=float, default=240.0)
    p.add_argument("--num-gen", type=int, default=10_000)
    p.add_argument("--device", default="cuda")
    args = p.parse_args()

    cfg = resolve(args.preset, {"data": args.data, "data_fraction": args.fraction, "device": args.device,
                                "eval_every_steps": 0})
    trainer = Trainer(cfg, args.outdir)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.train_seconds:
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    print(f"trained {trainer.step} G steps in {seconds:.0f} s ({trainer.step / seconds:.1f} steps/s), "
          f"G_ema decay {cfg.ema_decay} from step {cfg.ema_start_steps}", flush=True)

    G = trainer.G_ema.eval()
    dev = trainer.device
    extractor = load_inception("auto", dev)
    ref = reference_features(args.data, "test", extractor)
    proto = get_protocol("cifar", args.num_gen)
    metrics = ("fid", "is") if extractor.has_logits else ("fid",)

    # the first BatchNorm's input variance within a batch of 50 vs its running variance
    first = G.blocks[0].bn1.bn
    seen = []
    hook = first.register_forward_hook(lambda m, a, out: seen.append(a[0].detach()))
    z = torch.randn(500, G.z_dim, generator=torch.Generator().manual_seed(1)).to(dev)
    labels = (torch.arange(500) % max(G.c_dim, 1)).to(dev)
    with torch.no_grad():
        G.bn_mode = "running"
        running = G(z, labels)
        G.bn_mode, G.bn_batch = "batch", 50
        batch = G(z, labels)
    hook.remove()
    batch_var = torch.stack([x.var(dim=(0, 2, 3), unbiased=False) for x in seen[1:]]).mean(0)
    ratio = (batch_var / first.running_var).mean().item()
    print(f"mean |G_ema(running) - G_ema(batch of 50)| = {(running - batch).abs().mean().item():.3f}; "
          f"first BatchNorm: batch variance / running variance = {ratio:.2f}", flush=True)

    settings = {"running statistics (eval mode)": ("running", 50, "random"),
                "batch statistics, 50 (released)": ("batch", 50, "random"),
                "batch statistics, 25 (2-GPU DataParallel)": ("batch", 25, "random"),
                "batch statistics, 50, classes in turn": ("batch", 50, "cycle"),
                "standing statistics (16 x 50)": ("standing", 50, "random")}
    rows = {}
    for name, (mode, bn_batch, label_draw) in settings.items():
        net = copy.deepcopy(G)
        net.bn_mode, net.bn_batch = mode, bn_batch
        if mode == "standing":
            recompute_standing_statistics(net, batch_size=bn_batch)
        result = evaluate(lambda s, n=net, d=label_draw: generate_uint8(n, proto.num_gen, s, 100, dev, d),
                          ref, extractor, proto, metrics, repeats=1, seed=0)
        rows[name] = {k: v["mean"] for k, v in result["metrics"].items()}
        print(f"{name:<45} " + "  ".join(f"{k} {v:.3f}" for k, v in rows[name].items()), flush=True)
    print(json.dumps({"steps": trainer.step, "device": torch.cuda.get_device_name() if dev.type == "cuda"
                      else "cpu", "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
