"""Validate and measure everything CUDA-only in one command, in parts that each fit a 10-minute slot.

    python benchmarks/gpu_check.py --out gpu-check [--parts tests,speed,steps,profile,compile,metrics,compare]
                                   [--data ../shared/data/cifar10-jpeg-10pct.zip] [--quick]
                                   [--nvlabs PATH --kddlgan PATH]

Parts (minutes on one H100, measured; see docs/gpu.md):
  env      versions, GPU, driver (always)
  tests    pytest -m gpu: training steps on CUDA in fp32 / bf16 / fp16, every teacher in half precision
  speed    issue 23's ratios in at most 8 minutes (450 s of command limits): the FIR derivatives and
           bias + lrelu at 256 px, then benchmarks/anchors.py, kdgan against NVlabs/stylegan2-ada-pytorch
           and cuikaiwen18/KD_DLGAN side by side (R1, main step, its memory, path length, s/kimg;
           BigGAN-CIFAR eager, bf16 and cuda_graphs against the released code). The checkouts come
           from --nvlabs / --kddlgan, else from .carry/anchors/ when a GPU call carried them there;
           without them, kdgan's BigGAN-CIFAR step eager against cuda_graphs
  steps    kdgan's own steps: BigGAN-CIFAR layouts / bf16 / CUDA graphs, KD-DLGAN overhead (CLIP
           ViT-B/32 shape; target <= 1.5x DA), StyleGAN2 256 px s/kimg (fp32, bf16), AKDG teacher vs students
  profile  torch.profiler top operators of the BigGAN and StyleGAN2 steps
  compile  the BigGAN and StyleGAN2 steps with torch.compile of G and D
  metrics  Inception feature extraction and N-vs-N FID wall time (needs --data)
  compare  a short DA vs DA + KD comparison on --data with `kdgan compare` (3 seeds, runs side by side)

Each part runs its commands as subprocesses (one failure does not stop the others), writes
<part>.log, and appends its result lines to results.md (ready to paste into the README) and
results.json. Without a CUDA device every CUDA part is skipped with one line saying so, and the
output folder is still written (a dry run of the check itself). `--quick` shortens every part
(fewer steps and repeats) to fit a tight GPU budget.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "cifar10-jpeg-10pct.zip"
PARTS = ("env", "tests", "speed", "steps", "profile", "compile", "metrics", "compare")
# limits of the speed part's commands, seconds: 450 in all, inside the 8 minutes issue 23 allows
# (anchors.py measured 173 s on an H200 before its CUDA-graph rows, 22-24 s of it building
# NVlabs' CUDA ops)
SPEED_LIMITS = {"fir": 75, "bias_act": 45, "anchors": 330}
CARRIED_ANCHORS = (ROOT / ".carry/anchors/stylegan2-ada-pytorch", ROOT / ".carry/anchors/KD_DLGAN")


def commands(part: str, data: Path, out: Path, quick: bool,
             anchors: tuple[Path, Path] | None = None) -> list[tuple[str, list[str], int]]:
    """(label, argv, timeout seconds) of each command of a part; `anchors`: the NVlabs and KD_DLGAN
    checkouts that the speed part compares kdgan against (benchmarks/anchors.py, run first)."""
    py = sys.executable

    def bench(label: str, script: str, args: str, timeout: int) -> tuple[str, list[str], int]:
        return label, [py, str(ROOT / "benchmarks" / script), "--device", "cuda", *args.split()], timeout

    r = "3" if quick else "5"
    if part == "tests":
        return [("pytest -m gpu", [py, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                                   str(ROOT / "tests" / "gpu")], 540)]
    if part == "speed":  # issue 23's ratios against the anchors: one call of at most 8 minutes
        size = "--resolution 256 --channel-base 32768 --batch 16 --repeats 3"
        cmds = [bench("FIR derivatives", "fir_derivatives.py", size, SPEED_LIMITS["fir"]),
                bench("bias_act", "bias_act.py", size, SPEED_LIMITS["bias_act"])]
        if anchors is not None:
            nvlabs, kddlgan = anchors
            label, argv, limit = bench("anchors", "anchors.py", "", SPEED_LIMITS["anchors"])
            cmds.append((label, [*argv, "--nvlabs", str(nvlabs), "--kddlgan", str(kddlgan),
                                 "--json", str(out / "anchors.json")], limit))
        else:  # kdgan's side alone: the BigGAN-CIFAR step eager and as CUDA graphs
            cmds.append(bench("train_step eager vs cuda_graphs", "train_step.py",
                              f"--steps 5 --repeats {r} --vs cuda_graphs=true "
                              "--vs cuda_graphs=true,precision=bf16", SPEED_LIMITS["anchors"]))
        return cmds
    if part == "steps":  # kdgan's own step timings: layouts, precisions, KD overhead, StyleGAN2, AKDG
        sg2 = f"--steps 16 --repeats {'2 --teacher none' if quick else '3'}"
        cmds = [bench("train_step layouts, bf16, CUDA graphs", "train_step.py",
                      f"--steps 5 --repeats {r} --set memory_format=contiguous "
                      "--vs memory_format=channels_last "
                      "--vs memory_format=channels_last,precision=bf16 "
                      "--vs memory_format=channels_last,cuda_graphs=true", 180)]
        cmds += [bench(f"kd_overhead {p}", "kd_overhead.py", f"--precision {p} --steps 5 --repeats 3", 150)
                 for p in ("fp32", "bf16")]
        cmds += [bench(f"stylegan2 {p}", "stylegan2_step.py", f"--precision {p} {sg2}", 240)
                 for p in ("fp32", "bf16")]
        if not quick:
            cmds.append(bench("compress", "compress.py", "", 120))
        return cmds
    if part == "profile":
        runs = [("biggan-cifar10-10pct-da", "fp32"), ("stylegan2-obama-da", "fp32"),
                ("stylegan2-obama-da", "bf16")]
        return [bench(f"profile {preset} {p}", "profile_step.py",
                      f"--preset {preset} --precision {p} --steps 3 --top 20", 150)
                for preset, p in runs[: 2 if quick else 3]]
    if part == "compile":
        return [bench("train_step fp32 compiled, CUDA graphs", "train_step.py",
                      f"--steps 5 --repeats {r} --vs compile=true "
                      "--vs compile=true,compile_mode=reduce-overhead", 300),
                bench("stylegan2 fp32 compiled", "stylegan2_step.py",
                      "--compile --teacher none --steps 16 --repeats 2", 300)]
    if part == "metrics":
        return [bench("metrics 5k", "metrics.py", "--num 5000", 300)]
    if part == "compare":
        steps, seeds = ("300", "0,1") if quick else ("2000", "0,1,2")
        return [("compare DA vs DA+KD", [
            py, "-m", "kdgan.cli", "compare", "--outdir", str(out / "compare"),
            "--arm", "da=biggan-cifar10-10pct-da", "--arm", "da-kd=biggan-cifar10-10pct-da teacher=inception",
            "--seeds", seeds, "--steps", steps, "--data", str(data), "--device", "cuda",
            "--set", "data_fraction=1.0", "--protocol", "cifar", "--num-gen", "5000",
            "--metrics", "kid,fid,pr", "--jobs", "6", "--inception", "tf-torchscript"], 590)]
    return []


def carried_wheels(wheels: Path = ROOT / ".whl", target: Path = Path("/tmp/kdgan-wheels")) -> str:
    """A GPU call carries kdgan's missing dependencies as wheels in .whl/ (docs/gpu.md): install
    them (no index, no network) into `target` once, and return it for the commands' PYTHONPATH;
    '' when there are none or they are importable already."""
    found = sorted(wheels.glob("*.whl"))
    if not found or importlib.util.find_spec("open_clip") is not None:
        return ""
    if not (target / ".installed").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps",
                        "--no-compile", "--target", str(target), *map(str, found)], check=True, timeout=300)
        (target / ".installed").write_text("\n".join(w.name for w in found))
    print(f"installed {len(found)} carried wheels into {target}", flush=True)
    return str(target)


def needs_cuda(part: str) -> bool:
    return part != "env"


def run_part(part: str, data: Path, out: Path, quick: bool, cuda: bool,
             anchors: tuple[Path, Path] | None = None, site: str = "") -> dict:
    """Run one part; its log goes to <part>.log; returns {status, seconds, lines}."""
    if part == "env":
        return {"status": "ok", "seconds": 0.0, "lines": env_lines()}
    if needs_cuda(part) and not cuda:
        line = f"{part}: skipped, no CUDA device visible (run this part on a GPU machine)"
        print(line, flush=True)
        return {"status": "skipped", "seconds": 0.0, "lines": [line]}
    if part in ("metrics", "compare") and not data.exists():
        line = f"{part}: skipped, --data {data} does not exist (copy cifar10-jpeg-10pct.zip there)"
        print(line, flush=True)
        return {"status": "skipped", "seconds": 0.0, "lines": [line]}
    lines, status, t_part = [], "ok", time.perf_counter()
    env = {
        **os.environ,
        "PYTHONUNBUFFERED": "1",
        "KDGAN_OFFLINE": os.environ.get("KDGAN_OFFLINE", "1"),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), *([site] if site else []),
                                       os.environ.get("PYTHONPATH", "")]),
    }
    with open(out / f"{part}.log", "a") as logf:
        for label, argv, timeout in commands(part, data, out, quick, anchors):
            print(f"[{part}] {label} ...", flush=True)
            logf.write(f"\n$ {' '.join(argv)}\n")
            logf.flush()
            t0 = time.perf_counter()
            try:
                proc = subprocess.run(
                    argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
                )
                text, rc = proc.stdout + proc.stderr, proc.returncode
            except subprocess.TimeoutExpired as e:
                text = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
                text += f"\n(timed out after {timeout} s)"
                rc = 124
            logf.write(text)
            dt = time.perf_counter() - t0
            results = result_lines(part, text)
            if rc != 0:
                status = "failed"
                results.append(
                    f"FAILED ({'timeout' if rc == 124 else f'exit {rc}'}): {label}; see {part}.log"
                )
            for line in results:
                print(f"  {line}", flush=True)
            lines += [f"{label} ({dt:.0f} s):"] + [f"  {x}" for x in results]
    return {"status": status, "seconds": time.perf_counter() - t_part, "lines": lines}


def result_lines(part: str, text: str) -> list[str]:
    """The lines worth keeping from a command's output."""
    keep = []
    for line in text.splitlines():
        s = line.strip()
        if part == "tests" and (" passed" in s or " failed" in s or s.startswith("FAILED")):
            keep.append(s)
        elif part in ("speed", "steps", "compile", "metrics") and (
            any(k in s for k in (" on ", "s/kimg", "img/s", "ratio", "per G step"))
            or s.startswith(("teacher", "student", "network", "anchors:", "train_step:", "fir", "bias"))
        ):
            keep.append(s)
        elif part == "profile" and s and not s.startswith("---"):
            keep.append(s)
        elif part == "compare" and ("|" in s or s.startswith(("report", "error"))):
            keep.append(s)
    return keep


