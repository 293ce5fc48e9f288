"""Deterministic subsets (10% / 20% of a training set), optionally class-balanced.

Two draws: `released` is the released KD-DLGAN / DiffAugment / LeCam BigGAN code's,
np.random.seed(seed); np.random.choice(N, n, replace=False) over the images in source order;
with the official CIFAR python archives (whose order is the original one) it picks exactly the
paper's images. `generator` draws with np.random.default_rng(seed). Either way the same seed
and source give the same subset; a source in another order (e.g. a folder or zip sorted by
class) gives a different, equally random, subset.
"""

from __future__ import annotations

import numpy as np

from kdgan.errors import KdganError


def select_subset(
    num_images: int,
    fraction: float,
    seed: int,
    labels: np.ndarray | None = None,
    balanced: bool = False,
    draw: str = "released",
) -> np.ndarray:
    """Indices of a subset drawn without replacement, sorted ascending.

    Args:
        num_images: size of the full set.
        fraction: in (0, 1]; 1 returns all indices.
        seed: the same seed and inputs always give the same subset.
        labels: (N,) class indices, needed for balanced draws.
        balanced: draw round(fraction * n_c) images from every class c.
        draw: "released" (numpy's legacy global-seed draw, as the released code) or "generator".
    """
    if not 0 < fraction <= 1:
        raise KdganError(f"fraction {fraction} is outside (0, 1]; use e.g. 0.1 for 10% of the data")
    if draw not in ("released", "generator"):
        raise KdganError(f"subset draw must be released or generator, not {draw!r}")
    if fraction == 1:
        return np.arange(num_images)
    # RandomState(seed).choice is what np.random.seed(seed); np.random.choice(...) computes
    rng = np.random.RandomState(seed) if draw == "released" else np.random.default_rng(seed)
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
