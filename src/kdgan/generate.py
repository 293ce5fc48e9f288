"""Sampling and export from trained generators."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from kdgan.data import to_uint8
from kdgan.errors import KdganError
from kdgan.nets import load_generator, save_generator
from kdgan.utils.dist import resolve_device


@torch.no_grad()
def generate_images(ckpt: str | os.PathLike, num: int, outdir: str | os.PathLike, seed: int = 0,
                    class_index: int | None = None, batch_size: int = 64, device: str = "auto",
                    npz: bool = False, truncation: float = 1.0, noise_mode: str = "const") -> dict[str, str]:
    """Write `num` PNGs (000000.png, ...) from the EMA generator. Classes are taken in turn
    unless `class_index` is given. `truncation` and `noise_mode` apply to StyleGAN2.

    The promise: the same seed and batch size give bit-identical images on the same machine
    and software. z is drawn for all `num` images before batching, so another batch size
    gives the same images up to float rounding: every pixel within 1 (of 255), as the float
    kernels a library picks may depend on the batch shape. With noise_mode random (StyleGAN2)
    the noise is drawn batch by batch, so it changes with the batch size. A generator sampled
    with BatchNorm batch statistics (bn_mode batch) runs whole batches of its bn_batch images,
    whatever the batch size asked for (`num` is rounded up internally, the extra images dropped).
    """
    dev = resolve_device(device)
    G = load_generator(ckpt, dev)
    group = G.bn_batch if getattr(G, "bn_mode", None) == "batch" else 1
    total = -(-num // group) * group
    batch_size = max(group, batch_size // group * group)
    extra: dict = {}
    if G.config.get("arch") == "stylegan2":
        extra = {"truncation_psi": truncation, "noise_mode": noise_mode}
    elif truncation != 1.0:
        raise KdganError(f"--truncation needs a StyleGAN2 generator; this one is {G.config.get('arch')}")
    if class_index is not None and not 0 <= class_index < max(G.c_dim, 1):
        raise KdganError(f"--class {class_index} is out of range: this generator has "
                         f"{G.c_dim} classes (0..{G.c_dim - 1})" if G.c_dim else
                         f"--class {class_index}: this generator is unconditional; drop --class")
    g = torch.Generator().manual_seed(seed)
    z_all = torch.randn(total, G.z_dim, generator=g)
    if class_index is not None:
        labels_all = torch.full((total,), class_index, dtype=torch.long)
    else:
        labels_all = torch.arange(total) % max(G.c_dim, 1)
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    chunks = []
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)  # StyleGAN2's random noise: from the seed, not the global state
        for start in tqdm(range(0, num, batch_size), desc="generate", unit="batch", leave=False):
            z = z_all[start:start + batch_size].to(dev)
            images = to_uint8(G(z, labels_all[start:start + batch_size].to(dev), **extra)).numpy()
            images = images[:num - start]
            for i, img in enumerate(images):
                Image.fromarray(img).save(out / f"{start + i:06d}.png")
            if npz:
                chunks.append(images)
    paths = {"folder": str(out)}
    if npz:
        paths["npz"] = str(out / "images.npz")
        np.savez(out / "images.npz", arr_0=np.concatenate(chunks), labels=labels_all[:num].numpy())
    return paths


def export_checkpoint(ckpt: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write G_ema of a training checkpoint as safetensors + config.json; returns the file."""
    from kdgan.training.checkpoint import load_checkpoint

    state = load_checkpoint(ckpt)
    G_ema = state["nets"]["G_ema"]
    return save_generator(out, G_ema["state"], G_ema["config"], state["config"],
                          state["dataset"]["class_names"], state["step"])
