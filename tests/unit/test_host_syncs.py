"""A training step never makes the host wait for the GPU (issue 23: launch-bound steps, CUDA graphs).

`HostSyncs` finds on the CPU the operations that wait on a GPU; these tests keep the steps of
the BigGAN-CIFAR and few-shot StyleGAN2 recipes free of them. On a GPU,
tests/gpu/test_cuda.py checks the same with torch.cuda.set_sync_debug_mode.
"""

from __future__ import annotations

import pytest
import torch

from kdgan.config import resolve
from kdgan.training.loop import Trainer
from kdgan.utils.syncs import HostSyncs
from tests.unit.test_ada import tiny_faces
from tests.unit.test_checkpoint import tiny_data


def test_finds_what_waits_and_nothing_else():
    x, at = torch.arange(6.0), torch.tensor([0, 2])
    with HostSyncs() as syncs:
        y = (x * 2 + 1).relu()[at]  # arithmetic and integer gathers: no wait
        _ = y[1:].sum(), torch.where(x > 2, x, 0.0), x.repeat_interleave(2)
    assert syncs.total == 0, syncs.report()
    with HostSyncs() as syncs:
        _ = x.sum().item()
        _ = bool(x.max() > 1)
        _ = x[x > 2]  # boolean mask: a nonzero first
        _ = x.nonzero(), x.unique(), x.masked_select(x > 1)
        _ = torch.arange(3).repeat_interleave(torch.tensor([1, 2, 3]))  # data-dependent length
        _ = x.tolist(), x.numpy(), x.cpu(), torch.allclose(x, x)  # host reads
        _ = x.masked_fill(x > 2, x[0])  # a tensor fill value is read on the host
        with pytest.raises(NotImplementedError):
            torch.empty(2, device="meta").to("cpu")  # a copy from a device to the host
    ops = " ".join(syncs.sites)
    for op in ("_local_scalar_dense", "aten.index ", "aten.nonzero", "aten._unique2", "aten.masked_select",
               "aten.repeat_interleave", "aten.lift_fresh", "Tensor.tolist", "Tensor.numpy", "Tensor.cpu",
               "aten.allclose", "aten.masked_fill", "aten._to_copy"):
        assert op in ops, (op, syncs.report())
    assert "test_host_syncs.py" in ops  # names the line that asked
    assert "tolist" not in torch.Tensor.__dict__  # the host-read counters are removed again


def audited_steps(cfg, data, steps: int, tmp_path) -> HostSyncs:
    t = Trainer(cfg, tmp_path, dataset=data)
    t.train_step()  # the first step may set things up once
    with HostSyncs() as syncs:
        for _ in range(steps):
            t.train_step()
    return syncs


def test_biggan_da_and_kd_dlgan_steps_never_wait(tmp_path):
    for extra in ({}, {"teacher": "clip-tiny-random", "kd": "agkd,cgkd", "lecam_weight": 0.1}):
        cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "batch_size": 10,  # 24 images: batches
                               "diffaugment": "color,translation,cutout", **extra})  # cross epochs
        syncs = audited_steps(cfg, tiny_data(), 4, tmp_path / str(len(extra)))
        assert syncs.total == 0, syncs.report()


def test_fewshot_stylegan2_steps_with_r1_and_path_length_never_wait(tmp_path):
    cfg = resolve("stylegan2-tiny", {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4,
                                     "teacher": "clip-tiny-random", "kd": "agkd,cgkd", "prompts": "obama"})
    syncs = audited_steps(cfg, tiny_faces(), 4, tmp_path)  # r1_every = pl_every = 2: both run
    assert syncs.total == 0, syncs.report()


def test_ada_reads_p_only_when_it_moves_and_insgen_never_waits(tmp_path):
    """ADA's p decides on the host whether and how to augment, as in stylegan2-ada, which also
    reads its statistics at each adjustment: two reads per ada_every D steps, none between."""
    cfg = resolve("stylegan2-tiny", {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4,
                                     "ada": "bgc", "ada_p": 0.2, "ada_every": 4, "insgen": True,
                                     "r1_every": 4})
    syncs = audited_steps(cfg, tiny_faces(), 8, tmp_path)  # 8 D steps: two adjustments
    assert all("augment/ada.py" in site for site in syncs.sites), syncs.report()
    assert syncs.total == 4, syncs.report()


def test_can_leave_out_the_step_count_reads_of_torch_optimizers():
    """A non-fused torch optimizer reads its step counts with .item(): host tensors on CUDA, so not
    GPU waits (anchors.py counts the released code's syncs without them)."""
    p = torch.nn.Parameter(torch.randn(3))
    p.grad = torch.randn(3)
    opt = torch.optim.Adam([p], foreach=False)
    opt.step()
    counts = {}
    for flag in (True, False):
        with HostSyncs(optimizer_step_reads=flag) as syncs:
            opt.step()
            p.sum().item()
        counts[flag] = syncs.total
    assert counts == {True: 2, False: 1}
