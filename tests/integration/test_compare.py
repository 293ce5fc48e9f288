"""`kdgan compare`: arms x seeds as ordinary runs, report / curves / samples, resume, shards, budgets.

The feature network is swapped for a tiny fixed random one, so the test checks the comparison's
bookkeeping in seconds; the metrics themselves are tested against references in test_metrics.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from torch import nn

import kdgan.metrics
from kdgan import compare as cmp
from kdgan.cli import cli
from kdgan.errors import KdganError
from kdgan.metrics.inception import InceptionFeatures
from tests.conftest import write_image_folder


class _TinyFeatures(nn.Module):
    """uint8 (B, 3, H, W) -> (B, 2048): pooled to 4x4, a fixed random projection."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(48, 2048)
        with torch.no_grad():
            self.proj.weight.copy_(torch.randn(2048, 48, generator=torch.Generator().manual_seed(0)))
            self.proj.bias.zero_()

    def forward(self, x):
        x = nn.functional.adaptive_avg_pool2d(x.float() / 255, 4).flatten(1)
        return (self.proj(x),)


@pytest.fixture
def fast_metrics(monkeypatch, tmp_path):
    monkeypatch.setenv("KDGAN_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(kdgan.metrics, "load_inception",
                        lambda kind="auto", device="cpu": InceptionFeatures(_TinyFeatures(), "test-tiny",
                                                                            False, torch.device(device)))


def _args(out, data, steps=2, seeds="0,1", extra=()):
    return ["compare", "--outdir", str(out), "--arm", "da=tiny", "--arm", "kd=tiny teacher=clip-tiny-random",
            "--seeds", seeds, "--steps", str(steps), "--data", str(data), "--device", "cpu",
            "--eval-every", "1", "--eval-num-gen", "12", "--protocol", "custom", "--num-gen", "24",
            "--metrics", "kid,pr", *extra]


