"""The real `kdgan` command end to end, in subprocesses, on tiny data."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kdgan.training.checkpoint import load_checkpoint

KDGAN = [sys.executable, "-m", "kdgan.cli"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}


def kdgan(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([*KDGAN, *map(str, args)], capture_output=True, text=True,
                          env={**ENV, **(env or {})}, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"kdgan {' '.join(map(str, args))} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def same_weights(a: Path, b: Path) -> bool:
    ca, cb = load_checkpoint(a), load_checkpoint(b)
    return all(torch.equal(v, cb["nets"][n]["state"][k])
               for n in ("G", "D", "G_ema") for k, v in ca["nets"][n]["state"].items())


def test_prepare_train_kill9_resume_generate(tmp_path, image_folder):
    ds = tmp_path / "ds.zip"
    out = kdgan("data", "prepare", image_folder, "--out", ds, "--resolution", "32")
    assert "wrote" in out.stdout and "20 images, 32x32, 2 classes" in out.stdout
    info = kdgan("data", "info", ds).stdout
    assert "num_images      20" in info and "cat: 12, dog: 8" in info

    train = ["train", "--data", ds, "--preset", "tiny", "--steps", "40", "--device", "cpu",
             "--set", "ckpt_every_steps=2", "--set", "sample_every_steps=20"]
    kdgan(*train, "--outdir", tmp_path / "a")  # uninterrupted reference

    run_b = tmp_path / "b"
    proc = subprocess.Popen([*KDGAN, *map(str, train), "--outdir", run_b], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpts = run_b / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts.exists() and any(ckpts.glob("ckpt-*.pt"))):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    time.sleep(float(np.random.default_rng().uniform(0, 0.5)))  # any moment after the first
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    resumed = kdgan(*train, "--outdir", run_b)
    assert "resuming" in resumed.stderr and "done: step 40 of 40" in resumed.stdout
    final = "checkpoints/ckpt-000000040.pt"
    assert same_weights(tmp_path / "a" / final, run_b / final)  # bit-identical to uninterrupted
    assert (run_b / "samples" / "fakes-000000040.png").exists()
    assert (run_b / "log.jsonl").read_text().count('"step": 40') >= 1

    gen = kdgan("generate", "--ckpt", run_b / "export", "--num", "10", "--outdir",
                tmp_path / "gen", "--npz", "--device", "cpu")
    assert "wrote 10 images" in gen.stdout
    assert len(list((tmp_path / "gen").glob("*.png"))) == 10
    npz = np.load(tmp_path / "gen" / "images.npz")
    assert npz["arr_0"].shape == (10, 32, 32, 3) and npz["arr_0"].dtype == np.uint8
    assert npz["labels"].tolist() == [0, 1] * 5


def test_stylegan2_da_kd_ada_lecam_kill9_resume_generate_evaluate(tmp_path, image_folder):
    """64 px tiny StyleGAN2 + DiffAugment + KD-DLGAN (+ ADA, LeCam) through the CLI; ADA's p and
    the LeCam anchors survive kill -9 (the resumed run ends bit-identical to an uninterrupted one)."""
    env = {"KDGAN_CACHE_DIR": str(tmp_path / "cache"), "KDGAN_OFFLINE": "1"}
    train = ["train", "--data", image_folder, "--preset", "stylegan2-tiny", "--steps", "12",
             "--device", "cpu",
             "--teacher", "clip-tiny-random", "--set", "ada=bgc", "--set", "ada_p=0.5",
             "--set", "ada_kimg=0.32", "--set", "lecam_weight=0.01", "--set", "ckpt_every_steps=2",
             "--set", "conditional=true"]
    first = kdgan(*train, "--outdir", tmp_path / "a", env=env)
    assert "training stylegan2 on 20 images" in first.stderr and "KD terms agkd+cgkd" in first.stderr

    run_b = tmp_path / "b"
    proc = subprocess.Popen([*KDGAN, *map(str, train), "--outdir", run_b], env={**ENV, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    ckpts = run_b / "checkpoints"
    deadline = time.time() + 300
    while not (ckpts.exists() and len(list(ckpts.glob("ckpt-*.pt"))) >= 2):
        assert proc.poll() is None and time.time() < deadline, "no checkpoint appeared"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = kdgan(*train, "--outdir", run_b, env=env)
    assert "resuming" in resumed.stderr and "done: step 12 of 12" in resumed.stdout
    final = "checkpoints/ckpt-000000012.pt"
    assert same_weights(tmp_path / "a" / final, run_b / final)
    a, b = load_checkpoint(tmp_path / "a" / final), load_checkpoint(run_b / final)
    for part in ("ada", "lecam", "pl"):
        for k, v in a["objective"][part].items():
            assert torch.equal(v, b["objective"][part][k]), (part, k)
    assert a["objective"]["ada"]["p"].item() != 0.5  # p moved (3 updates of +-0.1)
    assert a["nets"]["D"]["config"]["kd_dim"] == 32 and a["nets"]["G"]["config"]["c_dim"] == 2

    for folder, batch in (("gen", "6"), ("gen-again", "6"), ("gen2", "4")):
        kdgan("generate", "--ckpt", run_b / "export", "--num", "6", "--outdir", tmp_path / folder, "--npz",
              "--device", "cpu", "--truncation", "0.7", "--batch-size", batch)
    first, same, other = (np.load(tmp_path / d / "images.npz")["arr_0"] for d in ("gen", "gen-again", "gen2"))
    # the promise of `kdgan generate --help`: bit-identical at the same batch size, within 1/255 at another
    assert first.shape == (6, 64, 64, 3) and np.array_equal(first, same)
    assert np.abs(first.astype(int) - other.astype(int)).max() <= 1
    out = kdgan("evaluate", "--ckpt", run_b / "export", "--data", image_folder, "--protocol", "custom",
                "--num-gen", "8", "--metrics", "fid,kid", "--inception", "tf-torchscript", env=env)
    assert "| fid |" in out.stdout and "| kid x 1e3 |" in out.stdout


def test_resume_after_a_shorter_run_equals_uninterrupted(tmp_path, image_folder):
    common = ["train", "--data", image_folder, "--preset", "tiny", "--device", "cpu",
              "--set", "conditional=false"]
    kdgan(*common, "--steps", "6", "--outdir", tmp_path / "a")
    kdgan(*common, "--steps", "3", "--outdir", tmp_path / "b")
    out = kdgan(*common, "--steps", "6", "--outdir", tmp_path / "b")
    assert "resumed from step 3" in out.stdout
    final = "checkpoints/ckpt-000000006.pt"
    assert same_weights(tmp_path / "a" / final, tmp_path / "b" / final)
    fewer = kdgan(*common, "--steps", "4", "--outdir", tmp_path / "b")  # fewer steps than the run has done
    assert "done: step" not in fewer.stdout
    # the answer comes first: no teacher lines, no "resuming", no progress bar (issue 25)
    first = f"nothing to train: {tmp_path / 'b'} already holds step 6, past --steps 4."
    assert fewer.stdout.startswith(first)
    assert "resuming" not in fewer.stderr and "step/s" not in fewer.stderr
    assert "re-run with --steps N larger than 6" in fewer.stdout and "use a new --outdir" in fewer.stdout


@pytest.mark.parametrize("args,message", [
    (["train", "--data", "{tmp}/missing", "--outdir", "{tmp}/r"], "does not exist"),
    (["train", "--data", "{tmp}/notzip.zip", "--outdir", "{tmp}/r"], "is not a zip file"),
    (["train", "--data", "{tmp}/empty", "--outdir", "{tmp}/r"], "holds no image files"),
    (["train", "--data", "{imgs}", "--data-fraction", "1.5", "--outdir", "{tmp}/r"],
     r"data_fraction must be in (0, 1]"),
    (["train", "--data", "{imgs}", "--batch-size", "64", "--preset", "tiny", "--outdir", "{tmp}/r"],
     "fewer than one batch of 64; use --batch-size 20 or less"),
    (["data", "prepare", "{imgs}", "--out", "{tmp}/x.zip", "--fraction", "0"], "outside (0, 1]"),
    (["train", "--preset", "nope", "--outdir", "{tmp}/r"], "unknown preset 'nope'"),
    (["generate", "--ckpt", "{imgs}/cat/000.png", "--num", "2", "--outdir", "{tmp}/g"],
     "not a readable kdgan checkpoint"),
    # click's own errors in the same form, with the fix (issue 25)
    (["generate", "--ckpt", "{imgs}", "--num", "-3", "--outdir", "{tmp}/g"],
     "invalid value for '--num': -3 is not in the range x>=1; run 'kdgan generate --help'"),
    (["evaluate", "--ckpt", "{tmp}/nope/export"],
     "does not exist; check the path (a run's generator is RUN/"),
    (["train", "--stesp", "4"],
     "no such option '--stesp'; did you mean one of: '--seed', '--set', '--steps'?"),
    (["trian"], "no such command 'trian'; did you mean 'train'?"),
    # unknown names get the closest match; config errors name the flag
    (["train", "--preset", "demo-kdd", "--outdir", "{tmp}/r"], "did you mean demo-kd or demo?"),
    (["train", "--preset", "tiny", "--set", "lecam_decy=0.5", "--outdir", "{tmp}/r"],
     "lecam_decy: did you mean lecam_decay"),
    (["train", "--preset", "tiny", "--steps", "-5", "--outdir", "{tmp}/r"],
     "steps must be at least 1 (flag --steps)"),
])
def test_bad_input_is_one_clear_line(tmp_path, image_folder, args, message):
    (tmp_path / "notzip.zip").write_text("hello")
    (tmp_path / "empty").mkdir()
    args = [a.format(tmp=tmp_path, imgs=image_folder) for a in args]
    proc = kdgan(*args, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], proc.stderr


def test_prepare_lists_skipped_files_and_strict_fails(tmp_path, image_folder):
    (image_folder / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    out = kdgan("data", "prepare", image_folder, "--out", tmp_path / "d.zip")
    assert "skipped dog/broken.png" in out.stderr and "skipped 1 unreadable" in out.stdout
    strict = kdgan("data", "prepare", image_folder, "--out", tmp_path / "s.zip", "--strict", check=False)
    assert strict.returncode == 2 and "dog/broken.png" in strict.stderr
    assert not (tmp_path / "s.zip").exists()


def test_dry_run_and_presets(tmp_path):
    out = kdgan("train", "--preset", "biggan-cifar10-10pct-da", "--data", "cifar10", "--batch-size",
                "32", "--outdir", tmp_path / "r", "--dry-run").stdout
    assert '"batch_size": 32' in out and '"data_fraction": 0.1' in out and '"d_steps": 4' in out
    assert not (tmp_path / "r").exists()
    listing = kdgan("presets").stdout
    assert "biggan-cifar10-10pct-da" in listing and "paper FID 23.34" in listing


@pytest.mark.parametrize("preset,extra", [
    ("tiny", []),
    # StyleGAN2 with the collectives of ADA / APA (p moves identically on every rank) and path length
    ("stylegan2-tiny", ["--set", "resolution=32", "--set", "ada=bgc", "--set", "apa=true",
                        "--set", "ada_kimg=0.1", "--set", "pl_every=1"]),
    # InsGen: keys gathered from both ranks into the queues, heads' gradients averaged
    pytest.param("stylegan2-tiny", ["--set", "resolution=32", "--set", "ada=bgc", "--set", "insgen=true",
                                    "--set", "diffaugment="], marks=pytest.mark.slow),
])
def test_ddp_two_processes_gloo(tmp_path, image_folder, preset, extra):
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "kdgan.cli", "train", "--data", str(image_folder), "--preset", preset,
         "--steps", "4", "--device", "cpu", "--outdir", str(tmp_path / "ddp"), *extra],
        capture_output=True, text=True, env=ENV, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 process(es)" in proc.stderr
    assert "parameters identical across 2 ranks" in proc.stderr
    assert proc.stdout.count("done: step 4 of 4") == 1  # only rank 0 reports
    ckpt = load_checkpoint(tmp_path / "ddp" / "checkpoints" / "ckpt-000000004.pt")
    assert len(ckpt["rng"]) == 2  # both ranks' RNG states, for an exact resume


def test_shared_cifar10_jpeg_prepare_and_conditional_train(tmp_path, shared_data):
    ds = tmp_path / "c10.zip"
    out = kdgan("data", "prepare", shared_data / "cifar10-jpeg-10pct.zip", "--out", ds,
                "--fraction", "0.01", "--balanced", "--seed", "0")
    assert "50 images, 32x32, 10 classes" in out.stdout
    kdgan("train", "--data", ds, "--preset", "tiny", "--steps", "2", "--device", "cpu",
          "--outdir", tmp_path / "r")
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoints" / "ckpt-000000002.pt")
    assert ckpt["nets"]["G"]["config"]["c_dim"] == 10


def test_train_with_evaluation_then_evaluate_checkpoint_and_images(tmp_path, image_folder):
    env = {"KDGAN_CACHE_DIR": str(tmp_path / "cache"), "KDGAN_OFFLINE": "1"}
    run = tmp_path / "run"
    kdgan("train", "--data", image_folder, "--preset", "tiny", "--steps", "4", "--device", "cpu",
          "--outdir", run, "--set", "eval_every_steps=2", "--set", "eval_protocol=custom",
          "--set", "eval_num_gen=10", "--set", "inception=tf-torchscript", env=env)
    assert (run / "checkpoints" / "best.pt").exists()
    best = json.loads((run / "checkpoints" / "best.json").read_text())
    assert best["metric"] == "fid" and best["step"] in (2, 4)
    evals = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines() if "eval/fid" in ln]
    assert [e["step"] for e in evals] == [2, 4] and best["value"] == min(e["eval/fid"] for e in evals)

    out = kdgan("evaluate", "--ckpt", run / "export", "--data", image_folder, "--protocol", "custom",
                "--num-gen", "12", "--repeat", "2", "--metrics", "fid,kid,is,pr",
                "--inception", "tf-torchscript", "--out", tmp_path / "e.json", env=env)
    assert "| fid |" in out.stdout and "+-" in out.stdout and "| is | unavailable |" in out.stdout
    assert "reference features of" in out.stderr and "from the cache" in out.stderr  # reused
    # the CPU estimate comes before the work; numbers asked for are kept (no CPU budget line)
    assert "estimate: about 1 min for 24 generated images" in out.stderr and "on the CPU:" not in out.stderr
    assert out.stderr.index("estimate:") < out.stderr.index("reference features")
    result = json.loads((tmp_path / "e.json").read_text())
    assert len(result["metrics"]["fid"]["values"]) == 2 and result["generated"]["seeds"] == [0, 1]
    assert {"kid", "precision", "recall"} <= set(result["metrics"])
    assert "KID subset size reduced" in " ".join(result["notes"])
    assert (tmp_path / "e.md").read_text().startswith("| metric |")

    kdgan("generate", "--ckpt", run / "export", "--num", "8", "--outdir", tmp_path / "gen", "--npz",
          "--device", "cpu")
    out = kdgan("evaluate", "--images", tmp_path / "gen" / "images.npz", "--data", image_folder,
                "--protocol", "custom", "--num-gen", "8", "--metrics", "fid",
                "--inception", "tf-torchscript", "--out", tmp_path / "i.json", env=env)
    assert json.loads((tmp_path / "i.json").read_text())["generated"]["num_images"] == 8
    bad = kdgan("evaluate", "--data", image_folder, "--protocol", "cifar", "--ckpt", run / "export",
                "--inception", "tf-torchscript", check=False, env=env)
    assert bad.returncode == 2 and "compares with the 'test' split" in bad.stderr


def test_kd_dlgan_train_resume_and_evaluate(tmp_path, image_folder):
    env = {"KDGAN_CACHE_DIR": str(tmp_path / "cache"), "KDGAN_OFFLINE": "1"}
    common = ["train", "--data", image_folder, "--preset", "tiny", "--device", "cpu",
              "--teacher", "clip-tiny-random", "--kd", "agkd,cgkd", "--set", "lecam_weight=0.3",
              "--outdir", tmp_path / "kd"]
    first = kdgan(*common, "--steps", "2", env=env)
    assert "teacher clip-tiny-random (tests only)" in first.stderr and "KD terms agkd+cgkd" in first.stderr
    assert "CGKD prompts (2): a cat; a dog" in first.stderr
    second = kdgan(*common, "--steps", "4", env=env)
    assert "resumed from step 2" in second.stdout
    logged = [json.loads(ln) for ln in (tmp_path / "kd" / "log.jsonl").read_text().splitlines()]
    assert all({"d/agkd", "d/cgkd", "d/lecam"} <= set(r) for r in logged if "d/hinge_real" in r)
    out = kdgan("evaluate", "--ckpt", tmp_path / "kd" / "export", "--data", image_folder, "--protocol",
                "custom", "--num-gen", "8", "--metrics", "fid,kid", "--inception", "tf-torchscript",
                "--out", tmp_path / "kd.json", env=env)
    assert "| fid |" in out.stdout and "| kid x 1e3 |" in out.stdout


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path, image_folder):
    train = ["train", "--data", image_folder, "--preset", "tiny", "--steps", "200", "--device", "cpu",
             "--set", "ckpt_every_steps=1000", "--set", "sample_every_steps=1000",
             "--set", "log_every_steps=50", "--outdir", tmp_path / "run"]
    proc = subprocess.Popen([*KDGAN, *map(str, train)], env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 300
    while not (log.exists() and log.read_text().count("\n") >= 1):  # step 50 logged
        assert proc.poll() is None and time.time() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what a cluster scheduler sends before pre-emption
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "received SIGTERM" in err and "re-run the same command to resume" in out
    saved = sorted((tmp_path / "run" / "checkpoints").glob("ckpt-*.pt"))
    # saved after the step in progress, not at the next log step (100)
    assert len(saved) == 1 and 50 <= load_checkpoint(saved[0])["step"] < 100
    assert not (tmp_path / "run" / "export").exists()  # an interrupted run is not exported
    resumed = kdgan(*train)  # the same command again
    assert "resumed from step" in resumed.stdout and "done: step 200 of 200" in resumed.stdout


def test_ddp_resume_is_exact(tmp_path, image_folder):
    def torchrun(steps: int, outdir: Path) -> None:
        proc = subprocess.run(
            [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
             "-m", "kdgan.cli", "train", "--data", str(image_folder), "--preset", "tiny",
             "--steps", str(steps), "--device", "cpu", "--outdir", str(outdir)],
            capture_output=True, text=True, env=ENV, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr

    torchrun(4, tmp_path / "a")
    torchrun(2, tmp_path / "b")
    torchrun(4, tmp_path / "b")
    final = "checkpoints/ckpt-000000004.pt"
    assert same_weights(tmp_path / "a" / final, tmp_path / "b" / final)


def test_compress_train_resume_and_report(tmp_path, image_folder):
    env = {"KDGAN_CACHE_DIR": str(tmp_path / "cache"), "KDGAN_OFFLINE": "1"}
    kdgan("train", "--data", image_folder, "--preset", "tiny", "--steps", "2", "--device", "cpu",
          "--outdir", tmp_path / "teacher")
    teacher = tmp_path / "teacher" / "checkpoints" / "ckpt-000000002.pt"
    common = ["compress", "--teacher", teacher, "--student", "dcgan", "--width", "0.05", "--method", "akdg",
              "--data", image_folder, "--outdir", tmp_path / "s", "--batch-size", "8", "--device", "cpu",
              "--set", "ckpt_every_steps=2", "--set", "log_every_steps=1", "--set", "eval_protocol=custom",
              "--set", "eval_num_gen=12", "--set", "inception=tf-torchscript"]
    kdgan(*common, "--steps", "2", env=env)
    out = kdgan(*common, "--steps", "4", env=env)
    assert "resumed from step 2" in out.stdout and "report:" in out.stdout
    ckpt = load_checkpoint(tmp_path / "s" / "checkpoints" / "ckpt-000000004.pt")
    assert ckpt["nets"]["G"]["config"]["arch"] == "dcgan" and ckpt["nets"]["G"]["config"]["c_dim"] == 2
    assert set(ckpt["nets"]["D"]["config"]) == {"arch", "data", "kd"}
    assert set(ckpt["nets"]) == {"G", "D", "G_ema"}
    assert ckpt["compress"]["teacher"] == str(teacher) and len(ckpt["compress"]["teacher_sha256"]) == 64
    logged = [json.loads(ln) for ln in (tmp_path / "s" / "log.jsonl").read_text().splitlines()]
    expected = {"d_kd/ns_real", "d_kd/r1", "d_data/ns_fake", "g/ns_kd"}
    assert all(expected <= set(r) for r in logged if "g/ns_kd" in r)

    (tmp_path / "s" / "report.md").unlink()
    bad = kdgan("compress", "--report", tmp_path / "s", "--report-protocol", "cifar", check=False, env=env)
    assert bad.returncode == 2 and "test" in bad.stderr  # the folder has no test split: one clear line
    # the same mistake in a new run is refused before its first step, and every flag it suggests exists
    early = kdgan(*common, "--report-protocol", "cifar", "--outdir", tmp_path / "never", check=False)
    assert early.returncode == 2 and not (tmp_path / "never").exists()
    flags = set(re.findall(r"--[a-z][a-z-]+", early.stderr + bad.stderr))
    assert {"--report-ref", "--report-ref-split", "--report-protocol"} <= flags
    help_text = kdgan("compress", "--help").stdout
    assert all(f in help_text for f in flags), flags - {f for f in flags if f in help_text}
    kdgan("compress", "--report", tmp_path / "s", env=env)
    report = (tmp_path / "s" / "report.md").read_text()
    for row in ("| parameters |", "| multiply-adds / image |", "| latency, batch 1, CPU",
                "| throughput, batch 256", "| FID |", "| KID x 1e3 |", "| IS | unavailable"):
        assert row in report, row
    assert (tmp_path / "s" / "samples" / "teacher-vs-student.png").exists()
    data = json.loads((tmp_path / "s" / "report.json").read_text())
    assert data["rows"]["student"]["parameters"] < data["rows"]["teacher"]["parameters"]
    seeds = {k: data["quality"][k]["generated"]["seeds"] for k in ("teacher", "student")}
    assert seeds["teacher"] == seeds["student"]

    kdgan("generate", "--ckpt", tmp_path / "s" / "export", "--num", "4", "--outdir", tmp_path / "gen",
          "--device", "cpu")
    unlabeled = tmp_path / "flat"
    unlabeled.mkdir()
    for p in list(image_folder.rglob("*.png"))[:10]:
        (unlabeled / p.name).write_bytes(p.read_bytes())
    bad = kdgan("compress", "--teacher", teacher, "--data", unlabeled, "--outdir", tmp_path / "b",
                "--device", "cpu", "--batch-size", "4", check=False)
    assert bad.returncode == 2 and "conditional on 2 classes but the data has no labels" in bad.stderr


def test_second_training_in_the_same_folder_is_refused_and_kill9_frees_the_folder(tmp_path, image_folder):
    train = ["train", "--data", image_folder, "--preset", "tiny", "--steps", "100000", "--device", "cpu",
             "--set", "ckpt_every_steps=100000", "--set", "sample_every_steps=100000",
             "--outdir", tmp_path / "run"]
    first = subprocess.Popen([*KDGAN, *map(str, train)], env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    log = tmp_path / "run" / "log.jsonl"
    deadline = time.time() + 300
    try:
        while not (log.exists() and log.read_text().count("\n") >= 2):  # training steps
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        second = kdgan(*train, check=False)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        errors = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and f"in use by another kdgan training (pid {first.pid} on " in errors[0]
        assert "training tiny" not in second.stderr and "training biggan" not in second.stderr
        assert first.poll() is None  # the first run is untouched
    finally:
        first.send_signal(signal.SIGKILL)
        first.communicate()
    again = kdgan(*train[:-1], tmp_path / "run", "--steps", "3")  # kill -9 leaves no stale lock
    assert "done: step 3 of 3" in again.stdout


def test_a_full_disk_is_one_line_that_says_what_is_kept(tmp_path):
    """A write the file system refuses (here: a file-size limit, EFBIG, as a full disk gives
    ENOSPC) ends the training with one error line naming the last whole checkpoint."""
    import resource

    def limit_file_size():  # checkpoints of this run are about 0.64 MB; the second one is refused
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (700_000, 700_000))

    run = tmp_path / "run"
    args = ["train", "--preset", "tiny", "--steps", "10", "--set", "ckpt_every_steps=5", "--outdir", run]
    proc = subprocess.run([*KDGAN, *map(str, args)], capture_output=True, text=True, env=ENV, timeout=600,
                          preexec_fn=limit_file_size)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "nothing saved is lost" in lines[0], proc.stderr
    assert lines[0].startswith("error: could not write")
    last = sorted((run / "checkpoints").glob("ckpt-*.pt"))[-1]
    assert str(last) in lines[0] and "re-run the same command to resume" in lines[0]
    resumed = kdgan(*args)  # with space again, the same command finishes the run
    assert "done: step 10 of 10" in resumed.stdout or "nothing to train" in resumed.stdout
