"""BLIP teachers through HuggingFace transformers (Li et al., "BLIP", ICML 2022; KD-DLGAN Discussion 2).

The features are BLIP's image-text contrastive (ITC) embeddings of `BlipForImageTextRetrieval`:
image = vision_proj(ViT [CLS] token), text = text_proj(BERT text encoder [CLS] token), both
`image_text_hidden_size` wide (256 for the released checkpoints) and not L2-normalised (as the
CLIP teacher's). Default weights: Salesforce/blip-itm-base-coco from the HuggingFace hub when
online, or a local folder saved by `save_pretrained` / downloaded once. Needs the optional extra
`pip install 'kdgan[blip]'` (transformers).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F

from kdgan.errors import KdganError
from kdgan.teachers.base import Teacher, import_optional
from kdgan.teachers.clip import CLIP_MEAN, CLIP_STD

DEFAULT_BLIP = "Salesforce/blip-itm-base-coco"
BLIP_WEIGHTS_ENV = "KDGAN_BLIP_WEIGHTS"


def _import_transformers():
    return import_optional("transformers", "BLIP", "pip install 'kdgan[blip]' (or pip install transformers)")


class BLIPTeacher(Teacher):
    """ITC image and text features of a BLIP retrieval model.

    clip_input 'official': images as D sees them, in [-1, 1], nearest-neighbour upsampled to the
    model's input side, no mean/std (the convention of the released KD-DLGAN code for CLIP);
    'normalized': [0, 1], bilinear resize (antialiased when shrinking), BLIP's mean and std (the
    same numbers as CLIP's).
    """

    supports_text = True

    def __init__(self, model: torch.nn.Module, tokenizer, name: str, clip_input: str = "official"):
        super().__init__()
        if clip_input not in ("official", "normalized"):
            raise KdganError(f"clip_input must be official or normalized, not {clip_input!r}")
        self.model, self.tokenizer, self.name, self.clip_input = model, tokenizer, name, clip_input
        self.image_size = int(model.config.vision_config.image_size)
        self.dim = int(model.config.image_text_hidden_size)
        self.input_convention = f"{clip_input}, {self.image_size} px"
        self.register_buffer("mean", torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(CLIP_STD).view(1, 3, 1, 1), persistent=False)
        self.freeze()

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """[-1, 1] images as D sees them -> this model's pixel_values."""
        s = self.image_size
        if self.clip_input == "official":
            return F.interpolate(images, size=(s, s), mode="nearest") if images.shape[-1] != s else images
        x = (images + 1) / 2
        if x.shape[-1] != s:
            x = F.interpolate(x, size=(s, s), mode="bilinear", align_corners=False, antialias=x.shape[-1] > s)
        return (x - self.mean) / self.std

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = self.prepare(images.float()).to(self.dtype)
        cls = self.model.vision_model(pixel_values=x).last_hidden_state[:, 0, :]
        return self.model.vision_proj(cls).float()

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(prompts, padding=True, return_tensors="pt").to(self.device)
        out = self.model.text_encoder(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
        return self.model.text_proj(out.last_hidden_state[:, 0, :]).float()


def load_blip(weights: str | None = None, clip_input: str = "official") -> BLIPTeacher:
    """A BLIP teacher from a hub id (downloaded into the HuggingFace cache when online) or a local
    folder holding config.json, the weights and the tokenizer files; $KDGAN_BLIP_WEIGHTS is used
    when `weights` is empty and it is set."""
    transformers = _import_transformers()
    weights = weights or os.environ.get(BLIP_WEIGHTS_ENV) or DEFAULT_BLIP
    local = Path(weights).expanduser()
    if not local.exists() and (weights.startswith((".", "/", "~")) or weights.count("/") != 1):
        raise KdganError(f"BLIP weights folder {weights} does not exist; pass a folder saved with "
                         f"save_pretrained (config.json, weights, tokenizer) via --teacher-weights "
                         f"(or ${BLIP_WEIGHTS_ENV}), or a hub id such as {DEFAULT_BLIP} when online")
    source = str(local) if local.exists() else weights  # a local folder, else a hub id
    try:
        model = transformers.BlipForImageTextRetrieval.from_pretrained(source)
        tokenizer = transformers.AutoTokenizer.from_pretrained(source)
    except Exception as e:  # download or load failure: one clear line, no fallback
        raise KdganError(
            f"cannot load BLIP weights {weights!r} ({type(e).__name__}: {str(e)[:160]}). Offline, "
            f"download them once where there is network (HuggingFace caches them), or save the model "
            f"and tokenizer with save_pretrained into a folder and pass --teacher-weights FOLDER "
            f"(or set ${BLIP_WEIGHTS_ENV})"
        ) from None
    return BLIPTeacher(model.eval(), tokenizer, f"blip:{weights}", clip_input)


def tiny_random_blip(clip_input: str = "official", image_size: int = 32) -> BLIPTeacher:
    """FOR TESTS ONLY: a tiny, randomly initialised BLIP retrieval model of the real transformers
    architecture (ViT + BERT text encoder with the ITC projections) and a BERT WordPiece tokenizer
    over a small vocabulary. Its features mean nothing."""
    transformers = _import_transformers()
    import tempfile

    torch.manual_seed(1234)  # the same tiny teacher in every process
    config = transformers.BlipConfig(
        text_config={"vocab_size": 64, "hidden_size": 32, "encoder_hidden_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 40,
                     "pad_token_id": 0, "bos_token_id": 2, "sep_token_id": 3, "eos_token_id": 3},
        vision_config={"hidden_size": 32, "image_size": image_size, "patch_size": 8, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "intermediate_size": 64},
        image_text_hidden_size=16)
    model = transformers.BlipForImageTextRetrieval(config).eval()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "an", "photo", "of", "the",
             *"airplane automobile bird cat deer dog frog horse ship truck happy sad person obama".split()]
    with tempfile.TemporaryDirectory() as folder:
        vocab = Path(folder) / "vocab.txt"
        vocab.write_text("\n".join(words) + "\n")
        tokenizer = transformers.BertTokenizer(str(vocab))
    return BLIPTeacher(model, tokenizer, "blip-tiny-random (tests only)", clip_input)
