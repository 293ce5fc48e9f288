"""Generated images from an .npz, for `kdgan evaluate --images` (folders and zips are read as
image sets, with cached features: `reference_features`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kdgan.errors import KdganError


def load_generated(path: str) -> np.ndarray:
    """uint8 (N, H, W, 3) from an .npz (arr_0 or images, NHWC or NCHW)."""
    p = Path(path)
    with np.load(p, allow_pickle=False) as z:
        key = next((k for k in ("arr_0", "images") if k in z.files), None)
        if key is None:
            raise KdganError(f"{p} has no arr_0 or images array (found {', '.join(z.files)})")
        x = z[key]
    if x.ndim == 4 and x.shape[1] == 3 and x.shape[-1] != 3:
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != 4 or x.shape[-1] != 3 or x.dtype != np.uint8:
        raise KdganError(f"{p}:{key} must be uint8 (N, H, W, 3), got {x.dtype} {x.shape}")
    return x
