import copy
import hashlib
import json

import numpy as np
import pytest
import torch

from kdgan import load_generator
from kdgan.config import RESUMABLE_FIELDS, resolve
from kdgan.data import ImageSet
from kdgan.errors import KdganError, TrainingDiverged
from kdgan.training.checkpoint import FORMAT, CheckpointManager, load_checkpoint, save_atomic
from kdgan.training.loop import Trainer, describe_compute_change
from kdgan.utils.seed import set_rng_state


def tiny_data(n=24, classes=3):
    rng = np.random.default_rng(0)
    return ImageSet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8),
                    rng.integers(0, classes, n), [f"c{i}" for i in range(classes)])


def tiny_trainer(run_dir, **overrides):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", **overrides})
    return Trainer(cfg, run_dir, dataset=tiny_data())


def assert_same_state(a, b):
    for name in ("G", "D", "G_ema"):
        sa, sb = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), f"{name}.{k}"


def test_round_trip_is_bit_exact_and_continues_identically(tmp_path):
    a = tiny_trainer(tmp_path / "a")
    for _ in range(2):
        a.train_step()
    save_atomic(a.state_dict(), tmp_path / "c.pt")
    b = tiny_trainer(tmp_path / "b")
    ckpt = load_checkpoint(tmp_path / "c.pt")
    b.load_state_dict(ckpt)
    assert b.step == 2
    assert_same_state(a, b)
    assert a.opt_D.state_dict()["state"][0]["exp_avg"].equal(b.opt_D.state_dict()["state"][0]["exp_avg"])
    a.train_step()
    set_rng_state(ckpt["rng"][0])  # both trainers share this process's RNG: rewind it for b
    b.train_step()  # same RNG stream, same data order: the same next step
    assert_same_state(a, b)


class Payload:
    """An arbitrary object: unpickling it would run code of its class."""


def test_loading_is_weights_only(tmp_path):
    torch.save({"format": FORMAT, "evil": Payload()}, tmp_path / "x.pt")
    with pytest.raises(KdganError, match="not a readable kdgan checkpoint"):
        load_checkpoint(tmp_path / "x.pt")
    torch.save({"just": "a dict"}, tmp_path / "y.pt")
    with pytest.raises(KdganError, match="not a kdgan checkpoint"):
        load_checkpoint(tmp_path / "y.pt")


def test_rotation_keeps_last_k_and_damaged_newest_falls_back(tmp_path):
    m = CheckpointManager(tmp_path, keep=3)
    for step in range(1, 6):
        m.save({"format": FORMAT, "step": step}, step)
    assert m.steps() == [3, 4, 5]
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]
    m.path(5).write_bytes(b"garbage")
    assert m.load_latest()["step"] == 4
    assert m.save_best({"format": FORMAT, "step": 4}, "fid", 10.0)
    assert not m.save_best({"format": FORMAT, "step": 5}, "fid", 12.0)
    assert m.save_best({"format": FORMAT, "step": 6}, "fid", 9.0)
    assert load_checkpoint(tmp_path / "best.pt")["step"] == 6


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    t = tiny_trainer(tmp_path, steps=2)
    t.run()
    good = t.ckpts.path(2).read_bytes()
    t2 = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 4}), tmp_path,
                 dataset=tiny_data())
    t2.G.linear.parametrizations.weight.original.data.fill_(float("nan"))
    t2.ckpts.load_latest = lambda: None  # start from the poisoned weights, not the checkpoint
    with pytest.raises(TrainingDiverged, match="non-finite loss.*last good checkpoint is .*ckpt-000000002"):
        t2.run()
    assert t2.ckpts.steps() == [2]
    assert hashlib.sha256(t2.ckpts.path(2).read_bytes()).digest() == hashlib.sha256(good).digest()


def test_resume_refuses_a_different_config(tmp_path):
    tiny_trainer(tmp_path, steps=2).run()
    with pytest.raises(KdganError, match=r"different config \(g_lr"):
        tiny_trainer(tmp_path, steps=4, g_lr=1e-3).run()
    assert tiny_trainer(tmp_path, steps=3).run()["resumed_from"] == 2  # length may change


