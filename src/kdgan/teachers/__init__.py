"""Frozen pre-trained teachers for KD-DLGAN, picked by name."""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

from kdgan.config import TEACHER_FAMILIES, TEACHERS
from kdgan.errors import KdganError
from kdgan.teachers.base import Teacher

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes (read in 1 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_teacher(name: str, model: str = "ViT-B-32", weights: str = "", clip_input: str = "official",
                  device: torch.device | str = "cpu", half: bool | None = None,
                  use_compile: bool = False, resolution: int = 0,
                  dtype: torch.dtype | None = None) -> Teacher:
    """A frozen teacher on `device`; in half precision on a GPU unless `half` is False; `dtype`
    (when given) sets its dtype instead (e.g. bfloat16 on a CPU with native bf16).
    `use_compile` wraps a CLIP image tower or a classifier / backbone network in torch.compile
    (the TorchScript Inception is left as is). `resolution` > 0: input size of a torchvision: /
    timm: teacher instead of the model's default."""
    device = torch.device(device)
    model = model or "ViT-B-32"  # "" = the default open_clip network (only clip / clip-random use it)
    family = name.partition(":")[0] if ":" in name else ""
    weights_file = ""  # the local file the weights come from, hashed into teacher.weights_sha256
    if family in TEACHER_FAMILIES:
        from kdgan.teachers.backbone import load_backbone

        teacher = load_backbone(name, weights, resolution)
        weights_file = str(Path(weights).expanduser()) if Path(weights).expanduser().is_file() else ""
    elif name == "classifier":
        from kdgan.teachers.classifier import load_classifier_teacher, teacher_file

        if not weights:
            raise KdganError("the classifier teacher needs --teacher-weights DIR: the folder (or its "
                             "teacher.safetensors) written by `kdgan teacher train --outdir DIR`")
        teacher = load_classifier_teacher(weights)
        weights_file = str(teacher_file(weights))
    elif name == "clip":
        from kdgan.teachers.clip import WEIGHTS_ENV, load_clip

        teacher = load_clip(model, weights or None, clip_input, "cpu")
        source = Path(weights or os.environ.get(WEIGHTS_ENV) or "openai").expanduser()
        weights_file = str(source) if source.is_file() else ""
    elif name == "inception":
        from kdgan.metrics.inception import torchscript_path
        from kdgan.teachers.inception import InceptionTeacher

        teacher = InceptionTeacher(resolution)
        weights_file = str(torchscript_path())
    elif name == "clip-random":
        from kdgan.teachers.clip import random_clip

        teacher = random_clip(model, clip_input)
    elif name == "clip-tiny-random":
        from kdgan.teachers.clip import tiny_random_clip

        teacher = tiny_random_clip(clip_input)
    elif name in ("blip", "blip-tiny-random"):  # HuggingFace BLIP (optional extra kdgan[blip])
        from kdgan.teachers.blip import load_blip, tiny_random_blip

        teacher = load_blip(weights or None, clip_input) if name == "blip" else tiny_random_blip(clip_input)
    else:
        raise KdganError(f"unknown teacher {name!r}; choose from {', '.join(TEACHERS)}, "
                         "torchvision:MODEL or timm:MODEL")
    if weights_file:
        teacher.weights_sha256 = file_sha256(weights_file)
    if half is None:
        half = device.type == "cuda"
    teacher = teacher.to(device)
    if dtype is not None:
        teacher = teacher.to(dtype)
    elif half:
        teacher = teacher.half()
    teacher = teacher.freeze()
    if use_compile:
        if hasattr(getattr(teacher, "model", None), "visual"):
            teacher.model.visual = torch.compile(teacher.model.visual, dynamic=False)
        elif not isinstance(getattr(teacher, "net", None), torch.jit.ScriptModule):
            teacher.net = torch.compile(teacher.net, dynamic=False)
        else:
            log.warning("teacher_compile: the %s teacher is not an open_clip model; not compiled",
                        teacher.name)
    return teacher


__all__ = ["TEACHERS", "Teacher", "build_teacher"]
