"""Augmentations applied to what D sees."""

from kdgan.augment.diffaugment import DiffAugment, parse_policy

__all__ = ["DiffAugment", "parse_policy"]
