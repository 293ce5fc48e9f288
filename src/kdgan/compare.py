"""Seeded, equal-budget comparisons of training recipes: arms x seeds, each an ordinary run.

A comparison folder holds `compare.json` (the spec: arms, seeds, budget, evaluation), one run
folder per arm and seed under `runs/<arm>/seed<k>/` (so every run resumes, and shards of the
comparison can run on other machines or GPUs), and the outputs:

    report.md / report.json   per-seed values, mean +- std per arm, each arm's difference from
                              the first (baseline) arm with its spread, the command that made it
    curves.png                the in-training metric against training progress, one line per
                              arm (mean over seeds) with its min-max band
    samples.png               each arm's final fixed-z grid (first seed), side by side with reals

The budget is the same number of G steps for every arm, or (`match = "time"`) the same
estimated wall time: each arm's seconds per step are measured first, one arm after the other,
and each arm gets the steps that fill the first arm's time.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kdgan import config as config_lib
from kdgan.errors import KdganError
from kdgan.metrics.reference import describe_source

log = logging.getLogger(__name__)

SPEC_FILE = "compare.json"
FINAL_FILE = "compare-final.json"  # in each run folder: the final evaluation of that run
# Spec fields that may change between invocations of the same comparison.
BOOKKEEPING = frozenset({"jobs"})


@dataclass(frozen=True)
class Arm:
    """One recipe: a preset plus field overrides."""

    name: str
    preset: str | None
    overrides: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        sets = " ".join(f"{k}={v}" for k, v in self.overrides.items())
        return f"{self.preset or '(defaults)'}{' ' + sets if sets else ''}"


@dataclass(frozen=True)
class CompareSpec:
    """Everything a comparison depends on; stored in compare.json."""

    arms: tuple[Arm, ...]
    seeds: tuple[int, ...]
    steps: int  # G steps of the first arm (of every arm when match = "steps")
    match: str = "steps"  # steps (equal steps) | time (equal estimated wall time)
    common: dict[str, Any] = field(default_factory=dict)  # fields set in every arm (data, device, ...)
    eval_every: int = 0  # G steps between in-training evaluations (0 = final only)
    eval_num_gen: int = 1000  # generated images per in-training evaluation
    eval_metric: str = "kid"  # in-training metric (curves); kid is unbiased at small sizes
    final_protocol: str = "fewshot"  # cifar | fewshot | full50k | custom
    final_num_gen: int = 0  # generated images in the final evaluation; 0 = the protocol's
    final_metrics: tuple[str, ...] = ("kid", "fid")
    final_ref: str = ""  # reference data; "" = each run's training source
    inception: str = "auto"  # feature network of every evaluation
    jobs: int = 1  # runs at a time (subprocesses); bookkeeping only

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["arms"] = [dataclasses.asdict(a) for a in self.arms]
        return d

    @staticmethod
    def from_dict(d: dict[str, Any]) -> CompareSpec:
        d = dict(d)
        d["arms"] = tuple(Arm(**a) for a in d["arms"])
        d["seeds"] = tuple(d["seeds"])
        d["final_metrics"] = tuple(d["final_metrics"])
        return CompareSpec(**d)


def parse_arm(text: str) -> Arm:
    """'NAME=PRESET FIELD=VALUE ...' (shell-quoted, one string) -> Arm. PRESET may be `-` for none."""
    parts = shlex.split(text)
    if not parts or "=" not in parts[0]:
        raise KdganError(f"--arm expects 'NAME=PRESET [FIELD=VALUE ...]', e.g. --arm 'kd=demo-kd "
                         f"kd_every=1', got {text!r}")
    name, preset = parts[0].split("=", 1)
    if not name or not all(c.isalnum() or c in "-_." for c in name):
        raise KdganError(f"arm name {name!r} must be letters, digits, '-', '_' or '.' (it names a folder)")
    overrides = {}
    for item in parts[1:]:
        if "=" not in item:
            raise KdganError(f"arm {name}: expected FIELD=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        overrides[k.strip().replace("-", "_")] = v
    return Arm(name, None if preset in ("", "-") else preset, overrides)


def make_spec(arms: list[Arm], seeds: list[int], steps: int, **kwargs: Any) -> CompareSpec:
    """A checked spec: distinct arm names, valid configs for every arm and seed."""
    if len(arms) < 1:
        raise KdganError("a comparison needs at least one --arm (two to compare)")
    names = [a.name for a in arms]
    if len(set(names)) != len(names):
        raise KdganError(f"arm names must be distinct, got {', '.join(names)}")
    if not seeds or len(set(seeds)) != len(seeds):
        raise KdganError("--seeds must list distinct seeds, e.g. 0,1,2")
    if steps < 1:
        raise KdganError("--steps must be at least 1")
    spec = CompareSpec(tuple(arms), tuple(seeds), steps, **kwargs)
    if spec.match not in ("steps", "time"):
        raise KdganError("--match must be steps or time")
    from kdgan.metrics.evaluate import METRICS, get_protocol

    get_protocol(spec.final_protocol, spec.final_num_gen or None)
    bad = [m for m in spec.final_metrics if m not in METRICS]
    if bad:
        raise KdganError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(METRICS)}")
    if spec.eval_metric not in ("kid", "fid"):
        raise KdganError("--eval-metric must be kid or fid")
    for arm in arms:  # every arm must resolve now, not after hours of training the others
        run_config(spec, arm, seeds[0], steps)
    return spec


def spec_command(spec: CompareSpec, outdir: Path | str) -> str:
    """The `kdgan compare` command line that makes this comparison (shown in the report)."""
    args = ["kdgan", "compare", "--outdir", str(outdir)]
    for arm in spec.arms:
        args += ["--arm", " ".join([f"{arm.name}={arm.preset or '-'}",
                                    *(shlex.quote(f"{k}={v}") for k, v in arm.overrides.items())])]
    args += ["--seeds", ",".join(map(str, spec.seeds)), "--steps", str(spec.steps)]
    if spec.match != "steps":
        args += ["--match", spec.match]
    common = dict(spec.common)
    for flag in ("data", "device"):
        if flag in common:
            args += [f"--{flag}", str(common.pop(flag))]
    for k, v in common.items():
        args += ["--set", f"{k}={v}"]
    if spec.eval_every:
        args += ["--eval-every", str(spec.eval_every), "--eval-num-gen", str(spec.eval_num_gen),
                 "--eval-metric", spec.eval_metric]
    args += ["--protocol", spec.final_protocol]
    if spec.final_num_gen:
        args += ["--num-gen", str(spec.final_num_gen)]
    args += ["--metrics", ",".join(spec.final_metrics)]
    if spec.final_ref:
        args += ["--ref", spec.final_ref]
    if spec.inception != "auto":
        args += ["--inception", spec.inception]
    if spec.jobs > 1:
        args += ["--jobs", str(spec.jobs)]
    return " ".join(shlex.quote(a) for a in args)


def run_config(spec: CompareSpec, arm: Arm, seed: int, steps: int) -> config_lib.TrainConfig:
    """The training config of one arm and seed."""
    fields = {**spec.common, **arm.overrides, "seed": seed, "steps": steps,
              "eval_every_steps": spec.eval_every, "inception": spec.inception}
    if spec.eval_every:
        fields.update({"eval_protocol": spec.final_protocol, "eval_num_gen": spec.eval_num_gen,
                       "eval_metric": spec.eval_metric, "eval_ref": spec.final_ref})
    try:
        return config_lib.resolve(arm.preset, fields)
    except KdganError as e:
        raise KdganError(f"arm {arm.name} ({arm.describe()}): {e}") from None


def run_dir(outdir: Path, arm: Arm, seed: int) -> Path:
    return outdir / "runs" / arm.name / f"seed{seed}"


# --------------------------------------------------------------------------- spec on disk
def save_or_check_spec(outdir: Path, spec: CompareSpec) -> CompareSpec:
    """Write the spec, or check it against the one already in `outdir` (keeping its calibration)."""
    path = outdir / SPEC_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        old = CompareSpec.from_dict(saved["spec"]).to_dict()
        new = spec.to_dict()
        # Arms appended after the existing ones, and new seeds, extend the comparison.
        extends = {"arms": new["arms"][:len(old["arms"])] == old["arms"],
                   "seeds": set(old["seeds"]) <= set(new["seeds"])}
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in new
                if k not in BOOKKEEPING and old.get(k) != new.get(k) and not extends.get(k, False)]
        if diff:
            raise KdganError(f"{outdir} holds a different comparison ({'; '.join(diff)}); re-run with "
                             "its original arguments to continue it (more seeds, or arms added after "
                             "the existing ones, extend it; `kdgan compare --report --outdir DIR` "
                             "rewrites its report), or use a new --outdir")
        saved["spec"] = new
    else:
        saved = {"spec": spec.to_dict(), "calibration": {}}
    outdir.mkdir(parents=True, exist_ok=True)
    _write_json(path, saved)
    return spec


def load_spec(outdir: Path) -> tuple[CompareSpec, dict[str, float]]:
    path = outdir / SPEC_FILE
    if not path.exists():
        raise KdganError(f"{outdir} holds no comparison ({SPEC_FILE} is missing); start one with "
                         "kdgan compare --outdir DIR --arm ... --seeds ...")
    saved = json.loads(path.read_text())
    return CompareSpec.from_dict(saved["spec"]), saved.get("calibration", {})


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


# --------------------------------------------------------------------------- budget
def calibrate(outdir: Path, spec: CompareSpec, timed_steps: int = 6) -> dict[str, float]:
    """Seconds per G step of every arm (first seed), measured one after the other; cached in
    compare.json so that every shard and every resume uses the same budget."""
    path = outdir / SPEC_FILE
    saved = json.loads(path.read_text())
    cal = saved.get("calibration", {})
    for arm in spec.arms:
        if arm.name in cal:
            continue
        from kdgan.training.loop import Trainer

        cfg = run_config(spec, arm, spec.seeds[0], spec.steps)
        cfg = dataclasses.replace(cfg, eval_every_steps=0)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(cfg, tmp)
            sync = torch.cuda.synchronize if trainer.device.type == "cuda" else (lambda: None)
            for _ in range(2):  # warm-up: caches, allocator, autotuning
                trainer.train_step()
            sync()
            t0 = time.perf_counter()
            for _ in range(timed_steps):
                trainer.train_step()
            sync()
            cal[arm.name] = (time.perf_counter() - t0) / timed_steps
        log.info("calibration: arm %s takes %.3f s per G step", arm.name, cal[arm.name])
        saved["calibration"] = cal
        _write_json(path, saved)
    return cal


def arm_steps(spec: CompareSpec, calibration: dict[str, float]) -> dict[str, int]:
    """G steps of each arm: all equal, or the first arm's wall time divided by each arm's s/step."""
    if spec.match == "steps":
        return {a.name: spec.steps for a in spec.arms}
    base = calibration[spec.arms[0].name] * spec.steps
    return {a.name: max(1, round(base / calibration[a.name])) for a in spec.arms}


# --------------------------------------------------------------------------- running
@dataclass(frozen=True)
class PlannedRun:
    index: int
    arm: Arm
    seed: int
    steps: int
    folder: Path


def plan(outdir: Path, spec: CompareSpec, calibration: dict[str, float],
         shard: tuple[int, int] = (0, 1)) -> list[PlannedRun]:
    """Every run of the comparison (seed-major, so early results cover every arm), or one shard."""
    steps = arm_steps(spec, calibration)
    runs, i = [], 0
    for seed in spec.seeds:
        for arm in spec.arms:
            if i % shard[1] == shard[0]:
                runs.append(PlannedRun(i, arm, seed, steps[arm.name], run_dir(outdir, arm, seed)))
            i += 1
    return runs


def is_done(run: PlannedRun) -> bool:
    path = run.folder / FINAL_FILE
    return path.exists() and json.loads(path.read_text()).get("step") == run.steps


def train_and_evaluate(outdir: Path, spec: CompareSpec, run: PlannedRun) -> dict[str, Any]:
    """Train one run to its budget (resuming), then evaluate its final G_ema once."""
    from kdgan.training.loop import Trainer

    cfg = run_config(spec, run.arm, run.seed, run.steps)
    trainer = Trainer(cfg, run.folder)
    summary = trainer.run()
    if summary["stopped_early"]:
        raise KeyboardInterrupt
    result = final_evaluation(spec, cfg, run.folder, trainer.device)
    result.update({"arm": run.arm.name, "seed": run.seed, "step": trainer.step,
                   "train_seconds": _train_seconds(run.folder, cfg.batch_size * cfg.d_steps)})
    _write_json(run.folder / FINAL_FILE, result)
    return result


def final_evaluation(spec: CompareSpec, cfg: config_lib.TrainConfig, folder: Path,
                     device: torch.device) -> dict[str, Any]:
    """The final protocol's metrics of the exported G_ema (one generated set, seed 0)."""
    from kdgan.metrics import evaluate, generate_uint8, get_protocol, load_inception, reference_features
    from kdgan.nets import load_generator

    proto = get_protocol(spec.final_protocol, spec.final_num_gen or None)
    extractor = load_inception(spec.inception, device)
    ref = reference_features(spec.final_ref or cfg.data, proto.ref_split, extractor)
    G = load_generator(folder / "export", device)
    result = evaluate(lambda s: generate_uint8(G, proto.num_gen, s, 100, device), ref, extractor, proto,
                      spec.final_metrics, repeats=1, seed=0)
    return {"metrics": {k: v["mean"] for k, v in result["metrics"].items()}, "evaluation": result}


