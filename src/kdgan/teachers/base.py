"""The Teacher protocol: a frozen pre-trained network that D distills from (METHOD.md 1.1)."""

from __future__ import annotations

import functools
import importlib
import os

import torch
from torch import nn

from kdgan.errors import KdganError


def import_optional(module: str, what: str, install: str):
    """Import a teacher's library, or one KdganError naming what needs it and how to install it.
    With KDGAN_OFFLINE set, hub downloads fail at once instead of retrying (HF_HUB_OFFLINE)."""
    if os.environ.get("KDGAN_OFFLINE", "") not in ("", "0"):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return importlib.import_module(module)
    except ImportError:
        raise KdganError(f"the {what} teacher needs {module}: {install}") from None


def _own_precision(fn):
    """Run a teacher method outside any autocast region: a teacher computes in its own dtype
    (half on a GPU, fp32 on the CPU), whatever precision G and D train in. Under autocast its
    half weights met bf16 activations on CUDA ("expected scalar type Float but found Half")."""

    @functools.wraps(fn)
    def wrapper(self, *args, **kwargs):
        with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
            return fn(self, *args, **kwargs)

    return wrapper


class Teacher(nn.Module):
    """Frozen image (and optionally text) encoder.

    `image_features(images)` takes what D sees: float (B, 3, R, R) in [-1, 1]; returns float32
    (B, dim). `text_features(prompts)` returns float32 (K, dim) where `supports_text`.
    Subclasses set `name`, `dim`, `supports_text`, `input_convention` and implement `encode`.
    A teacher is never trained, never in an optimiser, never in a checkpoint; `weights_sha256`
    (of its weights file, set by `build_teacher`) says in a run's checkpoints which one it was.
    Both feature methods run outside autocast, in the teacher's own dtype.
    """

    name: str = "teacher"
    dim: int = 0
    supports_text: bool = False
    input_convention: str = ""
    class_names: tuple[str, ...] = ()  # closed-vocabulary teachers: the classes prompts may name
    weights_sha256: str = ""  # sha256 of the local weights file; "" for downloaded / built-in weights

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in ("image_features", "text_features"):
            if name in cls.__dict__:
                setattr(cls, name, _own_precision(cls.__dict__[name]))

    def freeze(self) -> Teacher:
        self.eval()
        self.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Teacher:  # a teacher stays in eval mode
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def text_features(self, prompts: list[str]) -> torch.Tensor:
        raise ValueError(f"the {self.name} teacher has no text encoder")
