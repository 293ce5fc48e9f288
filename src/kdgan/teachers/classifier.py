"""A small image classifier trained by kdgan (`kdgan teacher train`) as a KD-DLGAN teacher.

The network is a narrow CIFAR ResNet (He et al., CVPR 2016, section 4.2: 3 stages of basic
blocks, widths w, 2w, 4w). As a teacher it gives the penultimate layer (global average pool of
the last stage, 4w numbers) as image features, and the rows of its bias-free final layer as one
embedding per class. Image features against class embeddings are then exactly the classifier's
logits, as CLIP's image features against class-prompt embeddings are its zero-shot logits, so
CGKD runs with class names as prompts.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from kdgan.errors import KdganError
from kdgan.teachers.base import Teacher

FORMAT = "kdgan-classifier-teacher/1"
WEIGHTS_FILE = "teacher.safetensors"
CONFIG_FILE = "teacher.json"
INPUT_CONVENTION = "float RGB in [-1, 1] (uint8 / 127.5 - 1), no mean/std"


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a residual connection (1x1 conv-BN when the shape changes)."""

    def __init__(self, in_ch: int, out_ch: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(h)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images: stem conv, 3 stages of n blocks (widths w, 2w, 4w; the
    2nd and 3rd halve the resolution), global average pool, bias-free linear classifier.

    `features(x)`: x float (B, 3, R, R) in [-1, 1] -> (B, 4w) >= 0. `forward(x)`: logits (B, K).
    """

    def __init__(self, num_classes: int, width: int = 16, blocks: int = 3):
        super().__init__()
        if num_classes < 2 or width < 1 or blocks < 1:
            raise KdganError(f"classifier needs >= 2 classes, width >= 1 and blocks >= 1 "
                             f"(got {num_classes}, {width}, {blocks})")
        self.config = {"arch": "cifar-resnet", "num_classes": num_classes, "width": width, "blocks": blocks}
        self.stem = nn.Sequential(nn.Conv2d(3, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        layers, ch = [], width
        for stage in range(3):
            out = width * 2**stage
            for i in range(blocks):
                layers.append(BasicBlock(ch, out, 2 if stage > 0 and i == 0 else 1))
                ch = out
        self.blocks = nn.Sequential(*layers)
        self.feature_dim = ch
        self.fc = nn.Linear(ch, num_classes, bias=False)  # no bias: logits = features . class vectors
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def build_classifier(config: dict[str, Any]) -> CifarResNet:
    """The network described by a saved config's `net` dict."""
    if config.get("arch") != "cifar-resnet":
        raise KdganError(f"unknown classifier architecture {config.get('arch')!r} "
                         "(this kdgan knows cifar-resnet)")
    return CifarResNet(int(config["num_classes"]), int(config["width"]), int(config["blocks"]))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, H, W) to size x size, antialiased when shrinking; identity if equal."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                         antialias=images.shape[-1] > size)


def _normalise_words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+", text.lower().replace("_", " ")))


def match_prompts(prompts: list[str], class_names: list[str] | tuple[str, ...]) -> list[int]:
    """The class index each prompt names: the class name must appear in the prompt as whole words
    (case, '_' and punctuation ignored), e.g. 'dog', 'a dog', 'a photo of a dog.' -> 'dog';
    'a maple tree' -> 'maple_tree'. A name inside a longer matching name ('truck' in 'pickup
    truck') does not count. No class, or two different classes, in a prompt is an error."""
    names = [_normalise_words(c) for c in class_names]
    rows = []
    for prompt in prompts:
        text = f" {_normalise_words(prompt)} "
        found = {k for k, n in enumerate(names) if n and f" {n} " in text}
        found = {k for k in found if not any(j != k and f" {names[k]} " in f" {names[j]} " for j in found)}
        if len(found) != 1:
            listed = ", ".join(class_names)
            what = ("names none of" if not found else
                    f"names several ({', '.join(class_names[k] for k in sorted(found))}) of")
            raise KdganError(
                f"CGKD prompt {prompt!r} {what} the classifier teacher's classes ({listed}); a prompt "
                "must name exactly one class, e.g. 'a photo of a " + class_names[0].replace("_", " ")
                + "' or the plain class name. Pass --prompts FILE with such prompts (one per line), "
                "or --kd agkd"
            )
        rows.append(found.pop())
    return rows


