"""Built-in datasets that ship with the install and need no network.

`lfw-faces`: the 100 face crops of `skimage.data.lfw_subset()` (scikit-image), from Labeled
Faces in the Wild (Huang et al. 2007). That array holds 200 grayscale 25x25 patches: the
first 100 are faces, the last 100 background patches, so only the first 100 are used. A
real 100-shot set, the size of the 100-shot Obama / Grumpy Cat / Panda benchmarks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from kdgan.data.imageset import ImageSet
from kdgan.data.sources import to_rgb_square

BUILTIN = ("lfw-faces",)


def load(name: str, resolution: int | None) -> ImageSet:
    """Load a built-in set as RGB uint8 at `resolution` (default: its native 25 px)."""
    from skimage.data import lfw_subset

    faces = (lfw_subset()[:100] * 255).round().astype(np.uint8)  # (100, 25, 25) grayscale
    images = np.stack(
        [np.asarray(to_rgb_square(Image.fromarray(f, mode="L"), resolution)) for f in faces]
    )
    meta = {"source": "builtin:lfw-faces (scikit-image lfw_subset, faces 0-99)", "split": None}
    return ImageSet(images, None, [], meta)