def test_resume_in_another_compute_setting_warns_and_goes_on(tmp_path, caplog):
    t = tiny_trainer(tmp_path, steps=2)
    t.run()
    ckpt = load_checkpoint(t.ckpts.path(2))
    assert ckpt["compute"]["cpu_threads"] == torch.get_num_threads() and ckpt["compute"]["device"] == "cpu"
    with caplog.at_level("WARNING", logger="kdgan"):
        tiny_trainer(tmp_path, steps=3).load_state_dict(ckpt)
    assert "another compute setting" not in caplog.text  # same setting: silent
    ckpt["compute"]["cpu_threads"] = torch.get_num_threads() + 3
    with caplog.at_level("WARNING", logger="kdgan"):
        resumed = tiny_trainer(tmp_path, steps=3)
        resumed.load_state_dict(ckpt)
    assert resumed.step == 2
    assert f"cpu_threads {torch.get_num_threads() + 3} -> {torch.get_num_threads()}" in caplog.text
    assert "OMP_NUM_THREADS" in caplog.text
    gpu = {"torch": "2", "device": "cuda", "world_size": 1, "gpu": "H100", "cpu_threads": 1}
    assert describe_compute_change(gpu, {**gpu, "cpu_threads": 8}) == ""  # threads: CPU runs only
    assert describe_compute_change(gpu, {**gpu, "world_size": 2}) == "world_size 1 -> 2"
    assert "device 'cuda' -> 'cpu'" in describe_compute_change(gpu, {**gpu, "device": "cpu"})
    # a checkpoint from before the fused Adam and channels_last: the same step, other float rounding
    now = resumed.compute
    before = {k: v for k, v in now.items() if k not in ("adam", "memory_format")}
    assert describe_compute_change(before, now) == ("adam 'default' -> 'fused'; "
                                                    "memory_format 'contiguous' -> 'channels_last'")
    del ckpt["compute"]  # a checkpoint from before this field: nothing to compare, silent
    caplog.clear()
    with caplog.at_level("WARNING", logger="kdgan"):
        tiny_trainer(tmp_path, steps=3).load_state_dict(ckpt)
    assert "another compute setting" not in caplog.text


def test_checkpoint_from_before_a_new_config_field_still_resumes(tmp_path):
    t = tiny_trainer(tmp_path, steps=2)
    t.run()
    ckpt = load_checkpoint(t.ckpts.path(2))
    for newer in ("ada", "apa", "r1_every", "w_dim"):  # fields an older release did not write
        del ckpt["config"][newer]
    resumed = tiny_trainer(tmp_path, steps=3)
    resumed.load_state_dict(ckpt)
    assert resumed.step == 2


def test_export_and_load_generator_agree(tmp_path):
    t = tiny_trainer(tmp_path, steps=2)
    summary = t.run()
    z, y = torch.randn(4, 8), torch.tensor([0, 1, 2, 0])
    outs = [load_generator(p)(z, y) for p in
            (summary["checkpoint"], summary["export"], tmp_path / "export")]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert load_generator(tmp_path / "export").c_dim == 3


def test_seeding_is_deterministic(tmp_path):
    trainers = []
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):  # one after another: they share the global RNG
        t = tiny_trainer(tmp_path / name, seed=seed)
        t.train_step()
        t.train_step()
        trainers.append(t)
    a, b, c = trainers
    assert_same_state(a, b)
    weight = lambda t: t.G.linear.parametrizations.weight.original  # noqa: E731
    assert not torch.equal(weight(a), weight(c))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_run_and_stay_finite(tmp_path, precision):
    t = tiny_trainer(tmp_path, precision=precision)
    logs = t.train_step()
    assert all(torch.isfinite(v) for v in logs.values())
    assert all(p.dtype == torch.float32 for p in t.G.parameters())  # master weights stay fp32
    assert t.scalers["D"].is_enabled() == (precision == "fp16")


