"""VGG-16 fc2 features for improved precision and recall (Kynkaanniemi et al. 2019), as
torch-fidelity computes them (torchvision's ImageNet VGG-16, fc2 after ReLU, 224 px input).

Published precision / recall (Kynkaanniemi et al., stylegan2-ada, torch-fidelity) use these
features; kdgan uses them when torchvision's weights are in the torch hub cache (or can be
downloaded), and otherwise falls back to Inception pool3, labelled not comparable.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from kdgan.metrics.inception import InceptionFeatures

log = logging.getLogger(__name__)

VGG_NAME = "torch-fidelity-vgg16-fc2_relu"
VGG_WEIGHTS_FILE = "vgg16-397923af.pth"  # torchvision's VGG16_Weights.IMAGENET1K_V1


def vgg16_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG_WEIGHTS_FILE


def load_vgg16(device: str | torch.device = "cpu") -> InceptionFeatures | None:
    """The VGG-16 fc2 feature extractor (features under the key `pool3`, no logits, no FID
    statistics), or None when its weights are absent and cannot be downloaded (KDGAN_OFFLINE)."""
    offline = os.environ.get("KDGAN_OFFLINE", "") not in ("", "0")
    if offline and not vgg16_weights_path().exists():
        return None
    try:
        from torch_fidelity.feature_extractor_vgg16 import FeatureExtractorVGG16

        net = FeatureExtractorVGG16(VGG_NAME, ["fc2_relu"], verbose=False)
    except Exception as e:  # noqa: BLE001 - any download or load failure means: not available
        log.info("VGG-16 weights are not available (%s: %s)", type(e).__name__, str(e)[:120])
        return None
    extractor = InceptionFeatures(net, VGG_NAME, False, torch.device(device))
    extractor.fid_stats = False
    return extractor
