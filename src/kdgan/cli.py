"""The `kdgan` command: train | compress | generate | evaluate | export | presets | data prepare | info."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from kdgan.config import COMPRESS_DEFAULTS
from kdgan.errors import KdganError

log = logging.getLogger("kdgan")


def _setup_logging(verbose: bool) -> None:
    from kdgan.training.monitor import TqdmHandler

    handler = TqdmHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("kdgan")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100,
                                "show_default": True})
@click.version_option(package_name="kdgan")
@click.option("-v", "--verbose", is_flag=True, help="Debug-level log lines.")
def cli(verbose: bool) -> None:
    """kdgan: train GANs on little data with knowledge distillation, and compress them.

    Start with `kdgan train --preset demo-kd --outdir runs/demo` (KD-DLGAN on the embedded
    100 LFW faces with the offline Inception teacher: about 11 minutes on a 2-core CPU;
    `--preset demo` is the same without KD), then
    `kdgan generate --ckpt runs/demo/export --num 16 --outdir out`.
    """
    _setup_logging(verbose)


def _default(name: str) -> str:
    """The [default: ...] text of a train option that falls back on the preset, then TrainConfig."""
    from kdgan.config import TrainConfig

    value = getattr(TrainConfig(), name)
    return f"the preset's, else {value if value != '' else 'none'}"


_DATA_NAMES = ("lfw-faces (built in), cifar10, cifar100, and the few-shot sets obama, grumpy-cat, panda, "
               "animalface-cat, animalface-dog (downloaded once when online)")


# --------------------------------------------------------------------------- train
@cli.command()
@click.option("--data", show_default=_default("data"),
              help=f"Prepared zip, image folder or zip, CIFAR archive, or a name: {_DATA_NAMES}.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False),
              help="Run folder. Re-running the same command in it resumes from the last checkpoint.")
@click.option("--preset", help="Named configuration (see `kdgan presets`; start with demo-kd); flags "
              "override its fields.")
@click.option("--steps", type=int, show_default=_default("steps"), help="Training length in G steps.")
@click.option("--batch-size", type=int, show_default=_default("batch_size"),
              help="Images per D/G step, summed over processes.")
@click.option("--device", show_default=_default("device"),
              help="auto | cpu | cuda | cuda:N (auto: cuda when available).")
@click.option("--seed", type=int, show_default=_default("seed"),
              help="Seed of initialisation, sampling and augmentation.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), show_default=_default("precision"),
              help="Autocast precision.")
@click.option("--resolution", type=int, show_default=_default("resolution"),
              help="Image side in px: 32 or 64 for BigGAN (and the dcgan / mlp students), a power of two "
              "from 8 to 1024 for StyleGAN2 (--set arch=stylegan2).")
@click.option("--split", show_default=_default("split"),
              help="Split folder to read when the data has train/ and test/.")
@click.option("--data-fraction", type=float, show_default=_default("data_fraction"),
              help="Train on this fraction of the data, in (0, 1].")
@click.option("--teacher", show_default=_default("teacher"),
              help="KD-DLGAN teacher: clip | inception (image-only, offline) | clip-random (CLIP "
              "architecture, random weights: benchmarks only) | clip-tiny-random (tests only). None: a plain "
              "GAN.")
@click.option("--teacher-model", show_default="ViT-B-32 for clip and clip-random",
              help="open_clip model name of --teacher clip or clip-random.")
@click.option("--teacher-weights", show_default="openai, or $KDGAN_CLIP_WEIGHTS",
              help="open_clip pretrained tag or local checkpoint file of --teacher clip.")
@click.option("--kd", show_default=_default("kd"),
              help="Distillation terms: auto (agkd,cgkd with a CLIP teacher, agkd with the image-only "
              "inception teacher), agkd,cgkd, agkd or cgkd.")
@click.option("--prompts", show_default="'a {class}' for the data's classes",
              help="CGKD prompts: a named list (cifar10, cifar100, obama, grumpy-cat, panda, animalface-cat, "
              "animalface-dog, faces) or a file, one per line.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE",
              help="Override any config field, e.g. --set g_lr=1e-4 (repeatable; fields: "
              "src/kdgan/config.py, or --dry-run).")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
def train(data, outdir, preset, steps, batch_size, device, seed, precision, resolution, split,
          data_fraction, teacher, teacher_model, teacher_weights, kd, prompts, sets, dry_run) -> None:
    """Train a GAN; resumable, with samples, logs, checkpoints and a generator export."""
    from kdgan import config as config_lib

    overrides = {"data": data, "steps": steps, "batch_size": batch_size, "device": device,
                 "seed": seed, "precision": precision, "resolution": resolution, "split": split,
                 "data_fraction": data_fraction, "teacher": teacher, "teacher_model": teacher_model,
                 "teacher_weights": teacher_weights, "kd": kd, "prompts": prompts}
    overrides.update(_parse_sets(sets))
    cfg = config_lib.resolve(preset, overrides)
    if dry_run:
        click.echo(config_lib.dumps(cfg))
        return
    _run_training(cfg, outdir)


def _parse_sets(sets: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in sets:
        if "=" not in item:
            raise KdganError(f"--set expects FIELD=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = value
    return out


def _run_training(cfg, outdir: str) -> dict | None:
    """Train (or resume) a run and print where everything is; None on non-main ranks."""
    import contextlib
    import os

    from kdgan.training.lock import run_lock
    from kdgan.training.loop import Trainer
    from kdgan.utils.dist import shutdown_distributed

    main_rank = int(os.environ.get("RANK", "0")) == 0  # under torchrun only rank 0 holds the lock
    try:  # lock first: a second training in the same folder refuses before loading anything
        with run_lock(outdir) if main_rank else contextlib.nullcontext():
            trainer = Trainer(cfg, outdir)
            summary = trainer.run()
    finally:
        shutdown_distributed()
    if not trainer.info.is_main:
        return None
    if summary["stopped_early"]:
        click.echo(f"stopped at step {summary['step']}; checkpoint saved: {summary['checkpoint']}\n"
                   "re-run the same command to resume.")
        sys.exit(130)
    minutes, seconds = divmod(int(summary["seconds"]), 60)
    samples = sorted(Path(summary["samples"]).glob("fakes-*.png"))
    resumed, step = summary["resumed_from"], summary["step"]
    if resumed is not None and summary["steps_run"] == 0:  # nothing left to train
        state = f"past --steps {cfg.steps}" if step > cfg.steps else f"the end of --steps {cfg.steps}"
        headline = (
            f"\nnothing to train: {outdir} already holds step {step}, {state}.\n"
            f"  to train longer, re-run with --steps N larger than {step};\n"
            f"  to start a new run of {cfg.steps} steps, use a new --outdir.\n"
            f"Its outputs (step {step}):\n"
        )
    else:
        headline = (
            f"\ndone: step {step} of {cfg.steps} ({summary['steps_run']} steps in "
            f"{minutes}m{seconds:02d}s{'' if resumed is None else f', resumed from step {resumed}'})\n"
        )
    click.echo(
        headline +
        f"  samples:    {samples[-1] if samples else summary['samples']}\n"
        f"  checkpoint: {summary['checkpoint']}\n"
        f"  generator:  {summary['export']}\n"
        f"  logs:       {Path(outdir) / 'log.jsonl'}, tensorboard --logdir {Path(outdir) / 'tensorboard'}\n"
        f"more images:  kdgan generate --ckpt {Path(outdir) / 'export'} --num 64 --outdir "
        f"{Path(outdir) / 'generated'}"
    )
    return summary


# --------------------------------------------------------------------------- compress
@cli.command()
@click.option("--teacher", type=click.Path(),
              help="[required unless --report] The trained teacher generator: a kdgan checkpoint (.pt), "
              "export folder or G_ema.safetensors. Frozen; never copied into the student's run.")
@click.option("--student", default="dcgan", type=click.Choice(["dcgan", "mlp", "biggan", "same"]),
              help="dcgan / mlp: the AKDG paper's students (judged by a BigGAN D); same: the teacher's own "
              "family (BigGAN or StyleGAN2) with --width times its channels; biggan: a BigGAN student (for a "
              "BigGAN teacher, the same as `same`).")
@click.option("--width", type=float, show_default="auto: the widest of 1, 1/2, 1/4, ... whose student has "
              "fewer parameters and multiply-adds than the teacher",
              help="Width ratio: dcgan / mlp relative to the paper's 512 base channels, same / biggan "
              "relative to the teacher's channels.")
@click.option("--method", default="akdg", type=click.Choice(["akdg", "mse", "mse+adv", "vanilla"]),
              help="akdg: data D + distillation D_KD; mse: pixel MSE to the teacher (same z); "
              "mse+adv: alpha MSE + (1 - alpha) data D; vanilla: data D only.")
@click.option("--data", help="[required unless --report] Training data of D_S (the teacher's data), and the "
              "report's reference unless --report-ref.")
@click.option("--outdir", type=click.Path(file_okay=False),
              help="[required unless --report] Run folder (re-run to resume).")
@click.option("--steps", type=int, show_default=str(COMPRESS_DEFAULTS["steps"]),
              help="Training length in student steps.")
@click.option("--batch-size", type=int, show_default=str(COMPRESS_DEFAULTS["batch_size"]),
              help="Images per step.")
@click.option("--device", show_default="auto", help="auto | cpu | cuda | cuda:N.")
@click.option("--seed", type=int, show_default="0", help="Seed of initialisation and sampling.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), show_default="fp32",
              help="Autocast precision.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="Override any config field.")
@click.option("--dry-run", is_flag=True, help="Print the resolved config and exit.")
@click.option("--report", "report_run", type=click.Path(file_okay=False),
              help="Only (re)write the teacher-vs-student report of this finished run.")
@click.option("--report-repeat", default=1, type=click.IntRange(min=1),
              help="Quality evaluations per network in the report (mean +- std).")
@click.option("--report-protocol", show_default="the run's eval_protocol, cifar; fewshot when the "
              "reference has no test split",
              help="The report's evaluation protocol: cifar, fewshot, full50k or custom.")
@click.option("--report-num-gen", type=int, show_default="the protocol's",
              help="Generated images per network in the report.")
@click.option("--report-ref", show_default="--data",
              help="The report's reference data (e.g. the CIFAR archive, whose test split `cifar` needs).")
@click.option("--report-ref-split", show_default="the protocol's",
              help="Split of the report's reference data.")
def compress(teacher, student, width, method, data, outdir, steps, batch_size, device, seed, precision,
             sets, dry_run, report_run, report_repeat, report_protocol, report_num_gen, report_ref,
             report_ref_split) -> None:
    """Distil a trained generator into a smaller student (AKDG and baselines), then report.

    The whole command, report included, is checked before the first step.
    """
    from kdgan import config as config_lib
    from kdgan.compress import compress_fields, report_settings, write_report

    report = dict(repeat=report_repeat, protocol=report_protocol, num_gen=report_num_gen, ref=report_ref,
                  ref_split=report_ref_split)
    if report_run:
        click.echo(f"wrote {write_report(report_run, **report)}")
        return
    missing = [f for f, v in (("--teacher", teacher), ("--data", data), ("--outdir", outdir)) if not v]
    if missing:
        raise KdganError(f"kdgan compress needs {', '.join(missing)} (or --report RUN for a finished run)")
    fields = compress_fields(teacher, student, width, method)
    fields.update({k: v for k, v in {"data": data, "steps": steps, "batch_size": batch_size, "device": device,
                                     "seed": seed, "precision": precision}.items() if v is not None})
    fields.update(_parse_sets(sets))
    cfg = config_lib.resolve(None, fields)
    report_settings(cfg, report_protocol, report_num_gen, report_ref, report_ref_split)  # before training
    if dry_run:
        click.echo(config_lib.dumps(cfg))
        return
    summary = _run_training(cfg, outdir)
    if summary is None:
        return
    try:
        click.echo(f"report:       {write_report(outdir, **report)}")
    except KdganError as e:  # the trained student is safe on disk; only the report is missing
        raise KdganError(f"the student is trained and saved, but the report failed: {e}. Fix that and "
                         f"run `kdgan compress --report {outdir}` (with --report-protocol, --report-ref, "
                         "--report-ref-split or --report-num-gen if needed)") from None


# --------------------------------------------------------------------------- generate
@cli.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True),
              help="A checkpoint (.pt), an export folder, or G_ema.safetensors.")
@click.option("--num", required=True, type=click.IntRange(min=1), help="How many images.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False), help="Where to write.")
@click.option("--seed", default=0, show_default=True,
              help="Seed of z: the same seed and --batch-size give bit-identical images on the same machine "
              "and software; another batch size gives the same images within 1/255 per pixel.")
@click.option("--class", "class_index", type=int, help="Only this class (conditional G); "
              "default: classes in turn.")
@click.option("--batch-size", default=64, show_default=True,
              help="Images per forward pass (float kernels may differ by batch shape: see --seed).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--npz", is_flag=True, help="Also write images.npz: arr_0 uint8 (N, H, W, 3) "
              "(OpenAI evaluator convention) and labels.")
@click.option("--truncation", default=1.0, show_default=True, type=float,
              help="StyleGAN2: truncation psi (w pulled towards w_avg; 1 = none).")
@click.option("--noise-mode", default="const", show_default=True, type=click.Choice(["const", "random"]),
              help="StyleGAN2: per-layer noise fixed at its stored values, or drawn (from --seed, batch by "
              "batch: then the images also depend on --batch-size).")
def generate(ckpt, num, outdir, seed, class_index, batch_size, device, npz, truncation, noise_mode) -> None:
    """Write PNGs (and optionally an npz) from the EMA generator of a run."""
    from kdgan.generate import generate_images

    paths = generate_images(ckpt, num, outdir, seed=seed, class_index=class_index,
                            batch_size=batch_size, device=device, npz=npz, truncation=truncation,
                            noise_mode=noise_mode)
    click.echo(f"wrote {num} images to {outdir}" + (f" and {paths['npz']}" if npz else ""))


# --------------------------------------------------------------------------- evaluate
@cli.command()
@click.option("--ckpt", type=click.Path(exists=True),
              help="Checkpoint (.pt), export folder or .safetensors whose G_ema is evaluated.")
@click.option("--images", type=click.Path(exists=True),
              help="Instead of --ckpt: generated images from any source (folder, zip or .npz).")
@click.option("--data", "--ref", "data", required=True,
              help="Reference data (its --ref-split is compared with), e.g. the CIFAR-10 zip.")
@click.option("--protocol", default="cifar", show_default=True,
              help="cifar (10k vs test), fewshot (5k vs train, KID), full50k, or custom.")
@click.option("--num-gen", type=int, help="Generated images per repeat (overrides the protocol).")
@click.option("--ref-split", help="Reference split (overrides the protocol's).")
@click.option("--repeat", default=1, show_default=True, type=click.IntRange(min=1),
              help="Evaluations with different seeds; mean +- std is reported.")
@click.option("--metrics", help="Comma list of fid, kid, is, pr (default: the protocol's).")
@click.option("--seed", default=0, show_default=True, help="Seed of the first repeat's z.")
@click.option("--batch-size", type=click.IntRange(min=1),
              help="Images per forward pass [default: 16 on CPU, 200 on a GPU].")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--inception", default="auto", show_default=True,
              type=click.Choice(["auto", "torch-fidelity", "tf-torchscript"]),
              help="Feature network: torch-fidelity's weights (with IS) or the offline TorchScript.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Result JSON (a .md table is written beside it).")
@click.option("--no-cache", is_flag=True, help="Recompute the reference features.")
def evaluate(ckpt, images, data, protocol, num_gen, ref_split, repeat, metrics, seed, batch_size,
             device, inception, out, no_cache) -> None:
    """FID / KID / IS / precision-recall of a generator or of images, with a stated protocol."""
    from kdgan.metrics import evaluate as run_eval
    from kdgan.metrics import format_table, generate_uint8, get_protocol, load_inception, reference_features
    from kdgan.metrics.evaluate import parse_metrics
    from kdgan.metrics.images import load_generated
    from kdgan.nets import load_generator
    from kdgan.utils.dist import resolve_device

    if (ckpt is None) == (images is None):
        raise KdganError("pass exactly one of --ckpt (a generator) or --images (generated images)")
    proto = get_protocol(protocol, num_gen, ref_split)
    names = parse_metrics(metrics, proto)
    dev = resolve_device(device)
    extractor = load_inception(inception, dev)
    ref = reference_features(data, proto.ref_split, extractor, batch_size, use_cache=not no_cache)
    if images is not None:
        if Path(images).suffix == ".npz":
            generated = load_generated(images)
        else:  # an image folder or zip: features cached by content, resumable like a reference set
            generated = reference_features(images, "train", extractor, batch_size, use_cache=not no_cache,
                                           desc="generated")
        if repeat > 1:
            log.warning("--repeat %d ignored: --images is one fixed set", repeat)
        repeat, sample = 1, (lambda _seed: generated)
    else:
        G = load_generator(ckpt, dev)
        sample = lambda s: generate_uint8(G, proto.num_gen, s, batch_size or 100, dev)  # noqa: E731
    result = run_eval(sample, ref, extractor, proto, names, repeat, seed, batch_size)
    result["generated"]["source"] = str(ckpt or images)
    table = format_table(result)
    click.echo(table)
    if out is None:
        base = Path(ckpt).parent if ckpt else Path(".")
        out = base / f"eval-{proto.name}.json"
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2))
    Path(out).with_suffix(".md").write_text(table + "\n")
    click.echo(f"wrote {out} and {Path(out).with_suffix('.md')}")


# --------------------------------------------------------------------------- export
@cli.command()
@click.option("--ckpt", required=True, type=click.Path(exists=True, dir_okay=False),
              help="A training checkpoint (.pt).")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Folder for G_ema.safetensors + config.json.")
def export(ckpt, out) -> None:
    """Export the EMA generator of a checkpoint to safetensors + config.json."""
    from kdgan.generate import export_checkpoint

    click.echo(f"wrote {export_checkpoint(ckpt, out)}")


# --------------------------------------------------------------------------- presets
@cli.command()
def presets() -> None:
    """List the named configurations, with the paper's FID where one is reported."""
    from kdgan.config import PRESETS

    width = max(len(n) for n in PRESETS)
    for name, p in PRESETS.items():
        fid = f"  [paper FID {p.paper_fid:.2f}]" if p.paper_fid is not None else ""
        click.echo(f"{name:<{width}}  {p.description}{fid}")