def env_lines() -> list[str]:
    import torch

    lines = [
        f"python {platform.python_version()}, torch {torch.__version__}, CUDA build {torch.version.cuda}"
    ]
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        lines.append(
            f"GPU {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs, "
            f"cuDNN {torch.backends.cudnn.version()}, TF32 conv {torch.backends.cudnn.allow_tf32}, "
            f"TF32 matmul {torch.backends.cuda.matmul.allow_tf32}"
        )
        try:
            smi = subprocess.run(
                ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout.strip()
            lines.append(f"driver {smi}")
        except (OSError, subprocess.TimeoutExpired):
            pass
    else:
        lines.append("no CUDA device visible")
    lines.append(f"CPU threads {torch.get_num_threads()}, {platform.machine()}")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="gpu-check", help="output folder (results.md, results.json, logs)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"comma list of {', '.join(PARTS)}")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="cifar10-jpeg-10pct.zip (metrics, compare)")
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats, for a tight GPU budget")
    p.add_argument("--nvlabs", default="", help="NVlabs/stylegan2-ada-pytorch checkout (speed: anchors.py)")
    p.add_argument("--kddlgan", default="", help="cuikaiwen18/KD_DLGAN checkout (speed: anchors.py)")
    args = p.parse_args()
    if bool(args.nvlabs) != bool(args.kddlgan):
        sys.exit("--nvlabs and --kddlgan go together (benchmarks/anchors.py compares against both)")
    anchors = (Path(args.nvlabs).resolve(), Path(args.kddlgan).resolve()) if args.nvlabs else None
    if anchors is None and all(x.is_dir() for x in CARRIED_ANCHORS):
        anchors = CARRIED_ANCHORS  # what docs/gpu.md has a GPU call carry
    parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    bad = [x for x in parts if x not in PARTS]
    if bad:
        sys.exit(f"unknown part(s) {', '.join(bad)}; choose from {', '.join(PARTS)}")
    if "env" not in parts:
        parts.insert(0, "env")
    import torch

    cuda = torch.cuda.is_available()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not cuda:
        print("no CUDA device visible: CUDA parts are skipped (dry run of the check)", flush=True)
    site = carried_wheels() if cuda else ""
    results_path = out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}
    for part in parts:
        res = run_part(part, Path(args.data), out, args.quick, cuda, anchors, site)
        res["when"] = time.strftime("%Y-%m-%d %H:%M:%S")
        results[part] = res
        results_path.write_text(json.dumps(results, indent=2))
        write_markdown(out, results)
    failed = [k for k, v in results.items() if v["status"] == "failed"]
    print(
        f"wrote {out / 'results.md'} and {results_path}"
        + (f"; FAILED parts: {', '.join(failed)}" if failed else "")
    )
    sys.exit(1 if failed else 0)


def write_markdown(out: Path, results: dict) -> None:
    lines = ["# GPU check", ""]
    for part, res in results.items():
        lines += [f"## {part}: {res['status']} ({res['seconds']:.0f} s, {res.get('when', '')})", "", "```"]
        lines += res["lines"]
        lines += ["```", ""]
    (out / "results.md").write_text("\n".join(lines))


if __name__ == "__main__":
    main()
