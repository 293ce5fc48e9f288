"""AKDG compression: who sees what, shared z for MSE, a frozen teacher, sizes, R1."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kdgan import config as config_lib
from kdgan.augment import DiffAugment
from kdgan.compress import compress_fields, count_macs_per_image, count_parameters, weights_sha256
from kdgan.errors import KdganError
from kdgan.losses.regularizers import r1_penalty
from kdgan.nets import build_generator, save_generator
from kdgan.training.loop import Trainer
from kdgan.training.objectives import Discriminators, DistillObjective

from ..conftest import write_image_folder


class ConstantGenerator(nn.Module):
    """Images filled with `value` (+ a tiny trainable offset); records every z and label it gets."""

    def __init__(self, value: float, z_dim: int = 4, c_dim: int = 2):
        super().__init__()
        self.value, self.z_dim, self.c_dim, self.img_resolution = value, z_dim, c_dim, 8
        self.offset = nn.Parameter(torch.zeros(()))
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, z, labels):
        self.calls.append((z.clone(), labels.clone()))
        return torch.full((z.shape[0], 3, 8, 8), self.value) + self.offset + 0 * z.sum()


class RecordingD(nn.Module):
    """logits = mean pixel value of each image; records the images and labels it sees."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))
        self.config = {"arch": "recording"}
        self.seen: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, images, labels):
        self.seen.append((images.detach().clone(), labels.clone()))
        return self.scale * images.flatten(1).mean(1)


def _objective(method: str, teacher: nn.Module) -> DistillObjective:
    return DistillObjective(method, teacher, "ns", DiffAugment(""), z_dim=4, c_dim=2, r1_gamma=10.0)


def test_dkd_sees_teacher_as_real_and_student_as_fake_with_independent_z():
    teacher, student = ConstantGenerator(0.5), ConstantGenerator(-0.5)
    D = Discriminators({"data": RecordingD(), "kd": RecordingD()})
    real = torch.full((3, 3, 8, 8), 0.9)
    terms, _ = _objective("akdg", teacher).d_terms(student, D, real, torch.tensor([0, 1, 1]))
    kd_images, _ = D["kd"].seen[0]
    data_images, _ = D["data"].seen[0]
    fake_kd, real_kd = kd_images.split([3, 3])
    assert torch.all(fake_kd == -0.5) and torch.all(real_kd == 0.5)  # student fake, teacher real
    fake_data, real_data = data_images.split([3, 3])
    assert torch.all(fake_data == -0.5) and torch.all(real_data == 0.9)  # D_S: data real
    (z_teacher, _), (z_student, _) = teacher.calls[0], student.calls[0]
    assert not torch.allclose(z_teacher, z_student)  # z' independent of z
    assert set(terms) == {f"{d}/{t}" for d in ("d_data", "d_kd") for t in ("ns_real", "ns_fake", "r1")}
    # the student's loss uses both discriminators, D_KD weighted by lambda
    g_terms, _ = _objective("akdg", teacher).g_terms(student, D, 3, torch.device("cpu"))
    assert set(g_terms) == {"g/ns_data", "g/ns_kd"}


def test_mse_uses_the_same_z_and_labels_and_needs_no_discriminator():
    teacher, student = ConstantGenerator(0.5), ConstantGenerator(-0.5)
    terms, _ = _objective("mse", teacher).g_terms(student, Discriminators({}), 4, torch.device("cpu"))
    (z_t, y_t), (z_s, y_s) = teacher.calls[0], student.calls[0]
    assert torch.equal(z_t, z_s) and torch.equal(y_t, y_s)
    assert set(terms) == {"g/mse"} and terms["g/mse"].item() == pytest.approx(1.0)  # (0.5 - -0.5)^2
    mixed, _ = DistillObjective("mse+adv", teacher, "ns", DiffAugment(""), 4, 2, mse_alpha=0.25).g_terms(
        student, Discriminators({"data": RecordingD()}), 4, torch.device("cpu"))
    assert mixed["g/mse"].item() == pytest.approx(0.25)
    logits = torch.full((4,), -0.5)  # RecordingD on the student's images
    assert mixed["g/ns_data"].item() == pytest.approx(0.75 * nn.functional.softplus(-logits).mean().item())


def test_vanilla_trains_on_data_only():
    teacher, student = ConstantGenerator(0.5), ConstantGenerator(-0.5)
    D = Discriminators({"data": RecordingD()})
    real = torch.zeros(2, 3, 8, 8)
    terms, _ = _objective("vanilla", teacher).d_terms(student, D, real, torch.zeros(2).long())
    g_terms, _ = _objective("vanilla", teacher).g_terms(student, D, 2, torch.device("cpu"))
    assert teacher.calls == [] and set(g_terms) == {"g/ns_data"} and "d_kd/ns_real" not in terms


