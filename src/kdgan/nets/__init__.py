"""Networks, rebuilt from their saved config dicts (`net.config`)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from kdgan.errors import KdganError
from kdgan.nets.biggan import BigGANDiscriminator, BigGANGenerator
from kdgan.nets.dcgan import DCGANGenerator, MLPGenerator
from kdgan.nets.layers import BN_MODES, recompute_standing_statistics
from kdgan.nets.stylegan2 import StyleGAN2Discriminator, StyleGAN2Generator

GENERATORS: dict[str, type[nn.Module]] = {"biggan": BigGANGenerator, "dcgan": DCGANGenerator,
                                          "mlp": MLPGenerator, "stylegan2": StyleGAN2Generator}
DISCRIMINATORS: dict[str, type[nn.Module]] = {"biggan": BigGANDiscriminator,
                                              "stylegan2": StyleGAN2Discriminator}


def _build(registry: dict[str, type[nn.Module]], config: dict[str, Any]) -> nn.Module:
    kwargs = dict(config)
    arch = kwargs.pop("arch", None)
    if arch not in registry:
        raise KdganError(f"unknown network arch {arch!r}; known: {', '.join(registry)}")
    return registry[arch](**kwargs)


def build_generator(config: dict[str, Any]) -> nn.Module:
    """A freshly initialised generator from its config dict (as in `G.config`)."""
    return _build(GENERATORS, config)


def build_discriminator(config: dict[str, Any]) -> nn.Module:
    """A freshly initialised discriminator from its config dict."""
    return _build(DISCRIMINATORS, config)


def save_generator(folder: str | os.PathLike, state: dict[str, torch.Tensor], net_config: dict[str, Any],
                   training: dict[str, Any], class_names: list[str], step: int) -> Path:
    """Write G_ema.safetensors (config in its metadata, written atomically) + config.json into
    `folder`, the layout `load_generator` reads; returns the safetensors path."""
    from kdgan.utils.files import save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {"kdgan_net_config": json.dumps(net_config), "step": str(step)}
    save_safetensors(tensors, folder / "G_ema.safetensors", meta)
    (folder / "config.json").write_text(json.dumps(
        {"generator": net_config, "training": training, "class_names": class_names, "step": step},
        indent=2))
    return folder / "G_ema.safetensors"


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu",
                   bn_mode: str | None = None) -> nn.Module:
    """The EMA generator of a checkpoint (.pt), an export (.safetensors), or an export folder.

    Returns the generator in eval mode: `G(z, labels)` with z (B, G.z_dim) and labels (B,)
    int64 in [0, G.c_dim) (ignored when c_dim == 0) gives images (B, 3, R, R) in [-1, 1].
    A generator with BatchNorm samples the way its run was configured (`ema_bn_mode`, saved in
    its config; `bn_mode` overrides it): with batch statistics, running statistics, or standing
    statistics recomputed here from fresh batches (seed 0).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "G_ema.safetensors"
    if not path.exists():
        raise KdganError(f"generator file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file, safe_open

        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
        if "kdgan_net_config" in meta:
            config = json.loads(meta["kdgan_net_config"])
        elif (path.parent / "config.json").exists():
            config = json.loads((path.parent / "config.json").read_text())["generator"]
        else:
            raise KdganError(f"{path} has no generator config (metadata or config.json beside it)")
        G = build_generator(config)
        G.load_state_dict(load_file(str(path)))
    else:
        from kdgan.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(path)
        G = build_generator(ckpt["nets"]["G_ema"]["config"])
        G.load_state_dict(ckpt["nets"]["G_ema"]["state"])
    G = G.eval().requires_grad_(False).to(device)
    if bn_mode is not None and hasattr(G, "bn_mode"):
        if bn_mode not in BN_MODES:
            raise KdganError(f"unknown BatchNorm mode {bn_mode!r}; use {', '.join(BN_MODES)}")
        G.bn_mode = bn_mode
        G.config = {**G.config, "bn_mode": bn_mode}
    if getattr(G, "bn_mode", None) == "standing":
        recompute_standing_statistics(G, batch_size=G.bn_batch)
    return G
