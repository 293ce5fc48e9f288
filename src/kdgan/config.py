"""Training configuration: one frozen dataclass, and named presets (one per paper table row)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields
from typing import Any

from kdgan.errors import KdganError


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; written to the run folder and into every checkpoint."""

    # --- data ---
    data: str = "lfw-faces"  # prepared zip, image folder, image zip, CIFAR archive, or built-in name
    split: str = "train"  # split folder to read when the source has train/ and test/
    resolution: int = 32  # px, square; images are centre-cropped and resized to it
    data_fraction: float = 1.0  # fraction of the images to train on, in (0, 1]
    data_seed: int = 0  # seed of the subset draw (independent of `seed`)
    data_balanced: bool = False  # draw the subset per class (same fraction of every class)
    conditional: bool = True  # class-conditional G and D when the data has labels
    xflip: bool = True  # random horizontal mirror of real images (dataset x2)
    # --- networks ---
    arch: str = "biggan"  # network family of G and D
    z_dim: int = 128  # latent size
    g_ch: int = 64  # G channel multiplier (BigGAN: blocks of 4 x g_ch channels at 32 px)
    d_ch: int = 64  # D channel multiplier
    # --- objective ---
    loss: str = "hinge"  # adversarial loss: hinge | ns (non-saturating)
    diffaugment: str = "translation,cutout"  # DiffAugment policy, comma separated; "" for none
    # --- optimisation ---
    batch_size: int = 50  # images per D step and per G step, summed over all processes
    d_steps: int = 4  # D steps per G step
    g_lr: float = 2e-4  # Adam learning rate of G
    d_lr: float = 2e-4  # Adam learning rate of D
    betas: tuple[float, float] = (0.0, 0.999)  # Adam betas, G and D
    adam_eps: float = 1e-8  # Adam epsilon
    ema_decay: float = 0.9999  # G_ema decay per G step
    ema_start_steps: int = 1000  # G steps before which G_ema is a plain copy of G
    steps: int = 125_000  # training length in G steps
    precision: str = "fp32"  # fp32 | bf16 | fp16 (autocast; fp16 adds loss scaling)
    seed: int = 0  # seed of initialisation, sampling and augmentation
    # --- bookkeeping ---
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    log_every_steps: int = 50  # G steps between log lines (JSONL, TensorBoard, progress bar)
    sample_every_steps: int = 1000  # G steps between fixed-z sample grids
    ckpt_every_steps: int = 2000  # G steps between checkpoints
    keep_ckpts: int = 3  # most recent checkpoints kept on disk (plus best, when evaluated)
    # --- evaluation during training (METHOD.md section 4) ---
    eval_every_steps: int = 0  # G steps between evaluations of G_ema; 0 = off
    eval_protocol: str = "cifar"  # cifar | fewshot | full50k | custom (custom needs eval_num_gen)
    eval_num_gen: int = 0  # generated images per evaluation; 0 = the protocol's number
    eval_metric: str = "fid"  # fid | kid: lower is better; picks checkpoints/best.pt
    eval_ref: str = ""  # reference data; "" = the training source (`data`)
    inception: str = "auto"  # auto | torch-fidelity | tf-torchscript (see kdgan.metrics.inception)


# Fields that may differ when a run is resumed: they do not change what is computed per step.
RESUMABLE_FIELDS = frozenset(
    {"steps", "device", "log_every_steps", "sample_every_steps", "ckpt_every_steps", "keep_ckpts",
     "eval_every_steps", "eval_protocol", "eval_num_gen", "eval_metric", "eval_ref", "inception"}
)


@dataclass(frozen=True)
class Preset:
    """A named configuration: the fields it sets, and the number the paper reports for it."""

    name: str
    description: str  # one line for `kdgan presets`
    overrides: dict[str, Any] = field(default_factory=dict)
    paper_fid: float | None = None  # FID reported in the paper for this row (METHOD.md section 5)


def _biggan_cifar(dataset: str, pct: int, fid: float) -> Preset:
    # 5,000 epochs at 10% / 20%; 1,000 epochs on the full set (released DiffAugment scripts).
    n_images = 50_000 * pct // 100
    epochs = 1000 if pct == 100 else 5000
    steps = epochs * n_images // (50 * 4)
    suffix = "" if pct == 100 else f"-{pct}pct"
    return Preset(
        name=f"biggan-{dataset}{suffix}-da",
        description=f"BigGAN 32px, DiffAugment translation,cutout, {dataset.upper()} {pct}% data",
        overrides={"data_fraction": pct / 100, "steps": steps, "sample_every_steps": 4000,
                   "eval_every_steps": 4000, "eval_protocol": "cifar"},
        paper_fid=fid,
    )


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in [
        Preset(
            "demo",
            "Few-minute CPU demo on the embedded 100 LFW faces (small BigGAN, 32 px)",
            {
                "data": "lfw-faces", "g_ch": 16, "d_ch": 16, "z_dim": 64, "batch_size": 20,
                "d_steps": 2, "g_lr": 5e-4, "d_lr": 5e-4, "steps": 600, "ema_decay": 0.99,
                "ema_start_steps": 100, "log_every_steps": 20, "sample_every_steps": 200,
                "ckpt_every_steps": 200, "diffaugment": "color,translation,cutout",
            },
        ),
        Preset(
            "tiny",
            "Smallest useful network, for tests and smoke runs",
            {
                "g_ch": 4, "d_ch": 4, "z_dim": 8, "batch_size": 8, "d_steps": 2, "steps": 4,
                "ema_start_steps": 2, "log_every_steps": 1, "sample_every_steps": 2,
                "ckpt_every_steps": 2,
            },
        ),
        # DA rows of KD-DLGAN Table 1 (FIDs from METHOD.md section 5).
        _biggan_cifar("cifar10", 100, 8.75),
        _biggan_cifar("cifar10", 20, 14.53),
        _biggan_cifar("cifar10", 10, 23.34),
        _biggan_cifar("cifar100", 100, 11.99),
        _biggan_cifar("cifar100", 20, 22.55),
        _biggan_cifar("cifar100", 10, 35.39),
    ]
}


