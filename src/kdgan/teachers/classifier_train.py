"""`kdgan teacher train` / `eval`: fit the classifier teacher on labelled data the GAN never sees.

Images whose decoded pixels (uint8, at the training resolution) equal an image of an excluded
set, or its mirror image, are dropped before anything else, so a teacher trained on, say, the
CIFAR-10 training split minus the GAN's subset has never seen one of the GAN's images.
Training: SGD with Nesterov momentum, a linear warm-up then cosine decay per step, random
crops (4 px zero padding) and horizontal flips; a held-out validation split is scored after
every epoch, when a resumable checkpoint (safetensors + JSON) is written.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from kdgan.data import ImageSet, load_images, to_model_range
from kdgan.errors import KdganError
from kdgan.teachers.classifier import CifarResNet, read_classifier, save_classifier, teacher_file

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.safetensors"


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """What a teacher training depends on; a resumed training must match it (except `device`)."""

    data: str  # labelled source: image folder/zip with class sub-folders, CIFAR archive, prepared zip
    split: str = "train"  # split folder of `data` to train on
    exclude: tuple[str, ...] = ()  # sources whose images (and their mirror images) are dropped
    exclude_split: str = "train"  # split read from each excluded source that has splits
    test_split: str = "test"  # split of `data` scored at the end when it exists; "" = none
    resolution: int = 32  # px, square; the teacher's input size
    width: int = 16  # channels of the first stage (stages: w, 2w, 4w; features: 4w)
    blocks: int = 3  # basic blocks per stage (ResNet-(6 x blocks + 2); 3 = ResNet-20)
    epochs: int = 12  # passes over the training images
    batch_size: int = 128  # images per SGD step
    lr: float = 0.1  # peak SGD learning rate (Nesterov momentum 0.9)
    weight_decay: float = 5e-4  # L2 weight decay of the SGD step
    warmup_epochs: float = 1.0  # linear warm-up of the learning rate, then cosine decay to 0
    val_fraction: float = 0.1  # fraction of the (remaining) images held out for validation
    seed: int = 0  # seed of the validation split, initialisation, order and augmentation
    device: str = "auto"  # auto | cpu | cuda | cuda:N (may change on resume)


def pixel_hashes(images: np.ndarray, mirrors: bool = False) -> set[bytes]:
    """sha256 digests of each uint8 image (N, H, W, 3) (and of its mirror image when `mirrors`)."""
    out = {hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest() for x in images}
    if mirrors:
        out |= {hashlib.sha256(np.ascontiguousarray(x[:, ::-1]).tobytes()).digest() for x in images}
    return out


def exclude_images(ds: ImageSet, excluded: list[ImageSet]) -> tuple[ImageSet, int]:
    """`ds` without every image whose pixels equal an excluded image or its mirror image;
    returns (the kept images, how many were dropped)."""
    banned: set[bytes] = set()
    for ex in excluded:
        if ex.images.shape[1:] != ds.images.shape[1:]:
            raise KdganError(f"excluded images are {ex.images.shape[1]} px and the data "
                             f"{ds.images.shape[1]} px; load both at one --resolution")
        banned |= pixel_hashes(ex.images, mirrors=True)
    keep = np.array([h not in banned for h in
                     (hashlib.sha256(np.ascontiguousarray(x).tobytes()).digest() for x in ds.images)], bool)
    return ds.take(np.flatnonzero(keep)), int((~keep).sum())


def load_labelled(src: str, split: str, resolution: int) -> ImageSet:
    """A labelled image set, with a clear error when the source has no class labels."""
    ds, skipped = load_images(src, split=split, resolution=resolution)
    if skipped:
        log.warning("skipped %d unreadable file(s) in %s (first: %s: %s)", len(skipped), src, *skipped[0])
    if ds.labels is None or ds.num_classes < 2:
        raise KdganError(f"{src} has no class labels (or one class); the classifier teacher needs a "
                         "labelled set: a folder or zip with one sub-folder per class, a CIFAR archive, "
                         "or a prepared zip")
    return ds


def augment(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crops of the zero-padded images and random horizontal flips; (B, 3, R, R) -> same."""
    b, _, r, _ = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, b), generator=generator)).to(images.device)
    ar = torch.arange(r, device=images.device)
    rows = (dy[:, None] + ar)[:, None, :, None]
    cols = (dx[:, None] + ar)[:, None, None, :]
    out = padded[torch.arange(b, device=images.device)[:, None, None, None],
                 torch.arange(3, device=images.device)[None, :, None, None], rows, cols]
    flip = (torch.rand(b, generator=generator) < 0.5).to(images.device)
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def learning_rate(step: int, total_steps: int, warmup_steps: int, peak: float) -> float:
    """Linear warm-up to `peak` over `warmup_steps`, then cosine decay to 0 at `total_steps`."""
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * peak * (1 + math.cos(math.pi * min(t, 1.0)))


