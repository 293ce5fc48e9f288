"""Frozen pre-trained teachers for KD-DLGAN, picked by name."""

from __future__ import annotations

import logging

import torch

from kdgan.errors import KdganError
from kdgan.teachers.base import Teacher

log = logging.getLogger(__name__)
TEACHERS = ("clip", "inception", "clip-tiny-random", "clip-random", "blip", "blip-tiny-random")


def build_teacher(name: str, model: str = "ViT-B-32", weights: str = "", clip_input: str = "official",
                  device: torch.device | str = "cpu", half: bool | None = None,
                  use_compile: bool = False) -> Teacher:
    """A frozen teacher on `device`; in half precision on a GPU unless `half` is False.
    `use_compile` wraps a CLIP image tower in torch.compile (the TorchScript Inception is left as is)."""
    device = torch.device(device)
    if name == "clip":
        from kdgan.teachers.clip import load_clip

        teacher = load_clip(model, weights or None, clip_input, "cpu")
    elif name == "inception":
        from kdgan.teachers.inception import InceptionTeacher

        teacher = InceptionTeacher()
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
        raise KdganError(f"unknown teacher {name!r}; choose from {', '.join(TEACHERS)}")
    if half is None:
        half = device.type == "cuda"
    teacher = teacher.to(device)
    if half:
        teacher = teacher.half()
    teacher = teacher.freeze()
    if use_compile:
        if hasattr(getattr(teacher, "model", None), "visual"):
            teacher.model.visual = torch.compile(teacher.model.visual, dynamic=False)
        else:
            log.warning("teacher_compile: the %s teacher is not an open_clip model; not compiled",
                        teacher.name)
    return teacher


__all__ = ["TEACHERS", "Teacher", "build_teacher"]
