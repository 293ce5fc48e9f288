"""The GPU-slot kit of benchmarks/kd_slot.py: a tiny CPU dry run returns the slot's files, and the
scoring command turns them into a report; the bundle's size check runs."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "kd_slot.py"


def tiny_cifar_zip(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with zipfile.ZipFile(path, "w") as z:
        for split, n in (("train", 8), ("test", 8)):
            for c in ("airplane", "cat"):
                for i in range(n):
                    buf = io.BytesIO()
                    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                    z.writestr(f"{split}/{c}/{i:04d}.png", buf.getvalue())
    return path


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**__import__("os").environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )


def test_slot_dry_run_returns_its_files_and_the_score_writes_a_report(tmp_path, monkeypatch):
    data = tiny_cifar_zip(tmp_path / "tiny.zip")
    out, report = tmp_path / "out", tmp_path / "report"
    monkeypatch.setenv("KDGAN_CACHE_DIR", str(tmp_path / "cache"))
    r = run("run", "--out", str(out), "--workdir", str(tmp_path / "work"), "--data", str(data),
            *"--device cpu --seeds 0 --budget-min 1 --reserve-s 5 --snapshot-every 2 --log-every 1".split(),
            *"--probe 8 --max-steps 4 --threads 1 --set g_ch=8 d_ch=8 batch_size=8".split(),
            "teacher=clip-tiny-random", "teacher_weights=", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    files = sorted(p.name for p in out.iterdir())
    assert files == ["da-kd-s0.safetensors", "da-s0.safetensors", "slot.json", "slot.log"]
    summary = json.loads((out / "slot.json").read_text())
    assert summary["common_step"] == 4
    kd, da = summary["runs"]["da-kd-s0"], summary["runs"]["da-s0"]
    assert kd["config"]["kd"] == "agkd,cgkd" and "d/agkd" in kd["losses"][0]
    assert da["config"]["teacher"] == "" and "d/agkd" not in da["losses"][0]  # DA has no KD
    assert [p["step"] for p in da["probes"]] == [2, 4] and {"rt_train", "d_test_mean"} <= set(da["probes"][0])
    r = run("score", "--slot", str(out), "--out", str(report), "--ref", str(data), "--num-gen", "16",
            "--threads", "1", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    text = (report / "report.md").read_text()
    assert "| da-kd-s0 | 4 (of 4 run)" in text and "D overfitting" in text and "Welch" in text
    assert (report / "curves.png").exists() and (report / "samples-da-s0.png").exists()


def test_bundle_reports_the_size_against_the_limit_and_names_what_is_missing(tmp_path):
    r = run(
        "bundle",
        "--data",
        str(tmp_path / "absent.zip"),
        "--teacher",
        str(tmp_path / "no-teacher"),
        "--no-wheels",
        "--dest",
        str(tmp_path / "slot"),
        cwd=tmp_path,
    )
    assert r.returncode == 1
    assert "MiB of the 64 MiB a call carries" in r.stdout
    assert "absent.zip does not exist" in r.stdout and "kdgan teacher train" in r.stdout