def test_two_arms_two_seeds_report_curves_samples_and_resume(tmp_path, fast_metrics):
    data = write_image_folder(tmp_path / "data", {"cat": 12, "dog": 12})
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, _args(out, data), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for arm in ("da", "kd"):
        for seed in (0, 1):
            folder = out / "runs" / arm / f"seed{seed}"
            final = json.loads((folder / cmp.FINAL_FILE).read_text())
            assert final["step"] == 2 and final["seed"] == seed and final["arm"] == arm
            assert json.loads((folder / "config.json").read_text())["seed"] == seed
            assert (folder / "export" / "G_ema.safetensors").exists()
    report = (out / "report.md").read_text()
    assert "Made by" in report and "--arm 'kd=tiny teacher=clip-tiny-random'" in report
    assert "| da | " in report and "| kd | " in report and "Runs finished: 4 of 4" in report
    assert "better in" in report and "vs da" in report
    assert ", all images)" in report and "None" not in report  # a source without split folders
    summary = json.loads((out / "report.json").read_text())["summary"]
    kid = summary["arms"]["kd"]["kid"]
    assert set(kid["values"]) == {"0", "1"} or set(kid["values"]) == {0, 1}
    vals = list(kid["values"].values())
    assert kid["mean"] == pytest.approx(sum(vals) / 2)
    base = summary["arms"]["da"]["kid"]
    assert kid["vs_base"]["diff"] == pytest.approx(kid["mean"] - base["mean"])
    assert kid["vs_base"]["pairs"] == 2
    assert (out / "curves.png").stat().st_size > 1000 and (out / "samples.png").stat().st_size > 1000
    # D's real - fake logit gap over the last quarter of each run's log, by hand for arm da
    training = json.loads((out / "report.json").read_text())["training"]
    gaps = []
    for seed in (0, 1):
        text = (out / "runs" / "da" / f"seed{seed}" / "log.jsonl").read_text()
        log = [json.loads(x) for x in text.splitlines()]
        log = [r for r in log if "stats/d_real_logit" in r]
        last = [r for r in log if r["step"] > 0.75 * log[-1]["step"]]
        gaps.append(sum(r["stats/d_real_logit"] - r["stats/d_fake_logit"] for r in last) / len(last))
    assert training["da"]["d_gap_mean"] == pytest.approx(sum(gaps) / 2)
    assert training["kd"]["train_seconds_mean"] > 0
    assert "## Training" in report and "D logit gap" in report

    # Resume: a run that lost its final evaluation and last checkpoint is redone; the others are not.
    folder = out / "runs" / "kd" / "seed1"
    (folder / cmp.FINAL_FILE).unlink()
    (folder / "checkpoints" / "ckpt-000000002.pt").unlink()
    untouched = out / "runs" / "da" / "seed0" / cmp.FINAL_FILE
    mtime = untouched.stat().st_mtime_ns
    result = CliRunner().invoke(cli, ["compare", "--outdir", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert (folder / cmp.FINAL_FILE).exists() and untouched.stat().st_mtime_ns == mtime
    assert (folder / "checkpoints" / "ckpt-000000002.pt").exists()

    # More seeds and arms appended after the existing ones extend the comparison.
    arms = [cmp.parse_arm("da=tiny"), cmp.parse_arm("kd=tiny teacher=clip-tiny-random")]
    kw = dict(common={"data": str(data), "device": "cpu"}, eval_every=1, eval_num_gen=12,
              final_protocol="custom", final_num_gen=24, final_metrics=("kid", "pr"))
    cmp.save_or_check_spec(out, cmp.make_spec([*arms, cmp.parse_arm("wide=tiny g_ch=8")], [0, 1, 2], 2, **kw))
    with pytest.raises(KdganError, match="different comparison.*arms"):  # arms must keep their order
        cmp.save_or_check_spec(out, cmp.make_spec(arms[::-1], [0, 1], 2, **kw))

    # The same folder with other arguments is refused, naming the difference.
    with pytest.raises(KdganError, match="different comparison.*steps: 2 -> 5"):
        cmp.save_or_check_spec(out, cmp.make_spec(
            [cmp.parse_arm("da=tiny"), cmp.parse_arm("kd=tiny teacher=clip-tiny-random")], [0, 1], 5,
            common={"data": str(data), "device": "cpu"}, eval_every=1, eval_num_gen=12,
            final_protocol="custom", final_num_gen=24, final_metrics=("kid", "pr")))


def test_shards_split_the_runs(tmp_path, fast_metrics):
    data = write_image_folder(tmp_path / "data", {"cat": 12, "dog": 12})
    out = tmp_path / "cmp"
    result = CliRunner().invoke(cli, _args(out, data, steps=1, extra=("--shard", "1/2")),
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    done = sorted(p.parent.relative_to(out / "runs").as_posix()
                  for p in out.glob("runs/*/*/compare-final.json"))
    assert done == ["kd/seed0", "kd/seed1"]  # runs 1 and 3 of (da 0, kd 0, da 1, kd 1)
    assert "Runs finished: 2 of 4" in (out / "report.md").read_text()


def test_time_matched_budget_gives_slower_arms_fewer_steps(tmp_path, fast_metrics):
    data = write_image_folder(tmp_path / "data", {"cat": 12, "dog": 12})
    spec = cmp.make_spec([cmp.parse_arm("small=tiny"), cmp.parse_arm("big=tiny g_ch=16 d_ch=16")], [0], 10,
                         match="time", common={"data": str(data), "device": "cpu"},
                         final_protocol="custom", final_num_gen=24)
    out = tmp_path / "cmp"
    cmp.save_or_check_spec(out, spec)
    cal = cmp.calibrate(out, spec, timed_steps=2)
    steps = cmp.arm_steps(spec, cal)
    assert steps["small"] == 10
    assert steps["big"] == max(1, round(10 * cal["small"] / cal["big"]))
    assert json.loads((out / cmp.SPEC_FILE).read_text())["calibration"] == cal  # kept for every shard


def test_arm_parsing_and_errors(tmp_path):
    arm = cmp.parse_arm("kd=demo-kd kd_every=1 'diffaugment=color,translation'")
    assert arm == cmp.Arm("kd", "demo-kd", {"kd_every": "1", "diffaugment": "color,translation"})
    assert cmp.parse_arm("base=-").preset is None
    with pytest.raises(KdganError, match="NAME=PRESET"):
        cmp.parse_arm("demo")
    with pytest.raises(KdganError, match="arm names must be distinct"):
        cmp.make_spec([cmp.parse_arm("a=tiny"), cmp.parse_arm("a=tiny")], [0], 2)
    with pytest.raises(KdganError, match="arm bad .*unknown config field"):
        cmp.make_spec([cmp.parse_arm("a=tiny"), cmp.parse_arm("bad=tiny no_such_field=1")], [0], 2)
    with pytest.raises(KdganError, match="holds no comparison"):
        cmp.load_spec(tmp_path)
