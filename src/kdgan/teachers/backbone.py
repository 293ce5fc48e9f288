"""Any torchvision or timm image model as an image-only KD-DLGAN teacher (`torchvision:NAME`, `timm:NAME`).

Features are the pooled penultimate layer: torchvision classification models with their last
linear layer (the classifier) replaced by identity, timm models built with num_classes=0.
Weights come from a local state-dict file (.safetensors, or .pt / .pth read with
weights_only=True); `download` asks torchvision / timm for their default pretrained weights.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from kdgan.errors import KdganError
from kdgan.teachers.base import Teacher
from kdgan.teachers.classifier import resize

FAMILIES = ("torchvision", "timm")
DOWNLOAD = "download"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BackboneTeacher(Teacher):
    """Pooled penultimate features of an image network; no text, so AGKD only.

    Input: what D sees, float (B, 3, R, R) in [-1, 1] -> [0, 1] -> bilinear resize to the model's
    input size (antialiased when shrinking) -> (x - mean) / std with the model's own mean and std.
    """

    supports_text = False

    def __init__(self, net: nn.Module, name: str, image_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...]):
        super().__init__()
        self.net, self.name, self.image_size = net, name, image_size
        self.register_buffer("mean", torch.tensor(mean).float().view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).float().view(1, 3, 1, 1), persistent=False)
        self.input_convention = (f"[-1, 1] -> [0, 1], bilinear to {image_size} px, mean "
                                 f"{tuple(round(m, 4) for m in mean)}, std {tuple(round(s, 4) for s in std)}")
        self.freeze()
        with torch.no_grad():
            out = self.net(torch.zeros(1, 3, image_size, image_size))
        if out.dim() != 2:
            raise KdganError(f"{name} gives features of shape {tuple(out.shape)}, not (batch, features); "
                             "use a classification model (its pooled penultimate layer is the feature)")
        self.dim = int(out.shape[1])

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        x = resize((images.float() + 1) / 2, self.image_size)
        x = ((x - self.mean.float()) / self.std.float()).to(self.dtype)  # normalise in fp32
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.net(x).float()


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors or a torch file (weights_only), unwrapped from a
    {'state_dict' | 'model' | 'state_dict_ema': ...} container and a 'module.' (DDP) prefix."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise KdganError(f"teacher weights {p} do not exist; pass a state-dict file (.safetensors, .pt, "
                         f".pth) with --teacher-weights, or --teacher-weights {DOWNLOAD} (needs network)")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(p))
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # unreadable, or a pickle of objects that weights_only refuses
        raise KdganError(f"cannot read teacher weights {p} ({type(e).__name__}: {str(e)[:200]}); save "
                         "them with torch.save(model.state_dict(), FILE) or safetensors") from None
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise KdganError(f"{p} does not hold a state dict (names -> tensors)")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def _load_weights(net: nn.Module, state: dict[str, torch.Tensor], head: tuple[str, ...], where: str) -> None:
    """Load `state` into the headless `net`; only the classifier head's weights may be left over."""
    result = net.load_state_dict(state, strict=False)
    extra = [k for k in result.unexpected_keys if not k.startswith(tuple(h + "." for h in head))]
    if result.missing_keys or extra:
        raise KdganError(
            f"teacher weights {where} do not fit this model (missing: {', '.join(result.missing_keys[:5])}"
            f"{' ...' if len(result.missing_keys) > 5 else ''}; unexpected: {', '.join(extra[:5])}"
            f"{' ...' if len(extra) > 5 else ''}); check the model name, or save the weights of "
            "exactly this architecture"
        )


def _drop_last_linear(net: nn.Module) -> str:
    """Replace the last nn.Linear (a torchvision classifier's output layer) by identity; its name."""
    names = [n for n, m in net.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise KdganError(f"{type(net).__name__} has no linear classifier layer to remove; choose another "
                         "torchvision model, or timm:NAME")
    parent_name, _, child = names[-1].rpartition(".")
    setattr(net.get_submodule(parent_name) if parent_name else net, child, nn.Identity())
    return names[-1]


def _torchvision(model: str, weights: str) -> tuple[nn.Module, int, tuple, tuple]:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)  # classification models only
    if model not in known:
        raise KdganError(f"unknown torchvision classification model {model!r}; e.g. resnet18, resnet50, "
                         "vit_b_16, swin_t, convnext_tiny (torchvision.models.list_models() lists them)")
    size, mean, std = 224, IMAGENET_MEAN, IMAGENET_STD
    try:  # the model's documented preprocessing: crop size, mean and std of its default weights
        preset = torchvision.models.get_model_weights(model).DEFAULT.transforms()
        size, mean, std = int(preset.crop_size[0]), tuple(preset.mean), tuple(preset.std)
    except (ValueError, AttributeError, KeyError):
        pass
    try:
        net = torchvision.models.get_model(model, weights="DEFAULT" if weights == DOWNLOAD else None)
    except Exception as e:  # a failed download: one clear line
        raise KdganError(f"cannot get torchvision {model} weights ({type(e).__name__}: {str(e)[:160]}); "
                         "offline, pass a local state-dict file with --teacher-weights FILE") from None
    head = _drop_last_linear(net)
    if weights != DOWNLOAD:
        _load_weights(net, read_state_dict(weights), (head,), weights)
    return net, size, mean, std


def _timm(model: str, weights: str) -> tuple[nn.Module, int, tuple, tuple]:
    import timm

    if not timm.is_model(model):
        raise KdganError(f"unknown timm model {model!r}; e.g. resnet50, vit_small_patch16_224, "
                         "convnext_tiny (timm.list_models('*vit*') lists them)")
    try:
        net = timm.create_model(model, pretrained=weights == DOWNLOAD, num_classes=0)  # pooled features
    except Exception as e:
        raise KdganError(f"cannot get timm {model} weights ({type(e).__name__}: {str(e)[:160]}); "
                         "offline, pass a local state-dict file with --teacher-weights FILE") from None
    if weights != DOWNLOAD:
        head = net.pretrained_cfg.get("classifier") or ()
        heads = (head,) if isinstance(head, str) else tuple(head)
        _load_weights(net, read_state_dict(weights), heads, weights)
    data = timm.data.resolve_data_config({}, model=net)
    return net, int(data["input_size"][-1]), tuple(data["mean"]), tuple(data["std"])


def load_backbone(spec: str, weights: str, resolution: int = 0) -> BackboneTeacher:
    """`torchvision:NAME` or `timm:NAME` with weights from a local state-dict file, or `download`;
    on the CPU, frozen. `resolution` > 0 replaces the model's input size (e.g. a model of yours
    trained at 64 px)."""
    family, _, model = spec.partition(":")
    if family not in FAMILIES or not model:
        raise KdganError(f"teacher {spec!r}: use torchvision:MODEL or timm:MODEL, e.g. torchvision:resnet50")
    if not weights:
        raise KdganError(f"the {spec} teacher needs weights: --teacher-weights FILE (a state dict, "
                         f".safetensors / .pt / .pth), or --teacher-weights {DOWNLOAD} to let {family} "
                         "download its default pretrained weights (needs network)")
    try:
        net, size, mean, std = (_torchvision if family == "torchvision" else _timm)(model, weights)
    except ImportError:
        raise KdganError(f"the {spec} teacher needs {family}: pip install {family}") from None
    source = DOWNLOAD if weights == DOWNLOAD else str(Path(weights).expanduser())
    return BackboneTeacher(net.eval(), f"{spec} ({source})", resolution or size, mean, std)
