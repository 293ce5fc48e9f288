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


@pytest.mark.parametrize("preset", ["tiny", "stylegan2-tiny"])
def test_cuda_graph_steps_replay_what_eager_steps_compute(tmp_path, preset):
    """issue 23, cuda_graphs: whole steps captured as CUDA graphs replay without a host sync and
    compute what the same steps compute eagerly: the CPU suite's emulated path (capture=False:
    the same batches, the same order of random draws) on the same GPU, whose draws a graph makes
    from the same generator state. Each preset's two keys are captured, then replayed again in
    turn (fresh draws per replay; two graphs sharing one memory pool)."""
    from kdgan.training.graphs import StepGraphs
    from tests.unit.test_ada import tiny_faces
    from tests.unit.test_cuda_graphs import BIGGAN, STYLEGAN2

    fields = {**(BIGGAN if preset == "tiny" else STYLEGAN2), "device": "cuda"}
    data = tiny_faces() if preset != "tiny" else tiny_data()
    # tiny: keys from G step 3 alternate (lazy R1), captured at steps 7 and 8; stylegan2-tiny:
    # keys alternate from step 1 (separate R1 and path length), captured at steps 5 and 6
    steps = 11 if preset == "tiny" else 9

    def run(capture: bool, where: str) -> tuple[Trainer, list[dict], torch.Tensor]:
        t = Trainer(resolve(preset, fields), tmp_path / where, dataset=data)
        t.graphs = StepGraphs(t, capture=capture)
        logs = [t.train_step()]
        torch.cuda.synchronize()
        # the path without captures waits for nothing (a capture itself synchronises once)
        torch.cuda.set_sync_debug_mode(0 if capture else "error")
        try:
            logs += [t.train_step() for _ in range(steps - 1)]
        finally:
            torch.cuda.set_sync_debug_mode(0)
        with torch.no_grad():  # G's images, not its weights: biases that feed only BatchNorm
            z, labels, _ = t.grid_latents()  # get rounding noise that Adam turns into steps
            images = t.G(z.to(t.device), labels.to(t.device)).float().cpu()
        return t, [{k: v.float().cpu() for k, v in step.items()} for step in logs], images

    deterministic = torch.backends.cudnn.deterministic
    torch.backends.cudnn.deterministic = True  # both runs pick the same, deterministic kernels
    try:
        eager, eager_logs, eager_images = run(False, "eager")
        graphed, graphed_logs, graphed_images = run(True, "graphed")
        g = graphed.graphs
        assert not g.failed and g.captures == 2 and g.replays >= g.captures + 2, (g.failed, g.captures,
                                                                                  g.replays)
        for step, (a, b) in enumerate(zip(eager_logs, graphed_logs, strict=True)):
            assert list(a) == list(b), step
            for k in a:
                torch.testing.assert_close(b[k], a[k], rtol=1e-3, atol=1e-4, msg=f"step {step}, {k}")
        torch.testing.assert_close(graphed_images, eager_images, rtol=1e-3, atol=1e-3)
        replays = g.replays
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")  # replays alone: every key is captured by now
        try:
            for _ in range(2):
                graphed.train_step()
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert g.replays == replays + 2 and g.captures == 2
    finally:
        torch.backends.cudnn.deterministic = deterministic


def test_cuda_graphs_run_checkpoints_and_resumes(tmp_path):
    """A run with cuda_graphs=true trains, saves, and resumes (the resume captures its graphs anew)."""
    fields = {"data": "in-memory", "device": "cuda", "lecam_weight": 0.1, "cuda_graphs": True,
              "steps": 5, "ckpt_every_steps": 5}
    t = Trainer(resolve("tiny", fields), tmp_path, dataset=tiny_data())
    assert t.graphs is not None and t.compute["cuda_graphs"] is True
    assert t.run()["step"] == 5 and t.graphs.replays == 3  # 2 eager warm-up steps, then replays
    t = Trainer(resolve("tiny", {**fields, "steps": 10}), tmp_path, dataset=tiny_data())
    summary = t.run()
    assert summary["resumed_from"] == 5 and summary["step"] == 10 and t.graphs.replays == 3
    assert all(torch.isfinite(p).all() for p in t.G.parameters())
