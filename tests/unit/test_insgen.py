"""InsGen: queue ring buffer, contrastive loss by hand, momentum updates, the loop, exact resume."""

import math

import pytest
import torch
from torch import nn

from kdgan.config import PRESETS, resolve
from kdgan.errors import KdganError
from kdgan.losses.insgen import ContrastiveHead, default_queue_size, enqueue, lazy_ratio
from kdgan.training.checkpoint import load_checkpoint, save_atomic
from kdgan.training.loop import Trainer
from kdgan.utils.seed import set_rng_state
from tests.unit.test_ada import tiny_faces
from tests.unit.test_checkpoint import assert_same_state, tiny_data


def test_enqueue_is_the_released_ring_buffer():
    queue, ptr = torch.zeros(4, 1), torch.zeros((), dtype=torch.long)
    enqueue(queue, ptr, torch.tensor([[1.0], [2.0], [3.0]]))
    assert queue.flatten().tolist() == [1, 2, 3, 0] and ptr.item() == 3
    enqueue(queue, ptr, torch.tensor([[4.0], [5.0], [6.0]]))  # wraps: one at the end, two at the start
    assert queue.flatten().tolist() == [5, 6, 3, 4] and ptr.item() == 2
    enqueue(queue, ptr, torch.tensor([[7.0], [8.0]]))  # fills to the end: ptr = K, as in the released code
    assert queue.flatten().tolist() == [5, 6, 7, 8] and ptr.item() == 4
    enqueue(queue, ptr, torch.tensor([[9.0]]))
    assert queue.flatten().tolist() == [9, 6, 7, 8] and ptr.item() == 1
    enqueue(queue, ptr, torch.arange(10.0, 16.0).view(6, 1))  # more keys than slots: the first K, ptr stays
    assert queue.flatten().tolist() == [10, 11, 12, 13] and ptr.item() == 1


def test_enqueue_with_the_host_copy_of_ptr_writes_the_same():
    """ContrastiveHead passes ptr's value it already knows (no read of the device tensor per push)."""
    pushes = [[[1.0], [2.0], [3.0]], [[4.0], [5.0], [6.0]], [[7.0], [8.0]], [[9.0]],
              [[float(i)] for i in range(6)]]
    a = (torch.zeros(4, 1), torch.zeros((), dtype=torch.long))
    b = (torch.zeros(4, 1), torch.zeros((), dtype=torch.long))
    at = 0
    for keys in pushes:
        returned = enqueue(*a, torch.tensor(keys))
        at = enqueue(*b, torch.tensor(keys), at)
        assert returned == at == a[1].item() == b[1].item() and torch.equal(a[0], b[0])


def identity_head(queue):
    head = ContrastiveHead(2, len(queue), temperature=0.2, momentum=0.999, out_dim=2)
    with torch.no_grad():
        for mlp in (head.mlp, head.momentum_mlp):
            for layer in (mlp[0], mlp[2]):
                layer.weight.copy_(torch.eye(2))
                layer.bias.zero_()
        head.queue.copy_(queue)
    return head


