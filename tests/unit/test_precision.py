"""The GPU's mixed-precision paths, exercised on the CPU: bf16 / fp16 autocast training steps, half
teachers inside autocast, R1 through ADA under autocast, channels_last inputs.

These failed on the first H100 run (teachers in half precision met bf16 activations; ADA's
grid_sample backward got mixed dtypes under autocast) and now run in the default suite, so such
bugs surface without a GPU.
"""

from __future__ import annotations

import functools

import pytest
import torch

import kdgan.training.loop as loop
from kdgan.augment.ada import ADAugment
from kdgan.config import resolve
from kdgan.nets import build_discriminator, build_generator
from kdgan.teachers import build_teacher
from kdgan.training.loop import Trainer
from tests.unit.test_checkpoint import tiny_data


@pytest.fixture
def half_teachers(monkeypatch):
    """Teachers in half precision, as on a GPU (build_teacher uses fp32 on the CPU)."""
    monkeypatch.setattr(loop, "build_teacher", functools.partial(build_teacher, half=True))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_biggan_kd_steps_in_mixed_precision_with_a_half_teacher(tmp_path, half_teachers, precision):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "precision": precision, "steps": 2,
                           "teacher": "clip-tiny-random", "kd": "agkd,cgkd", "lecam_weight": 0.3})
    t = Trainer(cfg, tmp_path, dataset=tiny_data())
    assert t.teacher.dtype == torch.float16
    assert t.run()["step"] == 2
    assert all(torch.isfinite(p).all() for p in [*t.G.parameters(), *t.D.parameters()])
    logs = t.train_step()
    assert torch.isfinite(logs["d/agkd"]) and torch.isfinite(logs["d/cgkd"])


def test_stylegan2_ada_r1_kd_steps_in_bf16(tmp_path, half_teachers):
    from tests.unit.test_ada import sg2_config, tiny_faces

    cfg = sg2_config(device="cpu", precision="bf16", teacher="clip-tiny-random", prompts="faces", steps=2,
                     pl_every=1, r1_every=1, ada="bgc", ada_p=0.8, ada_target=0.0)
    t = Trainer(cfg, tmp_path, dataset=tiny_faces())
    assert t.run()["step"] == 2
    assert all(torch.isfinite(p).all() for p in [*t.G.parameters(), *t.D.parameters()])


def test_teacher_features_ignore_autocast_and_half_matches_float():
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    full = build_teacher("clip-tiny-random", half=False)
    half = build_teacher("clip-tiny-random", half=True)
    ref = full.image_features(x)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(full.image_features(x), ref)  # runs in its own fp32, not in bf16
        out = half.image_features(x)
    assert out.dtype == torch.float32
    assert torch.allclose(out, ref, atol=5e-2 * ref.abs().max().item())


