"""Deterministic subsets (10% / 20% of a training set), optionally class-balanced."""

from __future__ import annotations

import numpy as np

from kdgan.errors import KdganError


def select_subset(
    num_images: int,
    fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
    balanced: bool = False,
) -> np.ndarray:
    """Indices of a subset drawn without replacement, sorted ascending.

    Args:
        num_images: size of the full set.
        fraction: in (0, 1]; 1 returns all indices.
        seed: the same seed and inputs always give the same subset.
        labels: (N,) class indices, needed for balanced draws.
        balanced: draw round(fraction * n_c) images from every class c.
    """
    if not 0 < fraction <= 1:
        raise KdganError(f"fraction {fraction} is outside (0, 1]; use e.g. 0.1 for 10% of the data")
    if fraction == 1:
        return np.arange(num_images)
    rng = np.random.default_rng(seed)
    if balanced:
        if labels is None:
            raise KdganError("--balanced needs class labels (sub-folders per class); drop --balanced")
        picks = []
        for c in np.unique(labels):
            members = np.flatnonzero(labels == c)
            k = max(1, round(fraction * len(members)))
            picks.append(rng.choice(members, size=k, replace=False))
        return np.sort(np.concatenate(picks))
    k = max(1, round(fraction * num_images))
    return np.sort(rng.choice(num_images, size=k, replace=False))