def test_checkpoints_by_wall_time_as_well_as_by_steps(tmp_path, monkeypatch):
    from kdgan.training import loop

    t = tiny_trainer(tmp_path, steps=10, ckpt_every_steps=1000, ckpt_every_minutes=30, keep_ckpts=20,
                     log_every_steps=4)
    monkeypatch.setattr(loop, "_clock", lambda: t.step * 600.0)  # every G step takes 10 minutes
    t.run()
    assert t.ckpts.steps() == [3, 6, 9, 10]  # 30 minutes after the start or the last checkpoint, and the end
    off = tiny_trainer(tmp_path / "off", steps=10, ckpt_every_steps=1000, ckpt_every_minutes=0)
    monkeypatch.setattr(loop, "_clock", lambda: off.step * 600.0)
    off.run()
    assert off.ckpts.steps() == [10]
    assert "ckpt_every_minutes" in RESUMABLE_FIELDS  # changing it on resume is allowed
    with pytest.raises(KdganError, match="ckpt_every_minutes must be >= 0"):
        resolve("tiny", {"ckpt_every_minutes": -1})


def test_demo_kd_teacher_input_size_is_dropped_for_another_teacher_unless_given():
    assert resolve("demo-kd", {}).teacher_resolution == 75  # the inception teacher at its smallest input
    assert resolve("demo-kd", {"teacher": "inception"}).teacher_resolution == 75  # same teacher: kept
    assert resolve("demo-kd", {"teacher": "clip"}).teacher_resolution == 0  # CLIP has no such field
    assert resolve("demo-kd", {"teacher": "torchvision:resnet18"}).teacher_resolution == 0
    given = resolve("demo-kd", {"teacher": "torchvision:resnet18", "teacher_resolution": 112})
    assert given.teacher_resolution == 112
    with pytest.raises(KdganError, match="teacher_resolution is the input size"):
        resolve("demo-kd", {"teacher": "clip", "teacher_resolution": 75})


def test_config_records_effective_teacher_model_and_conditional_and_old_runs_resume(tmp_path):
    assert resolve("demo-kd", {}).teacher_model == ""  # the inception teacher has no model choice
    assert resolve("demo-kd", {"teacher": "clip"}).teacher_model == "ViT-B-32"
    assert resolve("demo-kd", {"teacher": "clip", "teacher_model": "RN50"}).teacher_model == "RN50"
    with pytest.raises(KdganError, match="drop --teacher-model"):
        resolve("demo-kd", {"teacher_model": "ViT-L-14"})
    unlabelled = ImageSet(tiny_data().images)
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 2})
    assert cfg.conditional  # asked for; the data has no labels
    t = Trainer(cfg, tmp_path, dataset=unlabelled)
    t.run()
    written = json.loads((tmp_path / "config.json").read_text())
    assert written["conditional"] is False and written["teacher_model"] == ""
    ckpt = load_checkpoint(t.ckpts.path(2))
    assert ckpt["config"]["conditional"] is False
    ckpt["config"].update(conditional=True, teacher_model="ViT-B-32")  # as earlier versions wrote it
    again = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 3}), tmp_path,
                    dataset=unlabelled)
    again.load_state_dict(ckpt)
    assert again.step == 2


def test_resume_in_another_layout_or_from_before_fused_adam_steps_as_an_unbroken_run(tmp_path):
    """memory_format may change on resume: Adam's moments are put in the parameters' layout (the
    fused kernel reads them as laid out like the parameter), and a checkpoint from before the
    fused Adam (its param groups say fused None) resumes with this run's fused Adam."""
    t = tiny_trainer(tmp_path / "a", memory_format="contiguous", steps=1)
    t.run()
    ckpt = load_checkpoint(t.ckpts.path(1))
    old = copy.deepcopy(ckpt)
    for group in old["optim"]["D"]["param_groups"] + old["optim"]["G"]["param_groups"]:
        group["fused"] = None
    after = {}
    for name, fmt, saved in (("same", "contiguous", ckpt), ("nhwc", "channels_last", ckpt),
                             ("old", "channels_last", old)):
        r = tiny_trainer(tmp_path / name, memory_format=fmt, steps=2)
        r.load_state_dict(copy.deepcopy(saved))
        assert all(g["fused"] is True for g in r.opt_D.param_groups + r.opt_G.param_groups)
        g = torch.Generator().manual_seed(5)
        for p in r.D.parameters():
            p.grad = torch.empty_like(p).copy_(torch.randn(p.shape, generator=g))
        r.opt_D.step()
        after[name] = [p.detach().clone() for p in r.D.parameters()]
    for name in ("nhwc", "old"):
        assert all(torch.equal(a, b) for a, b in zip(after["same"], after[name], strict=True)), name