@torch.no_grad()
def accuracy(net: torch.nn.Module, images: np.ndarray, labels: np.ndarray, device: torch.device,
             batch_size: int = 500) -> tuple[float, np.ndarray]:
    """(top-1 accuracy, predictions) of `net` (eval mode) on uint8 images (N, H, W, 3)."""
    net.eval()
    preds = []
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(images[i:i + batch_size]).to(device).permute(0, 3, 1, 2)
        preds.append(net(to_model_range(x)).argmax(1).cpu())
    pred = torch.cat(preds).numpy() if preds else np.zeros(0, np.int64)
    return float((pred == labels).mean()) if len(labels) else float("nan"), pred


def _save_checkpoint(path: Path, net: CifarResNet, opt: torch.optim.SGD, meta: dict[str, Any]) -> None:
    from kdgan.utils.files import save_safetensors

    tensors = {f"net.{k}": v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    for i, p in enumerate(net.parameters()):
        buf = opt.state.get(p, {}).get("momentum_buffer")
        if buf is not None:
            tensors[f"momentum.{i}"] = buf.detach().cpu().contiguous()
    save_safetensors(tensors, path, {"kdgan_teacher_training": json.dumps(meta)})


def _load_checkpoint(path: Path, net: CifarResNet, opt: torch.optim.SGD, device: torch.device) -> dict:
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {})["kdgan_teacher_training"])
    tensors = load_file(str(path))
    net.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("net.")})
    for i, p in enumerate(net.parameters()):
        if f"momentum.{i}" in tensors:
            opt.state[p]["momentum_buffer"] = tensors[f"momentum.{i}"].to(device)
    return meta


def _settings(cfg: ClassifierTrainConfig) -> dict[str, Any]:
    d = asdict(cfg)
    d.pop("device")
    d["exclude"] = list(cfg.exclude)
    return d


def _check(cfg: ClassifierTrainConfig) -> None:
    checks = [
        (cfg.epochs >= 1, "--epochs must be at least 1"),
        (cfg.width >= 1 and cfg.blocks >= 1, "--width and --blocks must be at least 1"),
        (cfg.resolution >= 8, "--resolution must be at least 8 px"),
        (cfg.batch_size >= 2, "--batch-size must be at least 2 (batch norm)"),
        (cfg.lr > 0 and cfg.weight_decay >= 0 and cfg.warmup_epochs >= 0,
         "--lr must be > 0, --weight-decay and warmup >= 0"),
        (0 < cfg.val_fraction < 1, "--val-fraction must be in (0, 1), e.g. 0.1"),
        (cfg.test_split != cfg.split, f"--test-split {cfg.test_split} is the training split; choose "
                                      "another, or --test-split '' for none"),
    ]
    for ok, message in checks:
        if not ok:
            raise KdganError(message)