def test_contrastive_loss_by_hand_and_what_each_push_enqueues():
    head = identity_head(torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    q_feats, k_feats = torch.tensor([[2.0, 0.0]]), torch.tensor([[3.0, 0.0]])
    # q = k = (1, 0): logits (1, 0, 1) / 0.2; the positive is index 0
    expected = math.log(2 + math.exp(-5.0))
    assert head.loss(q_feats, k_feats, push=None).item() == pytest.approx(expected, rel=1e-6)
    assert head.ptr.item() == 0
    head.loss(q_feats, torch.tensor([[0.0, 4.0]]), push="key")  # the key's projection (0, 1)
    assert head.queue[0].tolist() == [0.0, 1.0] and head.ptr.item() == 1
    head.loss(torch.tensor([[5.0, 5.0]]), k_feats, push="query")  # the query's momentum projection
    r = 1 / math.sqrt(2)
    torch.testing.assert_close(head.queue[1], torch.tensor([r, r]))
    assert head.ptr.item() == 2


def test_key_projector_follows_the_query_projector_by_momentum():
    head = identity_head(torch.tensor([[0.0, 1.0]]))
    with torch.no_grad():
        head.mlp[0].weight.add_(1.0)
    head.loss(torch.ones(1, 2), torch.ones(1, 2))
    torch.testing.assert_close(head.momentum_mlp[0].weight, torch.eye(2) + 0.001)
    assert not any(p.requires_grad for p in head.momentum_mlp.parameters())


def test_queue_size_and_lazy_ratio_defaults():
    assert default_queue_size(100, True) == 10  # 100-shot with mirror flips (released default)
    assert default_queue_size(389, True) == 38 and default_queue_size(160, False) == 8
    assert default_queue_size(10, False) == 1
    assert lazy_ratio(16) == 16 / 17 and lazy_ratio(1) == 1.0


def sg2_insgen(run_dir, **overrides):
    fields = {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4, "r1_every": 2,
              "ada": "bgc", "ada_p": 0.5, "diffaugment": "", "insgen": True, **overrides}
    return Trainer(resolve("stylegan2-tiny", fields), run_dir, dataset=tiny_faces())


def test_head_optimisers_take_the_lazy_ratios_even_with_the_regularisers_off(tmp_path):
    # genforce/insgen builds DHead's and GHead's Adam with D's and G's reg intervals, always
    t = sg2_insgen(tmp_path, r1_gamma=0.0, pl_weight=0.0, r1_every=16, pl_every=4)
    lrs = sorted(g["lr"] for g in t.opt_aux.param_groups)
    assert lrs == pytest.approx(sorted([0.002 * 16 / 17, 0.002 * 4 / 5]))
    betas = sorted(g["betas"][1] for g in t.opt_aux.param_groups)
    assert betas == pytest.approx(sorted([0.99 ** (16 / 17), 0.99 ** (4 / 5)]))


def test_insgen_terms_train_d_g_and_the_heads_never_the_momentum_d(tmp_path):
    t = sg2_insgen(tmp_path)
    ins = t.objective.insgen
    assert ins.real_head.queue.shape == (1, 128)  # int(5% of 16) x 2 = 0 keys: at least 1
    assert [g["lr"] for g in t.opt_aux.param_groups] == pytest.approx([0.002 * 2 / 3, 0.002 * 2 / 3])
    before = ins.real_head.queue.clone()
    real, labels, idx = t.real_batch(0)
    terms, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, 1)
    assert {"d/insgen_real", "d/insgen_fake"} <= set(terms)
    assert not torch.equal(before, ins.real_head.queue)
    sum(terms.values()).backward()
    for head in (ins.real_head, ins.fake_head):
        assert head.mlp[0].weight.grad.abs().sum() > 0
    assert t.D.fromrgb.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in ins.D_ema.parameters())
    assert all(p.grad is None for p in t.G.parameters())
    t.D.zero_grad(set_to_none=True)
    t._d_requires_grad(False)
    g_terms, _ = t.objective.g_terms(t.G, t.D, 4, t.device)
    g_terms["g/insgen"].backward()
    assert t.G.mapping.fcs[0].weight.grad.abs().sum() > 0
    assert ins.fake_head.mlp[0].weight.requires_grad is False


def test_momentum_d_moves_towards_d_each_d_step(tmp_path):
    t = sg2_insgen(tmp_path, insgen_momentum=0.5)
    ins = t.objective.insgen
    with torch.no_grad():
        t.D.fromrgb.weight.add_(1.0)
    old = ins.D_ema.fromrgb.weight.clone()
    ins.update_momentum_d(t.D)
    torch.testing.assert_close(ins.D_ema.fromrgb.weight, 0.5 * old + 0.5 * t.D.fromrgb.weight)