def test_r1_matches_finite_differences():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Tanh(), nn.Linear(5, 1)).double()
    x = torch.randn(3, 3, 2, 2, dtype=torch.float64, requires_grad=True)
    value = r1_penalty(net(x).squeeze(1), x)
    eps, total = 1e-6, 0.0
    for i in range(3):
        flat = x.detach()[i].flatten()
        for j in range(flat.numel()):
            up, down = flat.clone(), flat.clone()
            up[j] += eps
            down[j] -= eps
            f = lambda v: net(v.view(1, 3, 2, 2)).item()  # noqa: E731
            total += ((f(up) - f(down)) / (2 * eps)) ** 2
    assert value.item() == pytest.approx(total / 3, rel=1e-6)
    value.backward()  # create_graph: the penalty trains the network
    assert net[1].weight.grad is not None


def test_parameter_and_multiply_add_counts_equal_hand_counts():
    G = build_generator({"arch": "dcgan", "z_dim": 4, "c_dim": 0, "img_resolution": 8, "ch": 16})
    # linear 4 -> 16*4*4 (+bias); BN 16 (gain, bias); conv3x3 16 -> 8 (+bias); BN 8; conv3x3 8 -> 3 (+bias)
    assert count_parameters(G) == (4 * 256 + 256) + 2 * 16 + (16 * 8 * 9 + 8) + 2 * 8 + (8 * 3 * 9 + 3)
    # linear 4*256; conv at 8x8: 64 px * 8 out * 16 in * 9; out conv: 64 px * 3 * 8 * 9
    assert count_macs_per_image(G) == 4 * 256 + 64 * 8 * 16 * 9 + 64 * 3 * 8 * 9
    # the AKDG paper's students at 32 px: DCGAN 2.6M params / 229M mult-adds, MLP 2.2M params
    dcgan = build_generator({"arch": "dcgan", "z_dim": 128, "c_dim": 0, "img_resolution": 32, "ch": 512})
    assert count_parameters(dcgan) == 2_609_155 and count_macs_per_image(dcgan) == 229_310_464
    mlp = build_generator({"arch": "mlp", "z_dim": 128, "c_dim": 0, "img_resolution": 32, "ch": 512})
    assert count_parameters(mlp) == 2_170_368
    assert count_macs_per_image(mlp) == 128 * 512 + 2 * 512 * 512 + 512 * 3072


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
def test_students_shapes_range_and_conditioning(arch):
    G = build_generator({"arch": arch, "z_dim": 8, "c_dim": 3, "img_resolution": 16, "ch": 32})
    out = G(torch.randn(5, 8), torch.tensor([0, 1, 2, 0, 1]))
    assert out.shape == (5, 3, 16, 16) and out.abs().max() <= 1
    G2 = build_generator(dict(G.config))
    G2.load_state_dict(G.state_dict())  # rebuilt from its config


def _teacher(tmp_path, seed: int = 0):
    torch.manual_seed(seed)
    G = build_generator({"arch": "biggan", "z_dim": 8, "c_dim": 2, "img_resolution": 32, "ch": 4})
    return save_generator(tmp_path / f"teacher{seed}", G.state_dict(), G.config, {"d_ch": 4},
                          ["cat", "dog"], 0)


def _cfg(tmp_path, teacher, method="akdg", **extra):
    fields = compress_fields(str(teacher), "dcgan", 1 / 32, method)
    fields.update({"data": str(write_image_folder(tmp_path / "imgs", {"cat": 6, "dog": 6})),
                   "batch_size": 4, "steps": 1, "device": "cpu", "ema_start_steps": 0, **extra})
    return config_lib.resolve(None, fields)