def _train_seconds(folder: Path, images_per_step: int) -> float:
    """Training time of a run from its log: steps / (images/s / images per step) summed over the
    log intervals (images/s excludes evaluations, so this is the time spent training)."""
    total, last_step = 0.0, 0
    for rec in _read_log(folder):
        rate = rec.get("perf/images_per_s")
        if rate is None:
            continue
        if rec["step"] > last_step and rate > 0:
            total += (rec["step"] - last_step) * images_per_step / rate
        last_step = rec["step"]
    return total


def _read_log(folder: Path) -> list[dict[str, Any]]:
    path = folder / "log.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill: skip it
            continue
    return out


def run_comparison(outdir: Path, spec: CompareSpec, shard: tuple[int, int] = (0, 1),
                   jobs: int = 1) -> list[PlannedRun]:
    """Run (or continue) this shard's runs, then write the report; returns the runs not done."""
    save_or_check_spec(outdir, spec)
    calibration = calibrate(outdir, spec) if spec.match == "time" else {}
    runs = plan(outdir, spec, calibration, shard)
    todo = [r for r in runs if not is_done(r)]
    total_steps = sum(r.steps for r in todo)
    log.info("comparison %s: %d arms x %d seeds; this shard: %d runs, %d to do (%d G steps)%s", outdir,
             len(spec.arms), len(spec.seeds), len(runs), len(todo), total_steps,
             f", steps per arm {arm_steps(spec, calibration)}" if spec.match == "time" else "")
    progress = _Progress(total_steps)
    if jobs <= 1:
        for k, run in enumerate(todo):
            log.info("[run %d/%d] arm %s, seed %d, %d steps -> %s%s", k + 1, len(todo), run.arm.name,
                     run.seed, run.steps, run.folder, progress.eta())
            t0 = time.perf_counter()
            train_and_evaluate(outdir, spec, run)
            progress.add(run.steps, time.perf_counter() - t0)
    else:
        _run_parallel(outdir, todo, jobs, progress)
    write_report(outdir)
    return [r for r in runs if not is_done(r)]


