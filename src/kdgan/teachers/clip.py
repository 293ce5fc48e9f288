"""CLIP teachers through open_clip (Radford et al. 2021; Ilharco et al., open_clip).

Default: ViT-B-32 with OpenAI weights. Any open_clip model name with a pretrained tag or a
local checkpoint file works. Offline with no weights, loading fails with one message that
names what is missing and how to point at a local file; there is never a silent fallback.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from kdgan.errors import KdganError
from kdgan.teachers.base import Teacher, import_optional

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
WEIGHTS_ENV = "KDGAN_CLIP_WEIGHTS"


def _import_open_clip():
    return import_optional("open_clip", "CLIP", "pip install open_clip_torch (a kdgan dependency)")


class CLIPTeacher(Teacher):
    """Image and text features of an open_clip model (not L2-normalised; METHOD 1.1).

    clip_input 'official' (released KD-DLGAN code): images as D sees them, still in [-1, 1],
    upsampled by nearest neighbour to the model's input size, no CLIP mean/std.
    'normalized': [-1, 1] -> [0, 1], bilinear resize (antialiased when shrinking), CLIP mean/std.
    """

    supports_text = True

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, clip_input: str = "official"):
        super().__init__()
        if clip_input not in ("official", "normalized"):
            raise KdganError(f"clip_input must be official or normalized, not {clip_input!r}")
        self.model, self.tokenizer, self.name, self.clip_input = model, tokenizer, name, clip_input
        size = model.visual.image_size
        self.image_size = size if isinstance(size, int) else int(size[0])
        self.dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") and \
            model.text_projection is not None else int(model.encode_image(
                torch.zeros(1, 3, self.image_size, self.image_size)).shape[1])
        self.input_convention = f"{clip_input}, {self.image_size} px"
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images as D sees them -> this model's input."""
        s = self.image_size
        if self.clip_input == "official":
            if images.shape[-1] != s:
                images = F.interpolate(images, size=(s, s), mode="nearest")
            return images
        x = (images + 1) / 2
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > s)
        return (x - self.mean) / self.std

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare(images.float()).to(self.dtype)  # resize and normalise in fp32
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model.encode_image(x, normalize=False).float()

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts).to(self.device)
        return self.model.encode_text(tokens, normalize=False).float()


def load_clip(model_name: str = "ViT-B-32", weights: str | None = None, clip_input: str = "official",
              device: torch.device | str = "cpu") -> CLIPTeacher:
    """An open_clip teacher. `weights`: a pretrained tag (default 'openai', downloaded into
    open_clip's cache when online) or a local checkpoint file; $KDGAN_CLIP_WEIGHTS is used when
    `weights` is None and it is set."""
    open_clip = _import_open_clip()
    weights = weights or os.environ.get(WEIGHTS_ENV) or "openai"
    if model_name not in open_clip.list_models():
        raise KdganError(f"unknown open_clip model {model_name!r}; e.g. ViT-B-32, ViT-B-16, RN50 "
                         "(open_clip.list_models() lists them)")
    is_path = os.sep in weights or weights.endswith((".pt", ".pth", ".bin", ".safetensors"))
    if is_path and not Path(weights).is_file():
        raise KdganError(f"CLIP checkpoint {weights} does not exist; pass an existing file with "
                         f"--teacher-weights (or ${WEIGHTS_ENV})")
    try:
        model = open_clip.create_model(model_name, pretrained=weights, device="cpu",
                                       require_pretrained=True)
    except Exception as e:  # download or load failure: one clear line, no fallback
        raise KdganError(
            f"cannot load CLIP {model_name} weights {weights!r} ({type(e).__name__}: {str(e)[:160]}). "
            f"Offline, download them once where there is network (open_clip caches them), or put a "
            f"checkpoint on disk and pass --teacher-weights PATH (or set ${WEIGHTS_ENV}); "
            "or use --teacher inception, which needs no download"
        ) from None
    teacher = CLIPTeacher(model, open_clip.get_tokenizer(model_name), f"clip:{model_name}:{weights}",
                          clip_input)
    return teacher.to(device)


def random_clip(model_name: str = "ViT-B-32", clip_input: str = "official") -> CLIPTeacher:
    """FOR BENCHMARKS ONLY: the full-size open_clip architecture with random weights (the
    teacher's cost without its knowledge)."""
    open_clip = _import_open_clip()
    torch.manual_seed(1234)
    model = open_clip.create_model(model_name, pretrained=None, device="cpu")
    return CLIPTeacher(model, open_clip.get_tokenizer(model_name),
                       f"clip-random:{model_name} (random weights, benchmarks only)", clip_input)


def tiny_random_clip(clip_input: str = "official", image_size: int = 32,
                     device: torch.device | str = "cpu") -> CLIPTeacher:
    """FOR TESTS ONLY: a tiny, randomly initialised CLIP of the real open_clip architecture
    (ViT image tower + text transformer, the real tokenizer). Its features mean nothing."""
    open_clip = _import_open_clip()
    from open_clip.model import CLIP

    torch.manual_seed(1234)  # the same tiny teacher in every process
    model = CLIP(embed_dim=32,
                 vision_cfg={"image_size": image_size, "layers": 2, "width": 64, "patch_size": 8,
                             "head_width": 32},
                 text_cfg={"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2})
    return CLIPTeacher(model, open_clip.get_tokenizer("ViT-B-32"), "clip-tiny-random (tests only)",
                       clip_input).to(device)