@pytest.mark.parametrize("method", ["akdg", "mse"])
def test_teacher_gets_no_gradient_is_unchanged_and_not_in_the_checkpoint(tmp_path, method):
    teacher = _teacher(tmp_path)
    trainer = Trainer(_cfg(tmp_path, teacher, method), tmp_path / "run")
    before = {k: v.clone() for k, v in trainer.G_teacher.state_dict().items()}
    student_before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.train_step()
    assert all(p.grad is None and not p.requires_grad for p in trainer.G_teacher.parameters())
    assert all(torch.equal(v, trainer.G_teacher.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(a, b) for a, b in zip(student_before, trainer.G.parameters(), strict=True))
    state = trainer.state_dict()
    assert set(state["nets"]) == {"G", "D", "G_ema"}
    assert state["compress"]["teacher_sha256"] == weights_sha256(trainer.G_teacher)
    assert set(trainer.D) == set(DistillObjective.MEMBERS[method])
    assert (trainer.opt_D is None) == (method == "mse")


def test_resume_refuses_a_different_teacher(tmp_path):
    teacher = _teacher(tmp_path, 0)
    trainer = Trainer(_cfg(tmp_path, teacher), tmp_path / "run")
    trainer.run()
    other = _teacher(tmp_path, 1)
    (tmp_path / "teacher0" / "G_ema.safetensors").write_bytes(other.read_bytes())
    with pytest.raises(KdganError, match="different teacher generator"):
        Trainer(_cfg(tmp_path, teacher, steps=2), tmp_path / "run").run()


def test_compress_fields_follow_the_teacher_and_refuse_bad_students(tmp_path):
    teacher = _teacher(tmp_path)
    f = compress_fields(str(teacher), "same", 0.5, "akdg")
    assert (f["arch"], f["g_ch"], f["z_dim"], f["resolution"], f["d_ch"]) == ("biggan", 2, 8, 32, 4)
    assert compress_fields(str(teacher), "dcgan", 0.5, "akdg")["g_ch"] == 256
    assert compress_fields(str(teacher), "mlp", 0.25, "mse")["g_ch"] == 128
    with pytest.raises(KdganError, match="--width"):
        compress_fields(str(teacher), "dcgan", 0.0, "akdg")
    with pytest.raises(KdganError, match="does not exist"):
        compress_fields(str(tmp_path / "nope.pt"), "dcgan", 1.0, "akdg")
    with pytest.raises(KdganError, match="z_dim"):
        Trainer(_cfg(tmp_path, teacher, z_dim=16), tmp_path / "bad")


def test_stylegan2_teacher_compresses_into_a_narrower_stylegan2_with_the_teachers_d(tmp_path):
    torch.manual_seed(0)
    net = {"arch": "stylegan2", "z_dim": 8, "c_dim": 0, "img_resolution": 32, "w_dim": 8,
           "channel_base": 256, "channel_max": 32, "mapping_layers": 2}
    G_t = build_generator(net)
    teacher = save_generator(tmp_path / "sg2", G_t.state_dict(), G_t.config,
                             {"channel_base": 256, "channel_max": 32, "mbstd_group": 2}, [], 0)
    f = compress_fields(str(teacher), "same", 0.5, "akdg")
    assert (f["arch"], f["channel_base"], f["channel_max"]) == ("stylegan2", 128, 16)
    assert (f["d_channel_base"], f["d_channel_max"], f["w_dim"], f["mapping_layers"]) == (256, 32, 8, 2)
    f.update({"data": str(write_image_folder(tmp_path / "imgs", {"x": 8}, size=32)), "batch_size": 4,
              "steps": 1, "device": "cpu", "ema_start_steps": 0})
    trainer = Trainer(config_lib.resolve(None, f), tmp_path / "run")
    assert count_parameters(trainer.G) < count_parameters(G_t) / 2
    for member in trainer.D.values():  # D_S and D_KD keep the teacher run's discriminator widths
        assert (member.config["channel_base"], member.config["channel_max"]) == (256, 32)
    before = [p.detach().clone() for p in trainer.G.parameters()]
    trainer.train_step()
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.G.parameters(), strict=True))
    with pytest.raises(KdganError, match="different family"):
        compress_fields(str(teacher), "biggan", 0.5, "akdg")
    f = compress_fields(str(teacher), "dcgan", 1 / 32, "akdg")  # the paper's student family too
    f.update({"data": str(tmp_path / "imgs"), "batch_size": 4, "steps": 1, "device": "cpu",
              "ema_start_steps": 0})
    trainer = Trainer(config_lib.resolve(None, f), tmp_path / "run-dcgan")
    assert trainer.G.config["arch"] == "dcgan" and trainer.G(torch.randn(2, 8), None).shape == (2, 3, 32, 32)
    trainer.train_step()


def _biggan_teacher(tmp_path, ch, z_dim=64, c_dim=0):
    torch.manual_seed(0)
    G = build_generator({"arch": "biggan", "z_dim": z_dim, "c_dim": c_dim, "img_resolution": 32, "ch": ch})
    return G, save_generator(tmp_path / f"teacher-ch{ch}", G.state_dict(), G.config, {"d_ch": ch}, [], 0)