class _Progress:
    """Steps done over the whole comparison, and an ETA from the seconds they took."""

    def __init__(self, total_steps: int):
        self.total, self.done, self.seconds = total_steps, 0, 0.0

    def add(self, steps: int, seconds: float) -> None:
        self.done += steps
        self.seconds += seconds

    def eta(self) -> str:
        if not self.done:
            return ""
        left = (self.total - self.done) * self.seconds / self.done
        pct = 100 * self.done / max(self.total, 1)
        return f" (comparison {pct:.0f}% done, about {_minutes(left)} left)"


def _minutes(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _run_parallel(outdir: Path, todo: list[PlannedRun], jobs: int, progress: _Progress) -> None:
    """Up to `jobs` runs at a time, each a `kdgan compare --run-one` subprocess with its share of the
    CPU threads (on one GPU they share the device); logs in each run folder's compare.log."""
    threads = max(1, (os.cpu_count() or 1) // jobs)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    pending, active = list(todo), {}  # active: run index -> (run, process, log file, start time)
    failed = []
    while pending or active:
        while pending and len(active) < jobs:
            run = pending.pop(0)
            run.folder.mkdir(parents=True, exist_ok=True)
            logf = open(run.folder / "compare.log", "a")
            cmd = [sys.executable, "-m", "kdgan.cli", "compare", "--outdir", str(outdir),
                   "--run-one", f"{run.arm.name}:{run.seed}"]
            active[run.index] = (run, subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, env=env),
                                 logf, time.perf_counter())
            log.info("started arm %s seed %d (%d steps), log %s", run.arm.name, run.seed, run.steps,
                     run.folder / "compare.log")
        time.sleep(2.0)
        for index, (run, proc, logf, t0) in list(active.items()):
            if proc.poll() is None:
                continue
            logf.close()
            del active[index]
            if proc.returncode != 0:
                failed.append(run)
                log.error("arm %s seed %d failed (exit %d); see %s", run.arm.name, run.seed,
                          proc.returncode, run.folder / "compare.log")
                continue
            progress.add(run.steps, (time.perf_counter() - t0) / jobs)
            log.info("finished arm %s seed %d%s", run.arm.name, run.seed, progress.eta())
    if failed:
        raise KdganError(f"{len(failed)} run(s) failed: " + ", ".join(
            f"{r.arm.name} seed {r.seed} ({r.folder / 'compare.log'})" for r in failed)
            + "; fix the cause and re-run the same command (finished runs are kept)")


def run_one(outdir: Path, which: str) -> None:
    """Train and evaluate one run of a saved comparison ('ARM:SEED'): the worker of --jobs."""
    spec, calibration = load_spec(outdir)
    arm_name, _, seed = which.partition(":")
    for run in plan(outdir, spec, calibration):
        if run.arm.name == arm_name and str(run.seed) == seed:
            if not is_done(run):
                train_and_evaluate(outdir, spec, run)
            return
    raise KdganError(f"no run {which!r} in {outdir}; runs are ARM:SEED with arms "
                     f"{', '.join(a.name for a in spec.arms)} and seeds {list(spec.seeds)}")


# --------------------------------------------------------------------------- report
def _scale(metric: str) -> tuple[float, str]:
    return (1e3, "KID x 1e3") if metric == "kid" else (1.0, {"fid": "FID", "is": "IS"}.get(metric, metric))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


LOWER_IS_BETTER = {"fid": True, "kid": True, "is": False, "precision": False, "recall": False}


def collect(outdir: Path) -> tuple[CompareSpec, dict[str, float], dict[str, dict[int, dict[str, Any]]]]:
    """The spec, the calibration and the final results found on disk: {arm: {seed: result}}."""
    spec, calibration = load_spec(outdir)
    results: dict[str, dict[int, dict[str, Any]]] = {a.name: {} for a in spec.arms}
    for run in plan(outdir, spec, calibration):
        path = run.folder / FINAL_FILE
        if path.exists():
            res = json.loads(path.read_text())
            if res.get("step") == run.steps:
                results[run.arm.name][run.seed] = res
    return spec, calibration, results


def summarize(spec: CompareSpec, results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, Any]:
    """Per arm and metric: values by seed, mean, std (sample, n - 1); the difference from the first
    arm: difference of means, its standard error, the per-seed paired differences, Welch's p."""
    from scipy import stats as scipy_stats

    metrics = [m for m in ("kid", "fid", "is", "precision", "recall")
               if any(m in r["metrics"] for arm in results.values() for r in arm.values())]
    base = spec.arms[0].name
    out: dict[str, Any] = {"metrics": metrics, "arms": {}}
    for arm in spec.arms:
        per = results[arm.name]
        entry: dict[str, Any] = {}
        for m in metrics:
            vals = {s: r["metrics"][m] for s, r in sorted(per.items()) if r["metrics"].get(m) is not None}
            if not vals:
                continue
            mean, std = _mean_std(list(vals.values()))
            e: dict[str, Any] = {"values": vals, "mean": mean, "std": std, "n": len(vals)}
            if arm.name != base:
                bvals = {s: r["metrics"][m] for s, r in results[base].items()
                         if r["metrics"].get(m) is not None}
                if bvals:
                    bmean, bstd = _mean_std(list(bvals.values()))
                    se = math.sqrt((0 if math.isnan(std) else std ** 2) / len(vals)
                                   + (0 if math.isnan(bstd) else bstd ** 2) / len(bvals))
                    paired = [vals[s] - bvals[s] for s in vals if s in bvals]
                    lower = LOWER_IS_BETTER.get(m, True)
                    wins = sum(1 for d in paired if (d < 0) == lower and d != 0)
                    p = float("nan")
                    if len(vals) > 1 and len(bvals) > 1:
                        p = float(scipy_stats.ttest_ind(list(vals.values()), list(bvals.values()),
                                                        equal_var=False).pvalue)
                    e["vs_base"] = {"diff": mean - bmean, "se": se, "paired": paired, "wins": wins,
                                    "pairs": len(paired), "welch_p": p}
            entry[m] = e
        out["arms"][arm.name] = entry
    return out


def write_report(outdir: Path) -> Path:
    """report.md + report.json, curves.png and samples.png from whatever runs are finished."""
    outdir = Path(outdir)
    spec, calibration, results = collect(outdir)
    summary = summarize(spec, results)
    steps = arm_steps(spec, calibration) if (spec.match == "steps" or len(calibration) == len(spec.arms)) \
        else {}
    n_done = sum(len(v) for v in results.values())
    n_all = len(spec.arms) * len(spec.seeds)
    base = spec.arms[0].name
    lines = [f"# Comparison: {', '.join(a.name for a in spec.arms)}", ""]
    lines += ["Made by (re-running it continues the comparison; add `--report` to only rewrite this page):",
              "", f"    {spec_command(spec, outdir)}", ""]
    budget = (f"{spec.steps} G steps per run" if spec.match == "steps" else
              f"equal estimated wall time: {spec.steps} G steps of arm {base}; s/step measured "
              "one arm after the other on this machine: " + ", ".join(
                  f"{k} {v:.3f}" for k, v in calibration.items()))
    proto = spec.final_protocol + (f", {spec.final_num_gen} generated" if spec.final_num_gen else "")
    lines += [f"Budget: {budget}. Seeds: {', '.join(map(str, spec.seeds))} (seed of initialisation, "
              f"sampling and augmentation; the data and its subset are the same for all). Final "
              f"evaluation: protocol {proto}, metrics {', '.join(spec.final_metrics)}, "
              f"{_extractor_line(results)}. Runs finished: {n_done} of {n_all}.", ""]
    lines += ["| arm | recipe | steps |", "| --- | --- | --- |"]
    lines += [f"| {a.name} | `{a.describe()}` | {steps.get(a.name, '?')} |" for a in spec.arms]
    lines.append("")
    for m in summary["metrics"]:
        scale, label = _scale(m)
        lower = LOWER_IS_BETTER.get(m, True)
        lines += [f"## {label} ({'lower' if lower else 'higher'} is better)", ""]
        seeds = list(spec.seeds)
        lines += ["| arm | " + " | ".join(f"seed {s}" for s in seeds) + f" | mean +- std | vs {base} |",
                  "| --- |" + " --- |" * (len(seeds) + 2)]
        for arm in spec.arms:
            e = summary["arms"][arm.name].get(m)
            if e is None:
                continue
            cells = [f"{e['values'][s] * scale:.3f}" if s in e["values"] else "" for s in seeds]
            std = "" if math.isnan(e["std"]) else f" +- {e['std'] * scale:.3f}"
            vs = ""
            if "vs_base" in e:
                d = e["vs_base"]
                p = "" if math.isnan(d["welch_p"]) else f", Welch p {d['welch_p']:.2g}"
                vs = (f"{d['diff'] * scale:+.3f} +- {d['se'] * scale:.3f} (better in {d['wins']} of "
                      f"{d['pairs']} seeds{p})")
            lines.append(f"| {arm.name} | " + " | ".join(cells) + f" | {e['mean'] * scale:.3f}{std} | {vs} |")
        lines.append("")
    lines += ["mean +- std: over training seeds (sample std). vs baseline: difference of means +- its "
              "standard error, sqrt(s_a^2/n_a + s_b^2/n_b); 'better in k of n seeds' compares runs "
              "with the same seed; Welch's t-test p-value (two-sided) where both arms have 2+ seeds.", ""]
    dynamics = training_dynamics(outdir, spec, calibration, results)
    if dynamics:
        lines += ["## Training", "",
                  "| arm | training time per run | D logit gap, real - fake (last quarter of the logged "
                  "steps) |", "| --- | --- | --- |"]
        for name, d in dynamics.items():
            gap = "" if d["d_gap_mean"] is None else f"{d['d_gap_mean']:.3f}"
            if d["d_gap_std"] is not None:
                gap += f" +- {d['d_gap_std']:.3f}"
            lines.append(f"| {name} | {_minutes(d['train_seconds_mean'])} | {gap} |")
        lines += ["", "The logit gap is D's mean logit on real images minus that on generated ones, from "
                  "log.jsonl: near 0, D no longer tells real from fake and G gets no signal.", ""]
    curves = _plot_curves(outdir, spec, calibration, steps)
    samples = _sample_sheet(outdir, spec)
    if curves:
        lines += [f"![{spec.eval_metric} during training](curves.png)", ""]
    if samples:
        lines += ["![final samples of each arm (first seed), reals on top](samples.png)", ""]
    (outdir / "report.md").write_text("\n".join(lines))
    _write_json(outdir / "report.json", {"spec": spec.to_dict(), "calibration": calibration,
                                         "steps": steps, "summary": summary, "training": dynamics,
                                         "results": {a: {str(s): r["metrics"] for s, r in v.items()}
                                                     for a, v in results.items()}})
    return outdir / "report.md"


def training_dynamics(outdir: Path, spec: CompareSpec, calibration: dict[str, float],
                      results: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per arm over its finished runs: mean training seconds, and D's real - fake logit gap averaged
    over the last quarter of the logged steps (mean and sample std over seeds)."""
    out: dict[str, dict[str, Any]] = {}
    for run in plan(outdir, spec, calibration):
        if run.seed not in results[run.arm.name]:
            continue
        log = [r for r in _read_log(run.folder)
               if "stats/d_real_logit" in r and "stats/d_fake_logit" in r]
        last = [r for r in log if r["step"] > 0.75 * log[-1]["step"]] if log else []
        d = out.setdefault(run.arm.name, {"gaps": [], "seconds": []})
        if last:
            d["gaps"].append(statistics.fmean(r["stats/d_real_logit"] - r["stats/d_fake_logit"]
                                              for r in last))
        d["seconds"].append(results[run.arm.name][run.seed].get("train_seconds", 0.0))
    for d in out.values():
        gaps = d.pop("gaps")
        d["d_gap_mean"] = statistics.fmean(gaps) if gaps else None
        d["d_gap_std"] = statistics.stdev(gaps) if len(gaps) > 1 else None
        d["train_seconds_mean"] = statistics.fmean(d.pop("seconds"))
    return out


def _extractor_line(results: dict[str, dict[int, dict[str, Any]]]) -> str:
    for per in results.values():
        for r in per.values():
            ev = r.get("evaluation", {})
            ref = ev.get("reference", {})
            return (f"{ev.get('generated', {}).get('num_images', '?')} generated vs "
                    f"{ref.get('num_images', '?')} reference images "
                    f"({describe_source(ref.get('source', '?'), ref.get('split'))}), "
                    f"{ev.get('feature_extractor', '?')}")
    return "no run finished yet"


def _plot_curves(outdir: Path, spec: CompareSpec, calibration: dict[str, float],
                 steps: dict[str, int]) -> Path | None:
    """In-training metric vs progress (minutes when the budget is time-matched), mean and band."""
    key = f"eval/{spec.eval_metric}"
    series = {}
    for arm in spec.arms:
        per_seed = []
        for seed in spec.seeds:
            pts = {r["step"]: r[key] for r in _read_log(run_dir(outdir, arm, seed)) if key in r}
            if pts:
                per_seed.append(pts)
        if per_seed:
            series[arm.name] = per_seed
    if not series:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, label = _scale(spec.eval_metric)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=120)
    timed = spec.match == "time" and len(calibration) == len(spec.arms)
    for i, (arm_name, per_seed) in enumerate(series.items()):
        color = f"C{i}"
        per_x = calibration[arm_name] / 60 if timed else 1
        for p in per_seed:  # every seed's points, so a seed evaluated at other steps still shows
            ax.plot(np.array(sorted(p), dtype=float) * per_x, [p[s] * scale for s in sorted(p)],
                    ".", color=color, alpha=0.35, ms=4)
        common = sorted(set.intersection(*(set(p) for p in per_seed)))
        if not common:
            ax.plot([], [], ".", color=color, label=f"{arm_name} ({len(per_seed)} seeds, at different steps)")
            continue
        vals = np.array([[p[s] * scale for s in common] for p in per_seed])
        x = np.array(common, dtype=float) * per_x
        ax.plot(x, vals.mean(0), marker="o", ms=3, color=color, label=f"{arm_name} ({len(per_seed)} seeds)")
        if len(per_seed) > 1:
            ax.fill_between(x, vals.min(0), vals.max(0), color=color, alpha=0.2)
    ax.set_xlabel("estimated training minutes" if timed else "G steps")
    ax.set_ylabel(f"{label} ({spec.eval_num_gen} generated)")
    ax.set_title("line: seed mean (steps all seeds share), band: min-max, dots: seeds", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = outdir / "curves.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _sample_sheet(outdir: Path, spec: CompareSpec) -> Path | None:
    """The final fixed-z grid of each arm's first seed, side by side after the reals, labelled."""
    from PIL import Image, ImageDraw

    panels = []
    seed = spec.seeds[0]
    reals = None
    for arm in spec.arms:
        folder = run_dir(outdir, arm, seed) / "samples"
        fakes = sorted(folder.glob("fakes-*.png"))
        if not fakes:
            continue
        if reals is None and (folder / "reals.png").exists():
            reals = ("reals", Image.open(folder / "reals.png").convert("RGB"))
        panels.append((f"{arm.name} (seed {seed}, step {int(fakes[-1].stem.split('-')[1])})",
                       Image.open(fakes[-1]).convert("RGB")))
    if not panels:
        return None
    if reals is not None:
        panels.insert(0, reals)
    zoom = 2 if max(p.width for _, p in panels) <= 320 else 1
    label_h, gap = 16, 8
    width = sum(p.width * zoom for _, p in panels) + gap * (len(panels) - 1)
    height = max(p.height * zoom for _, p in panels) + label_h
    sheet = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(sheet)
    x = 0
    for text, img in panels:  # side by side: reals, then each arm
        draw.text((x + 2, 2), text, fill="black")
        img = img.resize((img.width * zoom, img.height * zoom), Image.NEAREST)
        sheet.paste(img, (x, label_h))
        x += img.width + gap
    path = outdir / "samples.png"
    sheet.save(path)
    return path
