"""The `kdgan` command: train, compare, compress, generate, evaluate, export, presets, data, teacher."""

from __future__ import annotations

import errno
import json
import logging
import re
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
    100 LFW faces with the offline Inception teacher: 7-16 minutes on a 2-core CPU;
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
              help="KD-DLGAN teacher: clip | inception (image-only, offline) | classifier (`kdgan teacher "
              "train`) | torchvision:MODEL | timm:MODEL (image-only) | blip (pip install 'kdgan[blip]') | "
              "clip-random (CLIP architecture, random weights: benchmarks only) | clip-tiny-random (tests "
              "only); docs/teachers.md. None: a plain GAN.")
@click.option("--teacher-model", show_default="ViT-B-32 for clip and clip-random",
              help="open_clip model name of --teacher clip or clip-random.")
@click.option("--teacher-weights", show_default="openai, or $KDGAN_CLIP_WEIGHTS",
              help="clip: open_clip pretrained tag or local checkpoint file; classifier: the `kdgan "
              "teacher train` folder; torchvision:/timm:: a state-dict file, or 'download'; blip: a hub id "
              "or a local folder.")
@click.option("--kd", show_default=_default("kd"),
              help="Distillation terms: auto (agkd,cgkd with a teacher that has text or class embeddings, "
              "agkd with an image-only one), agkd,cgkd, agkd or cgkd; baselines (docs/baselines.md): "
              "plainkd, fitnets, ld, pkd, spkd.")
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
    _quiet_writer_threads()
    done = _finished_step(outdir, cfg)
    if done is not None:  # a finished run's re-run answers first: no teacher, no resume, no bar
        if main_rank:
            click.echo(_outputs(_nothing_to_train(outdir, done, cfg.steps), outdir, done, cfg=cfg))
        return None
    finished = False
    try:  # lock first: a second training in the same folder refuses before loading anything
        with run_lock(outdir) if main_rank else contextlib.nullcontext():
            trainer = Trainer(cfg, outdir)
            try:
                summary = trainer.run()
            except OSError as e:
                if e.errno not in _WRITE_ERRNOS:
                    raise
                raise KdganError(_write_failure(e, outdir)) from None
        finished = True
    finally:
        shutdown_distributed(wait_for_all=finished)
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
        headline = _nothing_to_train(outdir, step, cfg.steps)
    else:
        headline = (
            f"\ndone: step {step} of {cfg.steps} ({summary['steps_run']} steps in "
            f"{minutes}m{seconds:02d}s{'' if resumed is None else f', resumed from step {resumed}'})\n"
        )
    click.echo(_outputs(headline, outdir, step, samples[-1] if samples else summary["samples"],
                        summary["checkpoint"], summary["export"], cfg=cfg))
    return summary


_WRITE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}  # the disk refuses a write


def _quiet_writer_threads() -> None:
    """A background writer (TensorBoard's) that hits a full disk says so in one line, not a
    traceback; the training's own write fails next and explains what is kept."""
    import threading

    default = threading.excepthook

    def hook(args) -> None:
        if isinstance(args.exc_value, OSError) and args.exc_value.errno in _WRITE_ERRNOS:
            logging.getLogger("kdgan").warning("a background writer (%s) could not write: %s",
                                               args.thread.name if args.thread else "thread", args.exc_value)
            return
        default(args)

    threading.excepthook = hook


def _write_failure(e: OSError, outdir: str) -> str:
    """One line for a write the disk refused: what failed, what is kept, how to go on."""
    from kdgan.training.checkpoint import CheckpointManager

    ckpts = CheckpointManager(Path(outdir) / "checkpoints", 1)
    found = ckpts.steps()
    what = f"{e.filename}" if e.filename else f"into {outdir}"
    if found:
        last = ckpts.path(found[-1])
        kept = (f"nothing saved is lost: the last whole checkpoint is {last} (step {found[-1]}); free at "
                f"least {last.stat().st_size / 2**20:.1f} MiB (one checkpoint) in {outdir}'s file system and "
                "re-run the same command to resume from it")
    else:
        kept = (f"no checkpoint was written yet; free space in {outdir}'s file system (or use another "
                "--outdir) and re-run the same command")
    return f"could not write {what}: {e.strerror or e}; {kept}"


