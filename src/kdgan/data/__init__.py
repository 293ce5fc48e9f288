"""Datasets: image folders, image zips, CIFAR archives, prepared kdgan zips and built-in sets.

Convention, declared once here: images are uint8 RGB (N, H, W, 3) on disk and in memory,
and float32 NCHW in [-1, 1] inside the models (`to_model_range`).
"""

from kdgan.data.imageset import ImageSet, to_model_range, to_uint8
from kdgan.data.sources import load_images
from kdgan.data.subset import select_subset

__all__ = ["ImageSet", "load_images", "select_subset", "to_model_range", "to_uint8"]