def test_ada_r1_double_backward_under_autocast():
    torch.manual_seed(0)
    x = torch.rand(4, 3, 16, 16, requires_grad=True)
    conv = torch.nn.Conv2d(3, 1, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = ADAugment("bgc")(x, p=1.0)
        logits = conv(y).flatten(1).mean(1)
    (grad,) = torch.autograd.grad(logits.float().sum(), x, create_graph=True)
    grad.square().sum().backward()
    assert grad.dtype == x.dtype and torch.isfinite(conv.weight.grad).all()


@pytest.mark.parametrize("arch", ["biggan", "stylegan2"])
def test_channels_last_inputs_give_the_same_outputs(arch):
    torch.manual_seed(0)
    if arch == "biggan":
        D = build_discriminator({"arch": "biggan", "c_dim": 3, "img_resolution": 32, "ch": 4, "kd_dim": 8})
        G = build_generator({"arch": "biggan", "z_dim": 8, "c_dim": 3, "img_resolution": 32, "ch": 4})
    else:
        common = {"arch": "stylegan2", "c_dim": 0, "img_resolution": 16, "channel_base": 64,
                  "channel_max": 16}
        D = build_discriminator({**common, "kd_dim": 8, "mbstd_group": 2})
        G = build_generator({**common, "z_dim": 8, "w_dim": 8, "mapping_layers": 2})
    D.eval()
    x = torch.rand(4, 3, D.config["img_resolution"], D.config["img_resolution"]) * 2 - 1
    labels = torch.zeros(4, dtype=torch.long)
    a = D(x, labels)
    b = D(x.contiguous(memory_format=torch.channels_last), labels)
    assert torch.allclose(a, b, atol=1e-5)
    G.eval()
    z = torch.randn(4, 8)
    assert torch.isfinite(G(z, labels)).all()


@pytest.mark.slow
def test_compiled_g_and_d_compute_what_eager_does(tmp_path):
    """--set compile=true: G and D compiled give the eager outputs (within float rounding), the
    training losses follow the eager run's, and checkpoints keep the plain modules' keys.
    (Parameters after Adam steps are not compared: Adam turns rounding-level differences in
    near-zero gradients into +-lr steps.)"""
    def trainer(compile_: bool, folder):
        cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 3, "compile": compile_,
                               "teacher": "clip-tiny-random", "kd": "agkd", "log_every_steps": 1})
        return Trainer(cfg, folder, dataset=tiny_data())

    compiled = trainer(True, tmp_path / "compiled")
    assert compiled.G_fast is not compiled.G  # the compiled views are what the objective gets
    g = torch.Generator().manual_seed(0)  # a private stream: the run's RNG stream stays the eager run's
    z = torch.randn(8, compiled.cfg.z_dim, generator=g)
    labels = torch.randint(0, compiled.c_dim, (8,), generator=g)
    compiled.G.eval(), compiled.D.eval()  # no BatchNorm / spectral-norm state updates here
    with torch.no_grad():
        x = compiled.G(z, labels)
        assert torch.allclose(compiled.G_fast(z, labels), x, atol=1e-3)
        assert torch.allclose(compiled.D_fast(x, labels), compiled.D(x, labels), rtol=1e-3, atol=1e-3)
    compiled.G.train(), compiled.D.train()
    compiled.run()
    eager = trainer(False, tmp_path / "eager")
    eager.run()

    def losses(folder):
        import json

        recs = [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]
        return [(r["d/hinge_real"], r["d/agkd"], r["g/hinge"]) for r in recs if "d/agkd" in r]

    for a, b in zip(losses(tmp_path / "eager"), losses(tmp_path / "compiled"), strict=True):
        assert a == pytest.approx(b, rel=2e-2, abs=1e-3)
    from kdgan.training.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "compiled" / "checkpoints" / "ckpt-000000003.pt")
    assert not any("_orig_mod" in k for k in ckpt["nets"]["G"]["state"])
    assert ckpt["nets"]["G"]["state"].keys() == eager.G.state_dict().keys()


@pytest.mark.parametrize("native", [True, False])
def test_bf16_on_a_cpu_without_native_bfloat16_warns_with_the_fix(tmp_path, monkeypatch, caplog, native):
    monkeypatch.setattr(loop, "_cpu_has_fast_bf16", lambda: native)
    caplog.set_level("WARNING", logger="kdgan")
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "precision": "bf16"})
    Trainer(cfg, tmp_path, dataset=tiny_data())
    warned = "--set precision=fp32" in caplog.text
    assert warned is not native


def _conv_weights(net):
    return [p for p in net.parameters() if p.dim() == 4]


def test_memory_format_auto_is_channels_last_for_biggan_and_nchw_for_stylegan2(tmp_path):
    t = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu"}), tmp_path / "b", dataset=tiny_data())
    for net in (t.G, t.D, t.G_ema):
        assert all(w.is_contiguous(memory_format=torch.channels_last) for w in _conv_weights(net))
    assert t.compute["memory_format"] == "channels_last" and t.compute["adam"] == "fused"
    out = t.G(torch.randn(2, 8), torch.zeros(2, dtype=torch.long))
    assert out.is_contiguous(memory_format=torch.channels_last)
    t.run()  # the export is written as plain contiguous tensors (safetensors needs them)
    from kdgan.nets import load_generator

    assert all(w.is_contiguous() for w in _conv_weights(load_generator(tmp_path / "b" / "export")))
    sg = resolve("stylegan2-tiny", {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4})
    from tests.unit.test_ada import tiny_faces

    assert Trainer(sg, tmp_path / "s", dataset=tiny_faces()).compute["memory_format"] == "contiguous"


def test_channels_last_and_nchw_agree_to_float_rounding(tmp_path):
    """The layout changes the order of the convolutions' sums, not what is computed: D(G(z))
    and every weight gradient of the first D step's loss agree to float rounding."""
    runs = {}
    for fmt in ("channels_last", "contiguous"):
        cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "memory_format": fmt, "g_ch": 8,
                               "d_ch": 8})
        t = Trainer(cfg, tmp_path / fmt, dataset=tiny_data())
        torch.manual_seed(1)
        real, labels, idx = t.real_batch(0)
        terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, 0)
        total = sum(terms.values())
        total.backward()
        runs[fmt] = (total.detach(), [p.grad.clone() for p in t.D.parameters() if p.grad is not None])
    (loss_a, grads_a), (loss_b, grads_b) = runs["channels_last"], runs["contiguous"]
    torch.testing.assert_close(loss_a, loss_b, rtol=1e-5, atol=1e-6)
    assert len(grads_a) == len(grads_b) > 10
    for a, b in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.abs().max()))