# --------------------------------------------------------------------------- data
@cli.group()
def data() -> None:
    """Prepare and inspect data sets."""


@data.command("prepare")
@click.argument("src")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .zip.")
@click.option("--resolution", type=int, help="Resize to this side in px (default: keep).")
@click.option("--split", default="train", show_default=True,
              help="Split folder to read when SRC has train/ and test/ (CIFAR: train | test).")
@click.option("--fraction", default=1.0, show_default=True, type=float,
              help="Keep this fraction of the images, in (0, 1].")
@click.option("--seed", default=0, show_default=True, help="Seed of the subset draw.")
@click.option("--balanced", is_flag=True, help="Draw the same fraction from every class.")
@click.option("--strict", is_flag=True, help="Fail on the first unreadable file instead of skipping.")
def data_prepare(src, out, resolution, split, fraction, seed, balanced, strict) -> None:
    """Turn SRC (folder, zip, CIFAR archive or built-in name) into a zip of PNGs + dataset.json."""
    from kdgan.data.prepare import prepare

    ds, skipped = prepare(src, out, resolution=resolution, split=split, fraction=fraction,
                          seed=seed, balanced=balanced, strict=strict)
    for name, reason in skipped:
        click.echo(f"skipped {name}: {reason}", err=True)
    classes = f", {ds.num_classes} classes" if ds.num_classes else ""
    click.echo(f"wrote {out}: {len(ds)} images, {ds.resolution}x{ds.resolution}{classes}"
               + (f"; skipped {len(skipped)} unreadable file(s), listed above" if skipped else ""))


@data.command("info")
@click.argument("dataset")
@click.option("--split", default="train", show_default=True, help="Split to read, if any.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def data_info(dataset, split, as_json) -> None:
    """Describe a data set: size, resolution, classes, provenance, content hash."""
    from kdgan.data import load_images
    from kdgan.data.prepare import describe

    ds, skipped = load_images(dataset, split=split)
    info = describe(ds)
    if skipped:
        info["unreadable_files"] = [n for n, _ in skipped]
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    for k, v in info.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}: {b}" for a, b in v.items())
        elif isinstance(v, list):
            v = ", ".join(v)
        click.echo(f"{k:<16}{v}")


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except KdganError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