def _size(fields):
    config = {"arch": fields["arch"], "z_dim": fields["z_dim"], "c_dim": 0, "img_resolution": 32,
              "ch": fields["g_ch"]}
    G = build_generator(config)
    return count_parameters(G), count_macs_per_image(G)


@pytest.mark.parametrize("student", ["dcgan", "mlp", "same"])
def test_default_student_is_the_widest_smaller_than_the_teacher(tmp_path, student, caplog):
    G_t, teacher = _biggan_teacher(tmp_path, 16)  # the demo's teacher: 303k parameters, 106M mult-adds
    t_params, t_macs = count_parameters(G_t), count_macs_per_image(G_t)
    caplog.set_level("INFO", logger="kdgan")
    auto = compress_fields(str(teacher), student, None, "akdg")
    params, macs = _size(auto)
    assert params < t_params and macs < t_macs
    assert "(auto: the widest with fewer parameters and multiply-adds" in caplog.text
    chosen = float(caplog.text.split("--width ")[1].split()[0])
    wider = _size(compress_fields(str(teacher), student, 2 * chosen, "akdg"))
    assert wider[0] >= t_params or wider[1] >= t_macs  # twice as wide would not be smaller
    assert "is not smaller than the teacher" in caplog.text  # the explicit wider one was warned about
    if student == "dcgan":
        assert chosen == 0.25 and auto["g_ch"] == 128


def test_no_smaller_student_is_refused_with_the_fix(tmp_path):
    _, teacher = _biggan_teacher(tmp_path, 1, z_dim=2)
    with pytest.raises(KdganError, match="no --student mlp width .* than this teacher.*--student same"):
        compress_fields(str(teacher), "mlp", None, "akdg")


def test_report_wording_says_slower_when_the_student_is_slower():
    from kdgan.compress import format_report

    row = {"arch": "biggan", "width": "ch 16", "parameters": 1000, "macs_per_image": 10_000}
    quality = {"protocol": "fewshot", "generated": {"num_images": 10, "seeds": [0]}, "notes": [],
               "reference": {"num_images": 10, "source": "lfw-faces", "split": "all",
                             "content_sha256": "0" * 64},
               "feature_extractor": "x", "resize": "y"}
    report = {"run": "/r", "step": 1, "method": "akdg", "teacher": "t", "teacher_sha256": "0" * 64,
              "devices": {"cpu": "CPU"}, "grid": "/r/samples/g.png", "quality": {"teacher": quality},
              "rows": {"teacher": {**row, "cpu/latency_ms_b1": 5.0, "cpu/throughput_b256": 100.0},
                       "student": {**row, "cpu/latency_ms_b1": 7.05, "cpu/throughput_b256": 71.0}}}
    md = format_report(report)
    assert "| 1.41x slower |" in md and "| 1.41x slower |" in md.split("throughput")[1]
    assert "faster" not in md and "0.71x" not in md
    assert "(lfw-faces, all images, sha256" in md


def test_report_is_checked_before_training_and_falls_back_without_a_test_split(tmp_path, caplog):
    from kdgan.compress import report_settings

    flat = write_image_folder(tmp_path / "flat", {"x": 4})  # no split folders
    split = tmp_path / "split"
    write_image_folder(split / "train", {"a": 2})
    write_image_folder(split / "test", {"a": 2})
    cfg = config_lib.resolve(None, {"data": str(flat / "x")})
    caplog.set_level("INFO", logger="kdgan")
    proto, source = report_settings(cfg)
    assert (proto.name, proto.ref_split, source) == ("fewshot", "train", str(flat / "x"))
    assert "report uses protocol fewshot instead" in caplog.text
    caplog.clear()  # `kdgan compress` says it once, at the check before training, not in the report
    assert report_settings(cfg, announce=False)[0].name == "fewshot" and "fewshot" not in caplog.text
    assert report_settings(cfg, ref=str(split))[0].name == "cifar"  # the reference has test/
    assert report_settings(config_lib.resolve(None, {"data": "cifar10"}))[0].name == "cifar"  # not loaded
    assert report_settings(cfg, "custom", 8)[0].num_gen == 8
    refusals = [({"protocol": "cifar"}, "--report-ref DATA"), ({"ref_split": "test"}, "--report-ref"),
                ({"protocol": "custom"}, "--report-num-gen N")]
    for kwargs, flag in refusals:
        with pytest.raises(KdganError, match=flag):
            report_settings(cfg, **kwargs)
    with pytest.raises(KdganError, match="does not exist"):
        report_settings(cfg, ref=str(tmp_path / "missing"))
