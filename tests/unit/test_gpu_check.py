"""The GPU check's dry mode: without CUDA it skips every CUDA part with one line each and still
writes its output folder; every command it would run on a GPU names a script, flags and presets
that exist, so a rare GPU session is not spent on a typo."""

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
    cmds = [(label, argv, timeout) for quick in (False, True) for part in mod.PARTS
            for label, argv, timeout in mod.commands(part, tmp_path / "data.zip", tmp_path, quick)]
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
