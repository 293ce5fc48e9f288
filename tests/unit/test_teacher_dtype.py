"""teacher_dtype: the frozen teacher's dtype (auto: fp16 on a GPU, fp32 on a CPU; bf16 on a CPU
with native bfloat16 runs a ViT-B/32 teacher about 2.2x faster), a speed setting a run may change
on resume, recorded in the compute setting."""

from __future__ import annotations

import logging

import pytest
import torch

from kdgan.config import resolve
from kdgan.errors import KdganError
from kdgan.training.loop import Trainer, describe_compute_change
from tests.unit.test_checkpoint import tiny_data

FIELDS = {"data": "in-memory", "device": "cpu", "teacher": "clip-tiny-random", "kd": "agkd,cgkd", "steps": 2,
          "ckpt_every_steps": 2}


def test_bf16_teacher_trains_and_keeps_its_features_close_to_fp32(tmp_path):
    t32 = Trainer(resolve("tiny", FIELDS), tmp_path / "a", dataset=tiny_data())
    t16 = Trainer(resolve("tiny", {**FIELDS, "teacher_dtype": "bf16"}), tmp_path / "b", dataset=tiny_data())
    assert t32.teacher.dtype == torch.float32 and t32.compute["teacher_dtype"] == "float32"
    assert t16.teacher.dtype == torch.bfloat16 and t16.compute["teacher_dtype"] == "bfloat16"
    x = torch.rand(8, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        a, b = t32.teacher.image_features(x), t16.teacher.image_features(x)
    assert b.dtype == torch.float32  # features come back in fp32 whatever the teacher's dtype
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.999
    logs = t16.train_step()
    assert all(torch.isfinite(v).all() for v in logs.values())


def test_a_vision_aided_backbone_is_not_the_bf16_teacher(tmp_path):
    """The vision-aided D computes in fp32 as released: it shares the KD teacher only in fp32."""
    fields = {**FIELDS, "vision_aided": "clip-tiny-random"}
    t = Trainer(resolve("tiny", {**fields, "teacher_dtype": "bf16"}), tmp_path / "a", dataset=tiny_data())
    assert t.objective.vision_aided.backbone is not t.teacher
    assert t.objective.vision_aided.backbone.dtype == torch.float32
    t = Trainer(resolve("tiny", fields), tmp_path / "b", dataset=tiny_data())
    assert t.objective.vision_aided.backbone is t.teacher


def test_resume_with_another_teacher_dtype_goes_on_and_says_so(tmp_path, caplog):
    Trainer(resolve("tiny", FIELDS), tmp_path, dataset=tiny_data()).run()
    cfg = resolve("tiny", {**FIELDS, "steps": 3, "teacher_dtype": "bf16"})
    t = Trainer(cfg, tmp_path, dataset=tiny_data())
    with caplog.at_level(logging.WARNING):
        assert t.run()["resumed_from"] == 2
    assert "teacher_dtype 'float32' -> 'bfloat16'" in caplog.text


def test_checkpoints_from_before_the_field_compare_against_what_they_ran():
    now = {"device": "cpu", "teacher_dtype": "bfloat16"}
    assert describe_compute_change({"device": "cpu"}, now) == "teacher_dtype 'float32' -> 'bfloat16'"
    now = {"device": "cuda", "teacher_dtype": "float16"}
    assert describe_compute_change({"device": "cuda"}, now) == ""


def test_an_unknown_teacher_dtype_is_refused():
    with pytest.raises(KdganError, match="teacher_dtype must be auto, fp32, fp16 or bf16"):
        resolve("tiny", {**FIELDS, "teacher_dtype": "int8"})
