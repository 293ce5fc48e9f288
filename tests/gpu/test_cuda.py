"""CUDA paths: run with `pytest -m gpu` on a machine with a GPU (skipped elsewhere)."""

import pytest
import torch

from kdgan.config import resolve
from kdgan.training.loop import Trainer
from tests.unit.test_checkpoint import tiny_data

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
@pytest.mark.parametrize("teacher,kd,clip_on", [("", "", "augmented"),
                                                 ("clip-tiny-random", "agkd,cgkd", "augmented"),
                                                 ("clip-tiny-random", "agkd,cgkd", "clean"),
                                                 ("inception", "agkd", "augmented")])
def test_training_steps_on_cuda(tmp_path, precision, teacher, kd, clip_on):
    fields = {"data": "in-memory", "device": "cuda", "precision": precision, "teacher": teacher,
              "kd": kd or "agkd,cgkd", "clip_on": clip_on, "lecam_weight": 0.3, "steps": 2}
    t = Trainer(resolve("tiny", fields), tmp_path, dataset=tiny_data())
    assert t.images.is_cuda  # small data sets live on the GPU
    if t.teacher is not None:
        assert t.teacher.dtype == torch.float16  # the teacher runs in half precision on a GPU
    summary = t.run()
    assert summary["step"] == 2
    assert all(torch.isfinite(p).all() for p in t.G.parameters())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_stylegan2_ada_apa_kd_steps_on_cuda(tmp_path, precision):
    from tests.unit.test_ada import sg2_config, tiny_faces

    cfg = sg2_config(device="cuda", precision=precision, teacher="clip-tiny-random", prompts="faces",
                     steps=4, pl_every=1, r1_every=1)
    t = Trainer(cfg, tmp_path, dataset=tiny_faces())
    summary = t.run()
    assert summary["step"] == 4 and t.ada_p.p.is_cuda
    assert all(torch.isfinite(p).all() for p in [*t.G.parameters(), *t.D.parameters()])


@pytest.mark.parametrize("half", [False, True])
def test_vision_aided_backbone_is_fp32_as_released_unless_asked(tmp_path, half):
    # issue 26: upstream runs the vision-aided CLIP in fp32; the KD teacher stays in fp16 on a GPU
    fields = {"data": "in-memory", "device": "cuda", "teacher": "clip-tiny-random", "kd": "agkd,cgkd",
              "vision_aided": "clip-tiny-random", "vision_aided_half": half, "steps": 1}
    t = Trainer(resolve("tiny", fields), tmp_path, dataset=tiny_data())
    backbone = t.objective.vision_aided.backbone
    assert backbone.dtype == (torch.float16 if half else torch.float32)
    assert t.teacher.dtype == torch.float16 and (backbone is t.teacher) == half
    assert t.run()["step"] == 1


@pytest.mark.parametrize("preset", ["tiny", "stylegan2-tiny"])
def test_training_steps_never_wait_for_the_gpu(tmp_path, preset):
    """issue 23: no host sync inside a step (the CPU suite checks the same ops with HostSyncs);
    torch.cuda.set_sync_debug_mode('error') raises at the first one."""
    from tests.unit.test_ada import tiny_faces

    fields = {"data": "in-memory", "device": "cuda", "teacher": "clip-tiny-random", "kd": "agkd,cgkd",
              "lecam_weight": 0.1}
    if preset == "stylegan2-tiny":
        fields.update(resolution=16, batch_size=4, prompts="faces")
    t = Trainer(resolve(preset, fields), tmp_path, dataset=tiny_faces() if preset != "tiny" else tiny_data())
    t.train_step()  # set-up (cuDNN autotuning, the first permutation)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(4):  # StyleGAN2 tiny: R1 and path length every 2 steps
            t.train_step()
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
