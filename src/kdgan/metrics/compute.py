"""FID, KID, IS and precision/recall from Inception features, through torch-fidelity's code.

Every function takes features as float tensors (N, D) and returns plain floats plus notes
(warnings a researcher must see next to the number, e.g. a small reference set).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric
from torch_fidelity.metric_isc import isc_features_to_metric
from torch_fidelity.metric_kid import kid_features_to_metric
from torch_fidelity.metric_prc import prc_features_to_metric

from kdgan.errors import KdganError

log = logging.getLogger(__name__)

FID_MIN_IMAGES = 2048  # below this the 2048-d covariance is singular
KID_SUBSET_SIZE = 1000  # torch-fidelity's default (Binkowski et al. 2018)


def fid_statistics(features: torch.Tensor) -> dict[str, np.ndarray]:
    """mu (D,) and sigma (D, D) in float64."""
    stats = fid_features_to_statistics(features.double())
    return {"mu": stats["mu"].astype(np.float64), "sigma": stats["sigma"].astype(np.float64)}


def compute_fid(stats_gen: dict[str, np.ndarray], stats_ref: dict[str, np.ndarray],
                num_gen: int, num_ref: int) -> tuple[float, list[str]]:
    """Frechet distance between two Gaussians fitted to features (Heusel et al. 2017)."""
    notes = []
    if min(num_gen, num_ref) < FID_MIN_IMAGES:
        notes.append(
            f"FID with {min(num_gen, num_ref)} images (< {FID_MIN_IMAGES}): the covariance is "
            "singular and FID is biased upwards and unstable; compare KID instead"
        )
    problem = (
        f"FID is not finite: the features hold NaN/inf or a degenerate covariance ({num_gen} "
        f"generated, {num_ref} reference images); check the images (a diverged generator?) and "
        "use more of them"
    )
    if not all(np.isfinite(s[k]).all() for s in (stats_gen, stats_ref) for k in ("mu", "sigma")):
        raise KdganError(problem)
    try:
        value = fid_statistics_to_metric(stats_gen, stats_ref, verbose=False)["frechet_inception_distance"]
    except np.linalg.LinAlgError:
        raise KdganError(problem) from None
    if not math.isfinite(value):
        raise KdganError(problem)
    return value, notes


def compute_kid(features_gen: torch.Tensor, features_ref: torch.Tensor, seed: int,
                subsets: int = 100, subset_size: int = KID_SUBSET_SIZE) -> tuple[float, float, list[str]]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic
    polynomial kernel, mean and std over random subsets. The subset size shrinks to the
    smaller set when that holds fewer than `subset_size` images, and says so."""
    notes = []
    n = min(len(features_gen), len(features_ref))
    if n < 2:
        raise KdganError(f"KID needs at least 2 images in each set, got {n}")
    if n < subset_size:
        notes.append(f"KID subset size reduced from {subset_size} to {n} (the smaller set's size)")
        subset_size = n
    out = kid_features_to_metric(features_gen.double(), features_ref.double(), kid_subsets=subsets,
                                 kid_subset_size=subset_size, rng_seed=seed, verbose=False)
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"], notes


def compute_is(logits: torch.Tensor, splits: int = 10, seed: int = 2020) -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): exp E KL(p(y|x) || p(y)), mean and (population)
    std over `splits` consecutive splits in generation order, as the released BigGAN code
    computes it (no shuffle; `seed` is unused and kept for callers)."""
    out = isc_features_to_metric(logits, splits=splits, shuffle=False, rng_seed=seed)
    return out["inception_score_mean"], out["inception_score_std"]


def compute_precision_recall(features_gen: torch.Tensor, features_ref: torch.Tensor,
                             neighborhood: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019), k = 3 nearest neighbours."""
    out = prc_features_to_metric(features_gen.float(), features_ref.float(), prc_neighborhood=neighborhood,
                                 prc_batch_size=10000, save_cpu_ram=False, verbose=False)
    return out["precision"], out["recall"]