def _finished_step(outdir: str, cfg) -> int | None:
    """The step of a run folder whose last checkpoint is at or past `cfg.steps`, whose generator
    is exported and whose config is `cfg` up to the fields a resume may change (a finished run
    of this command), else None."""
    from kdgan import config as config_lib
    from kdgan.training.checkpoint import CheckpointManager

    found = CheckpointManager(Path(outdir) / "checkpoints", 1).steps()
    if not (found and found[-1] >= cfg.steps and (Path(outdir) / "export" / "G_ema.safetensors").exists()):
        return None
    try:  # the same run only: another config falls through to the resume check, which explains
        saved = json.loads((Path(outdir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    # `conditional` as asked vs as in effect (False on unlabelled data): the resume check compares
    # the effective value
    if config_lib.changed_fields(saved, json.loads(config_lib.dumps(cfg)), ignore={"conditional"}):
        return None
    return found[-1]


def _nothing_to_train(outdir: str, step: int, steps: int) -> str:
    state = f"past --steps {steps}" if step > steps else f"the end of --steps {steps}"
    return (f"nothing to train: {outdir} already holds step {step}, {state}.\n"
            f"  to train longer, re-run with --steps N larger than {step};\n"
            f"  to start a new run of {steps} steps, use a new --outdir.\n"
            f"Its outputs (step {step}):\n")


def _outputs(headline: str, outdir: str, step: int, samples=None, checkpoint=None, export=None,
             cfg=None) -> str:
    """The closing block of a training: where its samples, checkpoint, generator and logs are."""
    from kdgan.training.checkpoint import CheckpointManager

    run = Path(outdir)
    if samples is None:
        grids = sorted((run / "samples").glob("fakes-*.png"))
        samples = grids[-1] if grids else run / "samples"
    checkpoint = checkpoint or CheckpointManager(run / "checkpoints", 1).path(step)
    export = export or run / "export" / "G_ema.safetensors"
    return (headline +
            f"  samples:    {samples}\n"
            f"  checkpoint: {checkpoint}\n"
            f"  generator:  {export}\n"
            f"  logs:       {run / 'log.jsonl'}, tensorboard --logdir {run / 'tensorboard'}\n"
            f"more images:  kdgan generate --ckpt {run / 'export'} --num 64 --outdir {run / 'generated'}"
            + ("" if cfg is None else _score_line(cfg, run)))


def _score_line(cfg, run: Path) -> str:
    """The evaluate command that fits the run: its data and protocol (KID for a few-shot set)."""
    from kdgan.data.sources import source_splits, split_available
    from kdgan.metrics import get_protocol

    data = cfg.eval_ref or cfg.data
    protocol = cfg.eval_protocol
    try:  # data without the protocol's split (the demo's faces have no test/): few-shot protocol
        if not split_available(source_splits(data), get_protocol(protocol).ref_split):
            protocol = "fewshot"
    except KdganError:  # a hint only; evaluate itself explains a missing source or protocol
        pass
    metrics = " --metrics kid" if protocol == "fewshot" else ""
    return (f"\nscore it:     kdgan evaluate --ckpt {run / 'export'} --data {data} --protocol {protocol}"
            f"{metrics}\n              (on a CPU: at most 1,000 generated images, its time estimate "
            "first; --full for the protocol's number)")


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
@click.option("--report-full", is_flag=True, help="On a CPU, the protocol's full number of generated "
              "images in the report (by default a CPU report generates at most 1,000 per network).")
def compress(teacher, student, width, method, data, outdir, steps, batch_size, device, seed, precision,
             sets, dry_run, report_run, report_repeat, report_protocol, report_num_gen, report_ref,
             report_ref_split, report_full) -> None:
    """Distil a trained generator into a smaller student (AKDG and baselines), then report.

    The whole command, report included, is checked before the first step.
    """
    from kdgan import config as config_lib
    from kdgan.compress import compress_fields, report_settings, write_report

    report = dict(repeat=report_repeat, protocol=report_protocol, num_gen=report_num_gen, ref=report_ref,
                  ref_split=report_ref_split, full=report_full)
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
        # the protocol was announced by the check before training
        click.echo(f"report:       {write_report(outdir, **report, announce=False)}")
    except KdganError as e:  # the trained student is safe on disk; only the report is missing
        raise KdganError(f"the student is trained and saved, but the report failed: {e}. Fix that and "
                         f"run `kdgan compress --report {outdir}` (with --report-protocol, --report-ref, "
                         "--report-ref-split or --report-num-gen if needed)") from None


# --------------------------------------------------------------------------- compare
@cli.command()
@click.option("--outdir", required=True, type=click.Path(file_okay=False),
              help="Comparison folder. Re-running `kdgan compare --outdir DIR` continues it.")
@click.option("--arm", "arms", multiple=True, metavar="'NAME=PRESET [FIELD=VALUE ...]'",
              help="One recipe (repeatable; the first is the baseline), e.g. --arm 'da=demo' "
              "--arm 'kd=demo-kd kd_every=1'. PRESET '-' means the config defaults.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Training seeds, comma separated.")
@click.option("--steps", type=int, help="G steps per run (of the first arm with --match time).")
@click.option("--match", default="steps", show_default=True, type=click.Choice(["steps", "time"]),
              help="Equal budget in G steps, or in estimated wall time (each arm's s/step is "
              "measured first, one arm after the other).")
@click.option("--data", help="Training data of every arm (default: each preset's).")
@click.option("--device", help="auto | cpu | cuda | cuda:N for every run.")
@click.option("--set", "sets", multiple=True, metavar="FIELD=VALUE", help="Set a field in every arm.")
@click.option("--eval-every", default=0, show_default=True, type=click.IntRange(min=0),
              help="G steps between in-training evaluations (the curves); 0 = final only.")
@click.option("--eval-num-gen", default=1000, show_default=True, type=click.IntRange(min=2),
              help="Generated images per in-training evaluation.")
@click.option("--eval-metric", default="kid", show_default=True, type=click.Choice(["kid", "fid"]),
              help="In-training metric (KID is unbiased at small sizes).")
@click.option("--protocol", default="fewshot", show_default=True,
              help="Final evaluation protocol: cifar (vs the test split), fewshot (vs training images), "
              "full50k, custom.")
@click.option("--num-gen", type=int,
              help="Generated images in the final evaluation (default: the protocol's).")
@click.option("--metrics", default="kid,fid", show_default=True, help="Final metrics: fid, kid, is, pr.")
@click.option("--ref", help="Reference data of every evaluation (default: the training data).")
@click.option("--inception", default="auto", show_default=True,
              type=click.Choice(["auto", "torch-fidelity", "tf-torchscript"]), help="Feature network.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Runs at a time (subprocesses sharing the CPU threads or the GPU).")
@click.option("--shard", default="0/1", show_default=True, metavar="I/N",
              help="Run only every N-th run starting at I (spread a comparison over machines).")
@click.option("--report", "report_only", is_flag=True, help="Only (re)write the report of DIR.")
@click.option("--dry-run", is_flag=True, help="Print the runs and their configs, train nothing.")
@click.option("--run-one", hidden=True, help="Internal: train and evaluate run ARM:SEED of DIR.")
def compare(outdir, arms, seeds, steps, match, data, device, sets, eval_every, eval_num_gen, eval_metric,
            protocol, num_gen, metrics, ref, inception, jobs, shard, report_only, dry_run, run_one) -> None:
    """Seeded, equal-budget comparison of recipes: arms x seeds, a report with mean +- std."""
    from kdgan import compare as cmp
    from kdgan import config as config_lib

    out = Path(outdir)
    if run_one:
        cmp.run_one(out, run_one)
        return
    if report_only:
        click.echo(f"wrote {cmp.write_report(out)}")
        return
    try:
        i, n = (int(v) for v in shard.split("/"))
        assert 0 <= i < n
    except (ValueError, AssertionError):
        raise KdganError(f"--shard expects I/N with 0 <= I < N, e.g. 0/2, got {shard!r}") from None
    if not arms:
        if not (out / cmp.SPEC_FILE).exists():
            raise KdganError("kdgan compare needs --arm (at least two, the first is the baseline) and "
                             "--steps, or an --outdir holding a comparison to continue")
        spec, _ = cmp.load_spec(out)
    else:
        if steps is None:
            raise KdganError("kdgan compare needs --steps N (G steps per run)")
        common = {k: v for k, v in {"data": data, "device": device}.items() if v is not None}
        common.update(_parse_sets(sets))
        try:
            seed_list = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise KdganError(f"--seeds expects integers separated by commas, got {seeds!r}") from None
        spec = cmp.make_spec(
            [cmp.parse_arm(a) for a in arms], seed_list, steps, match=match, common=common,
            eval_every=eval_every, eval_num_gen=eval_num_gen, eval_metric=eval_metric,
            final_protocol=protocol, final_num_gen=num_gen or 0,
            final_metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()),
            final_ref=ref or "", inception=inception, jobs=jobs)
    if dry_run:
        for arm in spec.arms:
            cfg = cmp.run_config(spec, arm, spec.seeds[0], spec.steps)
            click.echo(f"arm {arm.name}: {arm.describe()}\n{config_lib.dumps(cfg)}")
        n_runs = len(spec.arms) * len(spec.seeds)
        click.echo(f"{len(spec.arms)} arms x {len(spec.seeds)} seeds = {n_runs} runs")
        return
    left = cmp.run_comparison(out, spec, (i, n), jobs)
    report = out / "report.md"
    if left:
        click.echo(f"{len(left)} run(s) of this shard unfinished; re-run the same command to continue")
    click.echo(f"report: {report}\n  curves: {out / 'curves.png'}\n  samples: {out / 'samples.png'}")


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
@click.option("--repeat", type=click.IntRange(min=1),
              help="Evaluations with different seeds; mean +- std is reported [default: the protocol's: "
              "3 for cifar, else 1].")
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
@click.option("--full", is_flag=True, help="On a CPU, the protocol's full number of images and repeats "
              "(by default a CPU evaluates at most 1,000 generated images, once).")
def evaluate(ckpt, images, data, protocol, num_gen, ref_split, repeat, metrics, seed, batch_size,
             device, inception, out, no_cache, full) -> None:
    """FID / KID / IS / precision-recall of a generator or of images, with a stated protocol."""
    from kdgan.metrics import evaluate as run_eval
    from kdgan.metrics import format_table, generate_uint8, get_protocol, load_inception, reference_features
    from kdgan.metrics.evaluate import parse_metrics, plan_for_device
    from kdgan.metrics.images import load_generated
    from kdgan.metrics.vgg import load_vgg16
    from kdgan.nets import load_generator
    from kdgan.utils.dist import resolve_device

    if (ckpt is None) == (images is None):
        raise KdganError("pass exactly one of --ckpt (a generator) or --images (generated images)")
    proto = get_protocol(protocol, num_gen, ref_split)
    names = parse_metrics(metrics, proto)
    dev = resolve_device(device)
    extractor = load_inception(inception, dev)
    G = None
    if images is None:
        G = load_generator(ckpt, dev)
        proto, repeat, lines = plan_for_device(proto, dev, extractor, G.config.get("img_resolution", 32),
                                               num_gen, repeat, full)
        for line in lines:
            click.echo(line, err=True)
    ref = reference_features(data, proto.ref_split, extractor, batch_size, use_cache=not no_cache)
    pr = None  # precision / recall on VGG-16 fc2 features where its weights are present
    if "pr" in names and (vgg := load_vgg16(dev)) is not None:
        pr = (vgg, reference_features(data, proto.ref_split, vgg, batch_size, use_cache=not no_cache,
                                      desc="reference VGG-16"))
    if images is not None:
        if Path(images).suffix == ".npz":
            generated = load_generated(images)
        else:  # an image folder or zip: features cached by content, resumable like a reference set
            generated = reference_features(images, "train", extractor, batch_size, use_cache=not no_cache,
                                           desc="generated")
        if repeat is not None and repeat > 1:
            log.warning("--repeat %d ignored: --images is one fixed set", repeat)
        repeat, sample = 1, (lambda _seed: generated)
    else:
        sample = lambda s: generate_uint8(G, proto.num_gen, s, batch_size or 100, dev)  # noqa: E731
    result = run_eval(sample, ref, extractor, proto, names, repeat, seed, batch_size, pr)
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
        if p.paper_is is not None:
            fid += f"  [paper IS {p.paper_is:.2f}]"
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


@data.command("prepare-imagenet")
@click.argument("root", type=click.Path(exists=True, file_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Output .zip.")
@click.option("--fraction", default=0.1, show_default=True, type=float,
              help="Class-balanced fraction of the split, e.g. 0.1, 0.05, 0.025.")
@click.option("--resolution", default=64, show_default=True, help="Side in px.")
@click.option("--split", default="train", show_default=True, help="train, or val for the FID reference.")
@click.option("--seed", default=0, show_default=True, help="Seed of the subset draw.")
@click.option("--synsets", help="'<wnid> <names>' list for readable class names (default: "
              "LOC_synset_mapping.txt / synset_words.txt / words.txt beside ROOT).")
def data_prepare_imagenet(root, out, fraction, resolution, split, seed, synsets) -> None:
    """ImageNet ROOT (train/<wnid>/*.JPEG) -> a class-balanced subset at 64 px (centre square,
    box downsample) as a zip of PNGs + dataset.json (docs/baselines.md)."""
    from kdgan.data.imagenet import prepare_imagenet

    ds = prepare_imagenet(root, out, fraction, resolution, split, seed, synsets)
    classes = f", {ds.num_classes} classes" if ds.num_classes else ""
    click.echo(f"wrote {out}: {len(ds)} images, {ds.resolution}x{ds.resolution}{classes}")


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


# --------------------------------------------------------------------------- teacher
@cli.group()
def teacher() -> None:
    """Train and score a classifier teacher for KD-DLGAN (docs/teachers.md)."""


@teacher.command("train")
@click.option("--data", required=True, help="Labelled images: a folder or zip with one sub-folder per class "
              "(train/ and test/ splits allowed), a CIFAR archive, or a prepared zip.")
@click.option("--split", default="train", show_default=True, help="Split of --data to train on.")
@click.option("--exclude", multiple=True, metavar="DATA_OR_ZIP",
              help="Drop every image whose pixels equal an image of this set, or its mirror (repeatable): "
              "the GAN's training data, so the teacher never sees it.")
@click.option("--exclude-split", default="train", show_default=True,
              help="Split read from each --exclude source that has splits.")
@click.option("--outdir", required=True, type=click.Path(file_okay=False),
              help="Writes teacher.safetensors + teacher.json (and a per-epoch checkpoint); re-run to "
              "resume.")
@click.option("--epochs", default=12, show_default=True, type=click.IntRange(min=1),
              help="Passes over the data.")
@click.option("--width", default=16, show_default=True, type=click.IntRange(min=1),
              help="Channels of the first stage (w, 2w, 4w; features are 4w).")
@click.option("--blocks", default=3, show_default=True, type=click.IntRange(min=1),
              help="Residual blocks per stage (3 = ResNet-20).")
@click.option("--resolution", default=32, show_default=True, type=int, help="Input side in px.")
@click.option("--batch-size", default=128, show_default=True, type=int, help="Images per SGD step.")
@click.option("--lr", default=0.1, show_default=True, type=float,
              help="Peak SGD learning rate (cosine decay).")
@click.option("--weight-decay", default=5e-4, show_default=True, type=float, help="SGD weight decay.")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Fraction of the images held out for validation.")
@click.option("--test-split", default="test", show_default=True,
              help="Split of --data scored at the end when it exists ('' for none).")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of split, init and augmentation.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
def teacher_train(data, split, exclude, exclude_split, outdir, epochs, width, blocks, resolution, batch_size,
                  lr, weight_decay, val_fraction, test_split, seed, device) -> None:
    """Fit a small CIFAR ResNet classifier as a KD-DLGAN teacher (AGKD + CGKD, offline)."""
    from kdgan.teachers.classifier_train import ClassifierTrainConfig, train_classifier

    cfg = ClassifierTrainConfig(data, split, tuple(exclude), exclude_split, test_split, resolution, width,
                                blocks, epochs, batch_size, lr, weight_decay, val_fraction=val_fraction,
                                seed=seed, device=device)
    info = train_classifier(cfg, outdir)
    test = (f", test accuracy {info['test_accuracy']:.4f} ({info['test_images']} {info['test_split']} images)"
            if info["test_accuracy"] is not None else "")
    click.echo(f"\nwrote {Path(outdir) / 'teacher.safetensors'} and teacher.json: "
               f"{len(info['class_names'])} classes, {info['data']['train_images']} training images "
               f"({info['exclusion']['excluded_images']} excluded), validation accuracy "
               f"{info['val_accuracy']:.4f}{test}\n"
               f"use it:  kdgan train ... --teacher classifier --teacher-weights {outdir}")


@teacher.command("eval")
@click.argument("weights", type=click.Path(exists=True))
@click.option("--data", required=True, help="Labelled images with the teacher's class names.")
@click.option("--split", default="test", show_default=True, help="Split of --data to score.")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def teacher_eval(weights, data, split, device, as_json) -> None:
    """Top-1 accuracy of a classifier teacher (folder or teacher.safetensors), overall and per class."""
    from kdgan.teachers.classifier_train import evaluate_classifier

    result = evaluate_classifier(weights, data, split, device)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    click.echo(f"{result['teacher']} on {data} ({split}, {result['images']} images): "
               f"accuracy {result['accuracy']:.4f}")
    for c, a in result["per_class"].items():
        click.echo(f"  {c:<16}{a:.4f}")


def click_error_line(e: click.ClickException) -> str:
    """A click usage error as kdgan's one line, `problem; fix`: click's message (its first letter
    lower-cased, the closing full stop dropped) and where the command's options are listed."""
    message = e.format_message().strip().rstrip(".")
    message = message[:1].lower() + message[1:]
    ctx = getattr(e, "ctx", None)
    command = ctx.command_path if ctx is not None else "kdgan"
    if "Did you mean" in message:  # click's own closest match (commands, options)
        message = re.sub(r"\.?\s*\(?Did you mean (.+?)\)?$", r"; did you mean \1", message)
        return f"{message} (run '{command} --help' for all)"
    if isinstance(e, click.BadParameter) and "does not exist" in message:
        where = " (a run's generator is RUN/export)" if getattr(e.param, "name", "") == "ckpt" else ""
        return f"{message}; check the path{where}, or run '{command} --help'"
    return f"{message}; run '{command} --help' for what it takes"


def main() -> None:
    """Entry point: user errors become one line on stderr and exit status 2, never a traceback."""
    try:
        cli.main(standalone_mode=False, prog_name="kdgan")
    except KdganError as e:
        click.echo(f"error: {e}", err=True)
        sys.exit(2)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except getattr(click.exceptions, "NoArgsIsHelpError", ()) as e:  # bare `kdgan`: its help
        e.show()
        sys.exit(e.exit_code)
    except click.ClickException as e:
        click.echo(f"error: {click_error_line(e)}", err=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