def test_insgen_state_survives_a_checkpoint_and_resume_is_exact(tmp_path):
    a = sg2_insgen(tmp_path / "a")
    for _ in range(2):
        a.train_step()
    save_atomic(a.state_dict(), tmp_path / "c.pt")
    ckpt = load_checkpoint(tmp_path / "c.pt")
    saved = ckpt["objective"]["insgen"]
    assert {"D_ema.fromrgb.weight", "real_head.queue", "fake_head.ptr", "fake_head.momentum_mlp.0.weight"} \
        <= set(saved)
    assert ckpt["optim"]["aux"]["state"]
    b = sg2_insgen(tmp_path / "b")
    b.load_state_dict(ckpt)
    set_rng_state(ckpt["rng"][0])
    a.train_step()
    set_rng_state(ckpt["rng"][0])
    b.train_step()
    assert_same_state(a, b)
    sa, sb = a.objective.insgen.state_dict(), b.objective.insgen.state_dict()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path):
    whole = sg2_insgen(tmp_path / "whole", steps=3)
    whole.run()
    sg2_insgen(tmp_path / "split", steps=2).run()  # stopped after step 2 (its last checkpoint)
    resumed = sg2_insgen(tmp_path / "split", steps=3)
    assert resumed.run()["resumed_from"] == 2
    assert_same_state(whole, resumed)
    sw, sr = whole.objective.insgen.state_dict(), resumed.objective.insgen.state_dict()
    for k in sw:
        assert torch.equal(sw[k], sr[k]), k


def test_insgen_runs_with_the_biggan_discriminator(tmp_path):
    t = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "insgen": True}), tmp_path,
                dataset=tiny_data())
    logs = t.train_step()
    assert {"d/insgen_real", "d/insgen_fake", "g/insgen"} <= set(logs)
    assert all(torch.isfinite(v) for v in logs.values())


def test_presets_and_checks():
    for key, fid, fid_kd in (("obama", 45.85, 38.28), ("grumpy-cat", 27.48, 22.16), ("panda", 12.13, 9.51),
                             ("animalface-cat", 41.33, 32.39), ("animalface-dog", 55.12, 50.13)):
        plain, kd = PRESETS[f"stylegan2-{key}-insgen"], PRESETS[f"stylegan2-{key}-insgen-kd"]
        assert (plain.paper_fid, kd.paper_fid) == (fid, fid_kd)
        cfg = resolve(kd.name, {})
        assert cfg.insgen and cfg.ada == "bgc" and cfg.diffaugment == "" and cfg.teacher == "clip"
    with pytest.raises(KdganError, match="insgen_temperature"):
        resolve("stylegan2-tiny", {"insgen": True, "insgen_temperature": 0})


def test_head_modules_are_plain_linear_layers():
    head = ContrastiveHead(8, 3)
    assert [type(m) for m in head.mlp] == [nn.Linear, nn.ReLU, nn.Linear] and head.mlp[2].out_features == 128


def test_a_loaded_state_resets_the_host_copy_of_the_queue_pointer(tmp_path):
    """The heads track the queue pointer on the host; loading a state (an earlier checkpoint into
    a running trainer, say) must make them read it again, or keys land at a stale position."""
    import copy

    t = sg2_insgen(tmp_path / "a", insgen_queue=7)  # 4 keys per push into 7 slots: the pointer wraps
    t.train_step()
    state = copy.deepcopy(t.state_dict())
    for _ in range(2):
        t.train_step()  # the pointers move on
    fresh = sg2_insgen(tmp_path / "b", insgen_queue=7)
    for trainer in (t, fresh):
        trainer.load_state_dict(copy.deepcopy(state))
        trainer.train_step()
    for name in ("real_head", "fake_head"):
        a, b = getattr(t.objective.insgen, name), getattr(fresh.objective.insgen, name)
        assert a.ptr.item() == b.ptr.item() and torch.equal(a.queue, b.queue), name