def train_classifier(cfg: ClassifierTrainConfig, outdir: str | Path) -> dict[str, Any]:
    """Train (or resume, or just report) the classifier teacher into `outdir`; returns its config
    (teacher.json): class names, resolution, val and test accuracy, data and exclusion hashes."""
    from kdgan.utils.dist import resolve_device

    _check(cfg)
    outdir = Path(outdir)
    device = resolve_device(cfg.device)
    ds = load_labelled(cfg.data, cfg.split, cfg.resolution)
    source_hash, num_source = ds.content_hash(), len(ds)
    excluded_info = []
    excluded_sets = []
    for src in cfg.exclude:
        ex, skipped = load_images(src, split=cfg.exclude_split, resolution=cfg.resolution)
        if skipped:
            raise KdganError(f"{src}: {len(skipped)} excluded image(s) cannot be read (first: "
                             f"{skipped[0][0]}); every excluded image must be readable to be excluded")
        excluded_sets.append(ex)
        excluded_info.append({"source": src, "split": ex.meta.get("split"), "num_images": len(ex),
                              "content_sha256": ex.content_hash()})
    ds, num_dropped = exclude_images(ds, excluded_sets)
    if cfg.exclude:
        log.info("excluded %d of %d images of %s (pixels equal to an image of %s, or its mirror)",
                 num_dropped, num_source, cfg.data, ", ".join(cfg.exclude))
    if len(ds) < 2 * cfg.batch_size:
        raise KdganError(f"only {len(ds)} images are left to train on (after exclusion); the teacher "
                         f"needs at least 2 batches of {cfg.batch_size}: use more data or a smaller "
                         "--batch-size")
    perm = np.random.default_rng(cfg.seed).permutation(len(ds))
    n_val = max(1, round(cfg.val_fraction * len(ds)))
    val, train = ds.take(np.sort(perm[:n_val])), ds.take(np.sort(perm[n_val:]))

    info: dict[str, Any] = {
        "class_names": list(ds.class_names), "resolution": cfg.resolution,
        "input_convention": "float RGB (B, 3, R, R) in [-1, 1] (uint8 / 127.5 - 1), no mean/std",
        "data": {"source": cfg.data, "split": cfg.split, "source_images": num_source,
                 "source_content_sha256": source_hash, "train_images": len(train), "val_images": len(val),
                 "train_content_sha256": train.content_hash()},
        "exclusion": {"rule": "decoded uint8 pixels at the training resolution equal to an excluded "
                              "image or its mirror image (sha256)",
                      "sets": excluded_info, "excluded_images": num_dropped},
        "training": _settings(cfg),
    }

    torch.manual_seed(cfg.seed)
    net = CifarResNet(ds.num_classes, cfg.width, cfg.blocks).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=0.9, nesterov=True,
                          weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    warmup = round(cfg.warmup_epochs * steps_per_epoch)
    history: list[dict[str, float]] = []
    ckpt = outdir / CHECKPOINT
    start = 0
    if ckpt.exists():
        meta = _load_checkpoint(ckpt, net, opt, device)
        if meta["info"] != info:
            diff = [k for k in info if meta["info"].get(k) != info[k]]
            raise KdganError(f"{outdir} holds a teacher training with different settings or data "
                             f"({', '.join(diff)} differ); re-run with the original flags to resume it, "
                             "or use a new --outdir")
        start, history = int(meta["epoch"]), list(meta["history"])
        log.info("resuming the teacher training in %s after epoch %d", outdir, start)
    outdir.mkdir(parents=True, exist_ok=True)
    log.info("classifier teacher: ResNet-%d (width %d, %d-d features, %.2fM parameters), %d classes, "
             "%d train / %d val images at %d px, device %s", 6 * cfg.blocks + 2, cfg.width, net.feature_dim,
             sum(p.numel() for p in net.parameters()) / 1e6, ds.num_classes, len(train), len(val),
             cfg.resolution, device)

    images = torch.from_numpy(train.images).permute(0, 3, 1, 2).contiguous().to(device)
    labels = torch.from_numpy(train.labels).to(device)
    bar = tqdm(total=total_steps, initial=start * steps_per_epoch, unit="step", dynamic_ncols=True,
               file=sys.stderr, mininterval=0.5 if sys.stderr.isatty() else 30.0, smoothing=0.1)
    try:
        for epoch in range(start, cfg.epochs):
            g = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)  # order and augmentation
            order = torch.randperm(len(train), generator=g).to(device)
            net.train()
            t0, loss_sum, correct = time.perf_counter(), torch.zeros((), device=device), 0
            for i in range(steps_per_epoch):
                step = epoch * steps_per_epoch + i
                idx = order[i * cfg.batch_size:(i + 1) * cfg.batch_size]
                if len(idx) < 2:  # a batch of one cannot be batch-normalised; skip the remainder
                    continue
                x = augment(to_model_range(images[idx]), g)
                for group in opt.param_groups:
                    group["lr"] = learning_rate(step, total_steps, warmup, cfg.lr)
                logits = net(x)
                loss = F.cross_entropy(logits, labels[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                loss_sum += loss.detach() * len(idx)
                correct += int((logits.argmax(1) == labels[idx]).sum())
                bar.update(1)
            seconds = time.perf_counter() - t0
            val_acc, _ = accuracy(net, val.images, val.labels, device)
            row = {"epoch": epoch + 1, "train_loss": float(loss_sum) / len(train),
                   "train_accuracy": correct / len(train), "val_accuracy": val_acc,
                   "images_per_s": len(train) / seconds}
            history.append(row)
            bar.set_postfix(loss=f"{row['train_loss']:.3f}", val_acc=f"{val_acc:.3f}", refresh=False)
            log.info("epoch %d/%d: train loss %.4f, train acc %.4f, val acc %.4f (%.0f images/s)",
                     epoch + 1, cfg.epochs, row["train_loss"], row["train_accuracy"], val_acc,
                     row["images_per_s"])
            _save_checkpoint(ckpt, net, opt, {"epoch": epoch + 1, "history": history, "info": info})
    finally:
        bar.close()

    info["val_accuracy"] = history[-1]["val_accuracy"]
    info["history"] = history
    info["test_accuracy"], info["test_images"] = None, 0
    if cfg.test_split:
        test = _test_set(cfg.data, cfg.test_split, cfg.resolution, ds.class_names)
        if test is not None:
            info["test_accuracy"], _ = accuracy(net, test.images, test.labels, device)
            info["test_images"] = len(test)
    info["test_split"] = cfg.test_split if info["test_images"] else None
    save_classifier(outdir, net.cpu(), info)
    return info


def _test_set(src: str, test_split: str, resolution: int, class_names: list[str]) -> ImageSet | None:
    """The test split of `src` when it has one (None when `src` has no separate splits)."""
    try:
        test = load_labelled(src, test_split, resolution)
    except KdganError as e:
        log.info("no %s split scored (%s)", test_split, e)
        return None
    if test.meta.get("split") != test_split:  # no such split (e.g. a prepared zip): the training images
        log.info("%s has no separate %s split; no test accuracy", src, test_split)
        return None
    return _aligned(test, class_names, src)


def _aligned(ds: ImageSet, class_names: list[str], src: str) -> ImageSet:
    """`ds` with labels re-indexed to the teacher's class order (by name)."""
    missing = [c for c in ds.class_names if c not in class_names]
    if missing:
        raise KdganError(f"{src} has classes the teacher does not know ({', '.join(missing[:5])}); "
                         f"the teacher's classes: {', '.join(class_names)}")
    index = np.array([class_names.index(c) for c in ds.class_names], np.int64)
    return ImageSet(ds.images, index[ds.labels], list(class_names), dict(ds.meta))


def evaluate_classifier(weights: str, data: str, split: str = "test", device: str = "auto") -> dict[str, Any]:
    """Top-1 accuracy, overall and per class, of a saved classifier teacher on a labelled set."""
    from kdgan.utils.dist import resolve_device

    net, info = read_classifier(weights)
    dev = resolve_device(device)
    ds = _aligned(load_labelled(data, split, int(info["resolution"])), list(info["class_names"]), data)
    acc, pred = accuracy(net.to(dev), ds.images, ds.labels, dev)
    per_class = {c: float((pred[ds.labels == k] == k).mean()) for k, c in enumerate(info["class_names"])
                 if (ds.labels == k).any()}
    return {"teacher": str(teacher_file(weights)), "data": data, "split": split, "images": len(ds),
            "accuracy": acc, "per_class": per_class, "val_accuracy": info.get("val_accuracy")}
