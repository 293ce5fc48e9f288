"""Evaluation: FID, KID, IS and precision/recall on TF Inception-v3 features, via torch-fidelity."""

from kdgan.metrics.evaluate import PROTOCOLS, evaluate, format_table, generate_uint8, get_protocol
from kdgan.metrics.inception import load_inception
from kdgan.metrics.reference import FeatureSet, extract_features, reference_features

__all__ = [
    "PROTOCOLS", "FeatureSet", "evaluate", "extract_features", "format_table", "generate_uint8",
    "get_protocol", "load_inception", "reference_features",
]
