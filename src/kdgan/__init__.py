"""kdgan: data-limited GAN training by knowledge distillation, and GAN compression."""

from kdgan.errors import KdganError
from kdgan.nets import load_generator

__all__ = ["KdganError", "load_generator", "__version__"]
__version__ = "0.1.0"