class ClassifierTeacher(Teacher):
    """Penultimate features and class vectors of a classifier trained by `kdgan teacher train`.

    image_features: what D sees, float (B, 3, R, R) in [-1, 1]; resized (bilinear, antialiased
    when shrinking) to the classifier's resolution when R differs; -> float32 (B, 4w).
    text_features(prompts): the final layer's row of the class each prompt names (K, 4w).
    """

    supports_text = True

    def __init__(self, net: CifarResNet, class_names: list[str], resolution: int, name: str):
        super().__init__()
        if len(class_names) != net.fc.out_features:
            raise KdganError(f"classifier teacher has {net.fc.out_features} outputs but "
                             f"{len(class_names)} class names; the teacher file is damaged")
        self.net, self.class_names, self.image_size, self.name = net, tuple(class_names), resolution, name
        self.dim = net.feature_dim
        self.input_convention = f"{INPUT_CONVENTION}, bilinear to {resolution} px"
        self.freeze()

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = resize(images.float(), self.image_size).to(self.dtype)  # resize in fp32
        return self.net.features(x).float()

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Class scores (B, K) of [-1, 1] images: image features times the class vectors."""
        return self.image_features(images) @ self.net.fc.weight.float().t()

    @torch.no_grad()
    def text_features(self, prompts: list[str]) -> torch.Tensor:
        rows = match_prompts(prompts, self.class_names)
        return self.net.fc.weight[torch.tensor(rows, device=self.device)].float()


def teacher_file(path: str | os.PathLike) -> Path:
    """The weights file of a saved classifier teacher (a folder holding teacher.safetensors, or the file)."""
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / WEIGHTS_FILE
    if not p.is_file():
        raise KdganError(f"classifier teacher {p} does not exist; pass --teacher-weights with the folder "
                         "(or its teacher.safetensors) that `kdgan teacher train --outdir DIR` wrote")
    return p


def save_classifier(folder: str | os.PathLike, net: CifarResNet, info: dict[str, Any]) -> Path:
    """Write teacher.safetensors (weights, the config in its metadata) and teacher.json (the same
    config, indented) into `folder`, atomically; returns the weights path."""
    from kdgan.utils.files import save_safetensors

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT, **info, "net": dict(net.config)}
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    save_safetensors(tensors, folder / WEIGHTS_FILE, {"kdgan_teacher": json.dumps(info)})
    (folder / CONFIG_FILE).write_text(json.dumps(info, indent=2) + "\n")
    return folder / WEIGHTS_FILE


def read_classifier(path: str | os.PathLike) -> tuple[CifarResNet, dict[str, Any]]:
    """(network with its weights, in eval mode on the CPU; saved config) of a saved teacher."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    p = teacher_file(path)
    try:
        with safe_open(str(p), "pt") as f:
            meta = f.metadata() or {}
        info = json.loads(meta["kdgan_teacher"])
        state = load_file(str(p))
    except (SafetensorError, KeyError, json.JSONDecodeError, OSError) as e:
        raise KdganError(f"{p} is not a kdgan classifier teacher ({type(e).__name__}: {e}); "
                         "train one with `kdgan teacher train`") from None
    if info.get("format") != FORMAT:
        raise KdganError(f"{p} has format {info.get('format')!r}, not {FORMAT}; retrain it with this kdgan")
    net = build_classifier(info["net"])
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        raise KdganError(f"{p}: weights do not fit the saved architecture ({str(e)[:200]})") from None
    return net.eval(), info


def load_classifier_teacher(path: str | os.PathLike) -> ClassifierTeacher:
    """The classifier teacher saved at `path` (folder or teacher.safetensors), on the CPU, frozen."""
    net, info = read_classifier(path)
    acc = info.get("val_accuracy")
    name = f"classifier:{teacher_file(path)}" + (f" (val acc {acc:.3f})" if acc is not None else "")
    return ClassifierTeacher(net, list(info["class_names"]), int(info["resolution"]), name)