def field_names() -> list[str]:
    """Names of all TrainConfig fields."""
    return [f.name for f in fields(TrainConfig)]


def _coerce(name: str, value: Any) -> Any:
    """Convert a value (possibly a command-line string) to the type of field `name`."""
    default = getattr(TrainConfig(), name)
    try:
        if isinstance(default, bool):
            if isinstance(value, str):
                if value.lower() in ("1", "true", "yes", "on"):
                    return True
                if value.lower() in ("0", "false", "no", "off"):
                    return False
                raise ValueError(value)
            return bool(value)
        if isinstance(default, tuple):
            if isinstance(value, str):
                value = [v for v in value.replace("(", "").replace(")", "").split(",") if v]
            return tuple(float(v) for v in value)
        if isinstance(default, int):
            if isinstance(value, float) and not value.is_integer():
                raise ValueError(value)
            return int(float(value)) if isinstance(value, str) else int(value)
        if isinstance(default, float):
            return float(value)
        return str(value)
    except (TypeError, ValueError):
        raise KdganError(
            f"config field {name!r} expects a {type(default).__name__}, got {value!r}"
        ) from None


def validate(cfg: TrainConfig) -> TrainConfig:
    """Check value ranges; raise KdganError naming the field and the fix."""
    checks = [
        (0 < cfg.data_fraction <= 1, "data_fraction must be in (0, 1], e.g. 0.1 for 10%"),
        (cfg.batch_size >= 1, "batch_size must be at least 1"),
        (cfg.d_steps >= 1, "d_steps must be at least 1"),
        (cfg.steps >= 1, "steps must be at least 1"),
        (cfg.resolution in (32, 64), "resolution must be 32 or 64 for the BigGAN networks"),
        (cfg.loss in ("hinge", "ns"), f"loss must be hinge or ns, not {cfg.loss!r}"),
        (cfg.precision in ("fp32", "bf16", "fp16"), "precision must be fp32, bf16 or fp16"),
        (cfg.arch == "biggan", f"arch {cfg.arch!r} is not available; use biggan"),
        (0 <= cfg.ema_decay < 1, "ema_decay must be in [0, 1)"),
        (min(cfg.log_every_steps, cfg.sample_every_steps, cfg.ckpt_every_steps) >= 1,
         "log/sample/ckpt intervals must be at least 1 step"),
        (cfg.keep_ckpts >= 1, "keep_ckpts must be at least 1"),
        (cfg.eval_every_steps >= 0, "eval_every_steps must be >= 0 (0 turns evaluation off)"),
        (cfg.eval_metric in ("fid", "kid"), "eval_metric must be fid or kid"),
        (cfg.eval_protocol != "custom" or cfg.eval_num_gen > 0,
         "eval_protocol custom needs eval_num_gen > 0"),
    ]
    for ok, message in checks:
        if not ok:
            raise KdganError(f"invalid config: {message}")
    from kdgan.augment import parse_policy

    parse_policy(cfg.diffaugment)
    return cfg


def resolve(preset: str | None, overrides: dict[str, Any]) -> TrainConfig:
    """Build a config from a preset name and field overrides (command-line values win)."""
    values: dict[str, Any] = {}
    if preset is not None:
        if preset not in PRESETS:
            raise KdganError(
                f"unknown preset {preset!r}; `kdgan presets` lists them: {', '.join(PRESETS)}"
            )
        values.update(PRESETS[preset].overrides)
    values.update({k: v for k, v in overrides.items() if v is not None})
    unknown = sorted(set(values) - set(field_names()))
    if unknown:
        raise KdganError(
            f"unknown config field(s) {', '.join(unknown)}; valid fields: {', '.join(field_names())}"
        )
    return validate(TrainConfig(**{k: _coerce(k, v) for k, v in values.items()}))


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """JSON-friendly dict of a config."""
    d = dataclasses.asdict(cfg)
    d["betas"] = list(cfg.betas)
    return d


def from_dict(d: dict[str, Any]) -> TrainConfig:
    """Rebuild a config saved by `to_dict` (unknown keys from newer versions are an error)."""
    return resolve(None, dict(d))


def dumps(cfg: TrainConfig) -> str:
    """The config as indented JSON."""
    return json.dumps(to_dict(cfg), indent=2)
