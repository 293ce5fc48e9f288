"""The in-memory image set and the pixel-range conventions."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ImageSet:
    """Images with optional labels.

    Attributes:
        images: uint8 array (N, H, W, 3).
        labels: int64 array (N,) of class indices, or None for unlabelled data.
        class_names: names of the classes, index-aligned with labels (empty when unlabelled).
        meta: provenance (source, split, subset, ...), written to dataset.json.
    """

    images: np.ndarray
    labels: np.ndarray | None = None
    class_names: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def resolution(self) -> int:
        return int(self.images.shape[1])

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.labels is not None else 0

    def content_hash(self) -> str:
        """sha256 of pixels and labels: two sets with the same hash hold the same data."""
        h = hashlib.sha256()
        h.update(np.ascontiguousarray(self.images).tobytes())
        if self.labels is not None:
            h.update(self.labels.astype(np.int64).tobytes())
        return h.hexdigest()

    def take(self, indices: np.ndarray) -> ImageSet:
        """A subset in the given order."""
        return ImageSet(
            self.images[indices],
            None if self.labels is None else self.labels[indices],
            list(self.class_names),
            dict(self.meta),
        )


def to_model_range(images_uint8: torch.Tensor) -> torch.Tensor:
    """uint8 NHWC or NCHW -> float32 in [-1, 1] (same layout)."""
    return images_uint8.to(torch.float32) / 127.5 - 1.0


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float NCHW in [-1, 1] -> uint8 NHWC on the CPU (rounded, clamped)."""
    x = (images.detach().float() * 127.5 + 128.0).clamp(0, 255).to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu()
