"""The GPU check's dry mode: without CUDA it skips every CUDA part with one line each and still
writes its output folder; every command it would run on a GPU names a script, flags and presets
that exist, so a rare GPU session is not spent on a typo. The anchors benchmark's dry mode lists
its measurements without a GPU or the anchors' checkouts."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
ANCHORS = ROOT / "benchmarks" / "anchors.py"
CHECKOUTS = {"nvlabs": os.environ.get("KDGAN_NVLABS", ""), "kddlgan": os.environ.get("KDGAN_KDDLGAN", "")}


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KDGAN_OFFLINE": "1"}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


def test_dry_mode_skips_each_cuda_part_in_one_line_and_writes_its_folder(tmp_path):
    out = tmp_path / "gpu-check"
    proc = _run("--out", str(out), "--quick", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "no CUDA device visible: CUDA parts are skipped (dry run of the check)" in proc.stdout
    mod = _gpu_check()
    for part in mod.PARTS[1:]:
        lines = [x for x in proc.stdout.splitlines() if x.startswith(f"{part}: skipped")]
        assert len(lines) == 1, (part, proc.stdout)
    results = json.loads((out / "results.json").read_text())
    assert results["env"]["status"] == "ok"
    assert any("torch" in x for x in results["env"]["lines"])
    statuses = {k: v["status"] for k, v in results.items() if k != "env"}
    assert statuses == dict.fromkeys(mod.PARTS[1:], "skipped")
    md = (out / "results.md").read_text()
    assert md.startswith("# GPU check") and "## compare: skipped" in md
    # a second call adds to the same folder instead of losing what is there
    proc = _run("--out", str(out), "--parts", "metrics", cwd=tmp_path)
    assert proc.returncode == 0
    assert set(json.loads((out / "results.json").read_text())) == set(mod.PARTS)


def test_unknown_part_is_refused_naming_the_choices(tmp_path):
    proc = _run("--out", str(tmp_path / "o"), "--parts", "speed,bogus", cwd=tmp_path)
    assert proc.returncode != 0
    assert "unknown part(s) bogus; choose from env, tests, speed" in proc.stderr


def _helps(argvs: dict[str, list[str]]) -> dict[str, str]:
    """--help of each command, started side by side (each imports torch: seconds apiece)."""
    procs = {k: subprocess.Popen([*a, "--help"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True) for k, a in argvs.items()}
    return {k: p.communicate(timeout=300)[0] for k, p in procs.items()}


@pytest.mark.slow  # seven --help calls, each importing torch
def test_every_command_names_a_script_flags_and_presets_that_exist(tmp_path):
    from kdgan.config import PRESETS

    mod = _gpu_check()
    anchors = (tmp_path / "stylegan2-ada-pytorch", tmp_path / "KD_DLGAN")
    cmds = [(label, argv, timeout) for quick in (False, True) for part in mod.PARTS
            for label, argv, timeout in mod.commands(part, tmp_path / "data.zip", tmp_path, quick, anchors)]
    keyed, to_help = [], {}
    for label, argv, timeout in cmds:
        assert 0 < timeout <= 600, label  # each command fits one 10-minute device call
        if argv[1:3] == ["-m", "pytest"]:
            assert Path(argv[-1]).is_dir(), label
            continue
        if argv[1:3] == ["-m", "kdgan.cli"]:
            key = f"kdgan {argv[3]}"
            to_help[key] = [sys.executable, "-m", "kdgan.cli", argv[3]]
            for arm in [argv[i + 1] for i, a in enumerate(argv) if a == "--arm"]:
                preset = arm.split("=", 1)[1].split()[0]
                assert preset in PRESETS, (label, preset)
        else:
            script = Path(argv[1])
            assert script.is_file(), label
            key = script.name
            to_help[key] = [sys.executable, str(script)]
        keyed.append((key, label, argv))
    helps = _helps(to_help)
    for key, label, argv in keyed:
        for flag in (a for a in argv[2:] if re.match(r"--[a-z]", a)):
            assert flag in helps[key], (label, flag)


def _anchors(*args: str) -> subprocess.Popen:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "KDGAN_OFFLINE": "1"}
    return subprocess.Popen([sys.executable, str(ANCHORS), *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def test_anchors_dry_mode_lists_each_measurement_without_a_gpu_or_the_checkouts():
    procs = {"dry": _anchors("--dry"), "no checkouts": _anchors()}  # side by side: each imports torch
    outs = {k: (p.communicate(timeout=120)[0], p.returncode) for k, p in procs.items()}
    for key, (text, rc) in outs.items():
        assert rc == 0, (key, text)
        assert "dry run" in text and "nothing is run" in text, text
        lines = [x.strip() for x in text.splitlines() if x.strip().startswith("would measure:")]
        # the real run's measurements: StyleGAN2 at the preset's 256 px, then BigGAN-CIFAR
        for what in ("256px fp32 main step", "256px fp32 R1 step", "256px fp32 path-length step",
                     "peak GPU memory of the main step", "activations autograd keeps",
                     "s/kimg = (main + R1 / 16 + PL / 4) x 62.5",
                     "mixed-precision main step", "BigGAN-CIFAR DA (ch 64, batch 50, 4 D steps",
                     "target >= 3x", "launch a kernel and host syncs", "kdgan in bf16 autocast",
                     "+ KD-DLGAN", "cuda_graphs=true"):
            assert sum(what in x for x in lines) >= 1, (key, what, text)
        # 6 StyleGAN2 fp32, 1 mixed, 5 BigGAN-CIFAR (fp32, ops, bf16, CUDA graphs, KD)
        assert len(lines) == 12, text
    assert "no --nvlabs / --kddlgan checkout given" in outs["no checkouts"][0]


def test_speed_part_fits_8_minutes_and_runs_anchors_when_both_checkouts_are_given(tmp_path):
    """issue 23: `--parts speed` produces every ratio in one call of at most 8 minutes."""
    mod = _gpu_check()
    nv, kd = tmp_path / "stylegan2-ada-pytorch", tmp_path / "KD_DLGAN"
    for quick in (False, True):
        plain = mod.commands("speed", tmp_path / "d.zip", tmp_path, quick)
        assert all(Path(argv[1]).name != "anchors.py" for _, argv, _ in plain)
        assert "cuda_graphs=true" in " ".join(plain[-1][1])  # kdgan's side alone, eager vs graphs
        cmds = mod.commands("speed", tmp_path / "d.zip", tmp_path, quick, (nv, kd))
        assert sum(limit for _, _, limit in cmds) <= 480
        label, argv, _ = cmds[-1]
        assert label == "anchors" and Path(argv[1]) == ANCHORS
        assert argv[2:] == ["--device", "cuda", "--nvlabs", str(nv), "--kddlgan", str(kd),
                            "--json", str(tmp_path / "anchors.json")]
        assert [Path(a[1]).name for _, a, _ in cmds[:-1]] == ["fir_derivatives.py", "bias_act.py"]
        assert cmds[:-1] == plain[:-1]
    assert mod.result_lines("speed", "anchors: NVlabs ops: CUDA plugins (...)\nnoise\n") == [
        "anchors: NVlabs ops: CUDA plugins (...)"]
    proc = _run("--out", str(tmp_path / "o"), "--parts", "speed", "--nvlabs", str(nv), cwd=tmp_path)
    assert proc.returncode != 0 and "--nvlabs and --kddlgan go together" in proc.stderr


@pytest.mark.skipif(not all(CHECKOUTS.values()),
                    reason="needs the anchors' checkouts: set KDGAN_NVLABS (NVlabs/stylegan2-ada-pytorch) "
                           "and KDGAN_KDDLGAN (cuikaiwen18/KD_DLGAN)")
def test_anchors_tiny_cpu_run_against_the_checkouts(tmp_path):
    """End to end on the CPU (about 25 s on one thread): both anchors imported from their checkouts,
    NVlabs on its reference ops, every measurement printed and written to the JSON."""
    out = tmp_path / "anchors.json"
    proc = _anchors("--device", "cpu", "--threads", "1", "--nvlabs", CHECKOUTS["nvlabs"], "--kddlgan",
                    CHECKOUTS["kddlgan"], "--json", str(out))
    text = proc.communicate(timeout=600)[0]
    assert proc.returncode == 0, text
    assert "NVlabs ops: reference ops" in text
    for what in ("fp32 main step", "fp32 R1 step", "fp32 path-length step", "s/kimg", "activations kept",
                 "BigGAN-CIFAR (tiny) DA", "ops that launch a kernel", "DA + KD-DLGAN"):
        assert what in text, (what, text)
    res = json.loads(out.read_text())
    sg2 = res["stylegan2"]["fp32"]
    assert sg2["kdgan"]["params_G"] == sg2["nvlabs"]["params_G"]  # the same networks' sizes on both sides
    assert sg2["kdgan"]["params_D"] == sg2["nvlabs"]["params_D"]
    assert res["biggan"]["da"]["throughput_ratio"] > 0 and res["biggan"]["da_kd"]["throughput_ratio"] > 0
    assert res["biggan"]["da"]["kdgan_ops"] > 0 and res["biggan"]["da"]["released_ops"] > 0
    assert res["biggan"]["da"]["kdgan_syncs"] == 0  # the released step reads its losses with .item()
    assert res["biggan"]["da"]["released_syncs"] > 0 and res["biggan"]["da_bf16"]["kdgan_s"] > 0
