"""What the released code does, reproduced: G_ema's BatchNorm when sampling, LeCam's warm-up, lazy
regularisation steps, ADA's p, the CIFAR subset draw, clean teacher features of mirrored reals,
the StyleGAN2 few-shot sizes and the IS splits (docs/fidelity.md)."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from kdgan.augment.ada import AdaptiveP
from kdgan.config import LEGACY_VALUES, PRESETS, resolve
from kdgan.data import ImageSet, load_images, select_subset, to_model_range
from kdgan.errors import KdganError
from kdgan.generate import generate_images
from kdgan.losses.regularizers import LeCam
from kdgan.metrics import generate_uint8, get_protocol
from kdgan.metrics.compute import compute_is
from kdgan.nets import build_discriminator, build_generator, load_generator
from kdgan.nets.layers import recompute_standing_statistics
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer, lazy_adam_settings, net_configs
from tests.unit.test_checkpoint import tiny_data
from tests.unit.test_data import _cifar_archive

TINY_G = {"arch": "biggan", "z_dim": 8, "c_dim": 3, "img_resolution": 32, "ch": 4}


def trained_like_generator(bn_mode: str, bn_batch: int = 10):
    """A tiny BigGAN G whose BatchNorm buffers are stale (far from its activations' statistics)."""
    torch.manual_seed(0)
    G = build_generator({**TINY_G, "bn_mode": bn_mode, "bn_batch": bn_batch}).eval()
    with torch.no_grad():
        for m in G.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(3.0)
                m.running_var.fill_(0.01)
    return G


def batch_norm_buffers(G):
    return [b.clone() for name, b in G.named_buffers() if "running" in name]


# ----------------------------------------------------------------------------- 1. G_ema's BatchNorm
def test_batch_mode_uses_each_batch_of_bn_batch_and_ignores_the_buffers():
    G = trained_like_generator("batch")
    z, y = torch.randn(20, 8), torch.arange(20) % 3
    before = batch_norm_buffers(G)
    with torch.no_grad():
        out = G(z, y)
        # two batches of 10, each normalised with its own statistics: what train mode gives per batch
        train_mode = build_generator({**TINY_G}).train()
        train_mode.load_state_dict(G.state_dict())
        for m in train_mode.modules():  # spectral norm stays in eval mode (no power iteration)
            if not isinstance(m, torch.nn.BatchNorm2d):
                m.training = False
        expected = torch.cat([train_mode(z[:10], y[:10]), train_mode(z[10:], y[10:])])
        joint = train_mode(z, y)  # one batch of 20: different statistics
    torch.testing.assert_close(out, expected)
    assert not torch.allclose(out, joint, atol=1e-4)
    assert all(torch.equal(a, b) for a, b in zip(before, batch_norm_buffers(G), strict=True))
    assert not G.training and all(not m.training for m in G.modules())
    # stale buffers do not change what batch mode samples; they do change running mode
    fresh = trained_like_generator("batch")
    with torch.no_grad():
        for m in fresh.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
        torch.testing.assert_close(fresh(z, y), out)
        G.bn_mode = "running"
        stale = G(z, y)
        fresh.bn_mode = "running"
        assert (stale - fresh(z, y)).abs().mean() > 0.1


def test_a_single_image_falls_back_to_running_statistics():
    G = build_generator({"arch": "mlp", "z_dim": 8, "c_dim": 0, "img_resolution": 8, "ch": 16,
                         "bn_mode": "batch"}).eval()
    z = torch.randn(2, 8)
    with torch.no_grad():
        one = G(z[:1])  # batch statistics of one image over the MLP's units do not exist
        G.bn_mode = "running"
        torch.testing.assert_close(one, G(z[:1]))
        batch = build_generator({**G.config, "bn_mode": "batch"}).eval()
        batch.load_state_dict(G.state_dict())
        assert not torch.allclose(G(z), batch(z))  # two images: batch statistics


def test_standing_statistics_are_recomputed_from_fresh_batches():
    G = trained_like_generator("standing")
    first_bn = G.blocks[0].bn1.bn
    inputs = []
    hook = first_bn.register_forward_hook(lambda m, args, out: inputs.append(args[0].detach().clone()))
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    recompute_standing_statistics(G, num_batches=4, batch_size=6, seed=0)
    hook.remove()
    assert torch.equal(torch.get_rng_state(), rng_before)  # a private RNG
    assert len(inputs) == 4 and not G.training
    # the running mean is the average of the 4 batch means (cumulative average, momentum None)
    batch_means = torch.stack([x.mean(dim=(0, 2, 3)) for x in inputs])
    torch.testing.assert_close(first_bn.running_mean, batch_means.mean(0))
    assert first_bn.momentum == 0.1  # restored
    # the stale buffers are gone: the same result whatever they held before
    other = trained_like_generator("standing")
    with torch.no_grad():
        for m in other.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(-5.0)
    recompute_standing_statistics(other, num_batches=4, batch_size=6, seed=0)
    z = torch.randn(5, 8)
    with torch.no_grad():
        torch.testing.assert_close(G(z, None), other(z, None))


def test_the_bn_mode_travels_with_the_export_and_generate_pads_whole_batches(tmp_path):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 2, "ema_bn_batch": 6})
    assert cfg.ema_bn_mode == "batch"
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_data())
    assert t.G_ema.bn_mode == "batch" and t.G_ema.bn_batch == 6
    t.run()
    G = load_generator(tmp_path / "run" / "export")
    assert (G.bn_mode, G.bn_batch) == ("batch", 6)
    assert load_generator(t.ckpts.path(2)).bn_mode == "batch"
    assert load_generator(tmp_path / "run" / "export", bn_mode="running").bn_mode == "running"
    with pytest.raises(KdganError, match="unknown BatchNorm mode"):
        load_generator(tmp_path / "run" / "export", bn_mode="eval")
    # image i depends on the seed alone: whole groups of 6, whatever --num and --batch-size
    a = generate_images(tmp_path / "run" / "export", 4, tmp_path / "a", npz=True, device="cpu")
    b = generate_images(tmp_path / "run" / "export", 9, tmp_path / "b", npz=True, batch_size=5,
                        device="cpu")
    with np.load(a["npz"]) as za, np.load(b["npz"]) as zb:
        assert za["arr_0"].shape[0] == 4 and zb["arr_0"].shape[0] == 9
        assert np.array_equal(za["arr_0"], zb["arr_0"][:4])
    assert np.array_equal(generate_uint8(G, 7, 0, 4), generate_uint8(G, 12, 0, 100)[:7])
    # an export written before the field existed samples as it did then: running statistics
    st = tmp_path / "run" / "export" / "G_ema.safetensors"
    net = {k: v for k, v in G.config.items() if k not in ("bn_mode", "bn_batch")}
    old = tmp_path / "old"
    old.mkdir()
    save_file(load_file(str(st)), str(old / "G_ema.safetensors"),
              metadata={"kdgan_net_config": json.dumps(net)})
    assert load_generator(old).bn_mode == "running"


def test_standing_mode_recomputes_before_sampling_and_at_load(tmp_path):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 2, "ema_bn_mode": "standing"})
    t = Trainer(cfg, tmp_path / "run", dataset=tiny_data())
    t.run()
    exported = load_file(str(tmp_path / "run" / "export" / "G_ema.safetensors"))
    key = "blocks.0.bn1.bn.running_mean"
    assert not torch.equal(exported[key], t.G.state_dict()[key])  # not G's copied buffers
    G = load_generator(t.ckpts.path(2))  # the checkpoint holds G's copies; recomputed at load
    torch.testing.assert_close(G.state_dict()[key], exported[key])


def test_resume_is_unaffected_by_sampling_modes(tmp_path):
    """ema_bn_mode only changes sampling: a run may change it on resume."""
    fields = {"data": "in-memory", "device": "cpu"}
    a = Trainer(resolve("tiny", {**fields, "steps": 2}), tmp_path, dataset=tiny_data())
    a.run()
    b = Trainer(resolve("tiny", {**fields, "steps": 3, "ema_bn_mode": "standing", "ema_bn_batch": 8}),
                tmp_path, dataset=tiny_data())
    b.load_state_dict(load_checkpoint(a.ckpts.path(2)))
    assert b.step == 2


# ----------------------------------------------------------------------------- 2. StyleGAN2 sizes
@pytest.mark.slow
def test_stylegan2_fewshot_networks_have_diffaugments_low_shot_sizes():
    cfg = resolve("stylegan2-obama-da", {})
    g, d = net_configs(cfg, 0)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    # stylegan2-ada-pytorch's Generator / Discriminator with the low-shot settings: the same counts
    assert count(build_generator(g)) == 28_458_402 and count(build_discriminator(d)) == 28_864_129


def test_stylegan2_fewshot_presets_are_diffaugments_low_shot_config():
    cfg = resolve("stylegan2-obama-da", {})
    assert (cfg.channel_base, cfg.channel_max, cfg.mapping_layers) == (32768, 512, 2)
    assert cfg.ema_decay == pytest.approx(0.5 ** (16 / 10_000))  # half-life 10 kimg at batch 16
    assert cfg.lazy_reg == "separate"


# ----------------------------------------------------------------------------- 3. LeCam
def released_lecam_schedule(d_steps, start, means):
    """The released BigGAN code's LeCam bookkeeping, worked by hand: one (real, fake) batch mean per
    D step; the anchors copy them while the G iteration itr < start, else decay 0.9; the term
    counts when itr > start."""
    a_real = a_fake = 1000.0
    out = []
    for i, (r, f) in enumerate(means):
        itr = i // d_steps
        decay = 0.0 if itr < start else 0.9
        a_real, a_fake = a_real * decay + r * (1 - decay), a_fake * decay + f * (1 - decay)
        out.append((a_real, a_fake, itr > start))
    return out


def test_lecam_warms_up_over_g_steps_as_released():
    torch.manual_seed(0)
    means = [(float(r), float(f)) for r, f in torch.randn(20, 2)]
    lc = LeCam(decay=0.9, start_steps=2, warmup="g-steps", d_steps=4)
    for d_step, ((r, f), (a_r, a_f, on)) in enumerate(zip(means, released_lecam_schedule(4, 2, means),
                                                          strict=True)):
        lc.update(torch.full((3,), r), torch.full((3,), f), d_step)
        assert lc.anchor_real.item() == pytest.approx(a_r, rel=1e-5)
        assert lc.anchor_fake.item() == pytest.approx(a_f, rel=1e-5)
        assert lc.active(d_step) == on
    assert [lc.active(s) for s in (11, 12)] == [False, True]  # G step 3 is the first with R_LC
    assert LeCam(start_steps=0).active(0) and LeCam(start_steps=5, warmup="d-updates").active(0)


def test_lecam_term_is_zero_during_warmup_in_the_objective(tmp_path):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "lecam_weight": 0.3,
                           "lecam_start_steps": 1})
    t = Trainer(cfg, tmp_path, dataset=tiny_data())
    real, labels, idx = t.real_batch(0)
    early, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, d_step=3)  # G step 1: off
    late, _ = t.objective.d_terms(t.G, t.D, real, labels, idx, d_step=4)  # G step 2 > 1: on
    assert early["d/lecam"].item() == 0.0 and late["d/lecam"].item() > 0
    assert resolve("biggan-cifar10-10pct-lecam-da-kd", {}).lecam_decay == 0.9
    assert resolve("biggan-cifar10-10pct-lecam-da-kd", {"lecam_decay": 0.99}).lecam_decay == 0.99


# ----------------------------------------------------------------------------- 4. lazy regularisation
def test_lazy_regularisation_scales_adam_as_stylegan2_ada():
    cfg = resolve("stylegan2-obama-da", {})
    lr, betas = lazy_adam_settings(cfg, "D")
    assert lr == pytest.approx(0.002 * 16 / 17) and betas == pytest.approx((0.0, 0.99 ** (16 / 17)))
    lr, betas = lazy_adam_settings(cfg, "G")
    assert lr == pytest.approx(0.002 * 4 / 5) and betas == pytest.approx((0.0, 0.99 ** 0.8))
    fused = resolve("stylegan2-obama-da", {"lazy_reg": "fused"})
    assert lazy_adam_settings(fused, "D") == (0.002, (0.0, 0.99))
    assert lazy_adam_settings(resolve(None, {}), "D") == (2e-4, (0.0, 0.999))  # R1 off


def r1_trainer(tmp_path, lazy_reg):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "r1_gamma": 10.0, "r1_every": 2,
                           "diffaugment": "", "lazy_reg": lazy_reg, "d_steps": 1})
    return Trainer(cfg, tmp_path / lazy_reg, dataset=tiny_data())


def test_separate_lazy_r1_is_its_own_step_with_the_same_value(tmp_path):
    fused, separate = r1_trainer(tmp_path, "fused"), r1_trainer(tmp_path, "separate")
    fused.D.eval(), separate.D.eval()  # spectral norm without power iterations: the same D in every pass
    real, labels, idx = fused.real_batch(0)
    torch.manual_seed(0)
    terms_f, _ = fused.objective.d_terms(fused.G, fused.D, real, labels, idx, 0)
    torch.manual_seed(0)
    terms_s, _ = separate.objective.d_terms(separate.G, separate.D, real, labels, idx, 0)
    reg, _ = separate.objective.d_reg_terms(separate.D, real, labels, 0)
    assert "d/r1" in terms_f and "d/r1" not in terms_s and set(reg) == {"d/r1"}
    torch.testing.assert_close(reg["d/r1"], terms_f["d/r1"])  # BigGAN D: no batch interaction
    assert separate.objective.d_reg_terms(separate.D, real, labels, 1) == ({}, {})
    assert fused.objective.d_reg_terms(fused.D, real, labels, 0) == ({}, {})
    # one train step at D step 0: main + R1 = 2 Adam steps (fused: 1)
    for t, n in ((fused, 1), (separate, 2)):
        t.D.train()
        t.train_step()
        p = next(t.D.parameters())
        assert t.opt_D.state[p]["step"].item() == n


def test_separate_lazy_path_length_is_its_own_g_step(tmp_path):
    cfg = resolve("stylegan2-tiny", {"data": "in-memory", "device": "cpu", "resolution": 16, "batch_size": 4,
                                     "pl_every": 2, "r1_every": 2})
    faces = ImageSet(np.random.default_rng(0).integers(0, 256, (8, 16, 16, 3), dtype=np.uint8))
    t = Trainer(cfg, tmp_path, dataset=faces)
    assert t.opt_G.param_groups[0]["lr"] == pytest.approx(0.002 * 2 / 3)
    terms, _ = t.objective.g_terms(t.G, t.D, 4, t.device, 0)
    reg, stats = t.objective.g_reg_terms(t.G, t.D, 4, t.device, 0)
    assert "g/pl" not in terms and set(reg) == {"g/pl"} and "stats/pl_mean" in stats
    logs = t.train_step()
    assert "g/pl" in logs and "d/r1" in logs
    assert t.opt_G.state[next(t.G.parameters())]["step"].item() == 2


# ----------------------------------------------------------------------------- 5. ADA's p
def test_ada_p_is_floored_at_zero_only_unless_capped():
    for p_max, expected in ((None, 1.05), (1.0, 1.0)):
        ctl = AdaptiveP(target=0.6, batch_size=16, interval=1, kimg=0.32, p_init=1.0, p_max=p_max)
        ctl.accumulate(torch.ones(4))  # r_t = 1 > 0.6: p grows by 16 / 320
        ctl.adjust(0)
        assert ctl.value == pytest.approx(expected)
    ctl = AdaptiveP(target=0.6, batch_size=16, interval=1, kimg=0.32, p_init=0.0)
    ctl.accumulate(-torch.ones(4))
    ctl.adjust(0)
    assert ctl.value == 0.0


# ----------------------------------------------------------------------------- 6. clean teacher features
def test_clean_teacher_features_follow_the_mirror_image_d_sees(tmp_path):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "teacher": "clip-tiny-random",
                           "kd": "agkd", "clip_on": "clean"})
    t = Trainer(cfg, tmp_path, dataset=tiny_data())
    n = len(t.dataset)
    torch.manual_seed(3)
    real, _, idx = t.real_batch(0)
    assert (idx >= n).any() and (idx < n).any()
    images = to_model_range(t.images[idx % n])
    flipped = idx >= n
    torch.testing.assert_close(real, torch.where(flipped.view(-1, 1, 1, 1), images.flip(3), images))
    feats = t.clean_real_features(idx)
    with torch.no_grad():
        torch.testing.assert_close(feats, t.teacher.image_features(real), atol=1e-5, rtol=1e-5)
    i = int(idx[flipped][0]) % n
    assert not torch.allclose(t.clean_real_features(torch.tensor([i])),
                              t.clean_real_features(torch.tensor([i + n])))


# ----------------------------------------------------------------------------- 7. the subset draw
def test_released_subset_draw_is_numpys_global_seed_draw():
    picked = select_subset(50_000, 0.1, seed=0)  # draw = released
    np.random.seed(0)
    released = np.random.choice(50_000, 5_000, replace=False)
    assert np.array_equal(picked, np.sort(released))
    # numpy's legacy stream is frozen: the released code's first draws, by hand
    assert released[:5].tolist() == [11841, 19602, 45519, 25747, 42642]
    other = select_subset(50_000, 0.1, seed=0, draw="generator")
    assert np.array_equal(other, np.sort(np.random.default_rng(0).choice(50_000, 5_000, replace=False)))
    assert len(np.intersect1d(picked, other)) < 1000
    with pytest.raises(KdganError, match="released or generator"):
        select_subset(100, 0.5, 0, draw="numpy")


def test_cifar_archives_are_in_the_original_order(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    _cifar_archive(path)
    train, _ = load_images(path)
    assert train.meta["order"] == "cifar-original"
    cfg = resolve("biggan-cifar10-10pct-da", {})
    assert (cfg.data_draw, cfg.data_seed, cfg.data_fraction) == ("released", 0, 0.1)


# ----------------------------------------------------------------------------- resume of older runs
def test_runs_from_before_these_fields_resume_with_their_legacy_values(tmp_path):
    a = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 2, "lecam_weight": 0.3}),
                tmp_path, dataset=tiny_data())
    a.run()
    ckpt = load_checkpoint(a.ckpts.path(2))
    for field in LEGACY_VALUES:  # as a checkpoint written before they existed
        del ckpt["config"][field]
    ckpt["config"]["lecam_decay"] = 0.99  # the old default
    again = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 3, "lecam_weight": 0.3}),
                    tmp_path, dataset=tiny_data())
    with pytest.raises(KdganError, match=r"lecam_decay: 0.99 -> 0.9; lecam_warmup: 'd-updates' -> 'g-steps'"):
        again.load_state_dict(ckpt)
    old = resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 3, "lecam_weight": 0.3,
                           "lecam_decay": 0.99, "lecam_warmup": "d-updates"})
    Trainer(old, tmp_path, dataset=tiny_data()).load_state_dict(ckpt)
    # fields with no effect in this run (LeCam off) do not stop a resume
    b = Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 2}), tmp_path / "b",
                dataset=tiny_data())
    b.run()
    ckpt = load_checkpoint(b.ckpts.path(2))
    ckpt["config"]["lecam_decay"] = 0.99
    del ckpt["config"]["lecam_warmup"]
    Trainer(resolve("tiny", {"data": "in-memory", "device": "cpu", "steps": 3}), tmp_path / "b",
            dataset=tiny_data()).load_state_dict(ckpt)


# ----------------------------------------------------------------------------- 8. evaluation details
def test_inception_score_splits_are_consecutive_as_released():
    torch.manual_seed(0)
    logits = torch.randn(100, 10) * 3
    p = logits.double().softmax(1)
    by_hand = []
    for i in range(10):  # the released calculate_inception_score, in order
        chunk = p[i * 10:(i + 1) * 10]
        kl = (chunk * (chunk.log() - chunk.mean(0, keepdim=True).log())).sum(1).mean()
        by_hand.append(kl.exp().item())
    mean, std = compute_is(logits, splits=10)
    assert mean == pytest.approx(np.mean(by_hand)) and std == pytest.approx(np.std(by_hand))


def test_cifar_protocol_repeats_three_times_and_labels_are_drawn_as_released():
    assert get_protocol("cifar").repeats == 3 and get_protocol("fewshot").repeats == 1
    G = build_generator({**TINY_G, "bn_mode": "running"}).eval()
    seen = []
    forward = G.forward
    G.forward = lambda z, y: seen.append(y.clone()) or forward(z, y)
    generate_uint8(G, 30, seed=5, batch_size=30)
    g = torch.Generator().manual_seed(5)
    torch.randn(30, 8, generator=g)
    assert torch.equal(seen[0], torch.randint(0, 3, (30,), generator=g))  # i.i.d. uniform labels
    generate_uint8(G, 30, seed=5, batch_size=30, labels="cycle")
    assert torch.equal(seen[1], torch.arange(30) % 3)


def test_spectral_norm_epsilon_is_biggans():
    G = build_generator(TINY_G)
    assert G.linear.parametrizations.weight[0].eps == 1e-8
    assert all(name in PRESETS for name in ("biggan-cifar10-10pct-da", "stylegan2-obama-da"))


class PooledPixels(torch.nn.Module):
    """A small fixed feature network: mean pixels over a k x k grid (a stand-in for Inception / VGG)."""

    def __init__(self, k: int):
        super().__init__()
        self.k = k

    def forward(self, x):
        return (torch.nn.functional.adaptive_avg_pool2d(x.float(), self.k).flatten(1),)


def test_precision_recall_use_vgg_features_when_present_else_say_not_comparable(tmp_path, monkeypatch):
    from kdgan.metrics import evaluate, extract_features
    from kdgan.metrics.compute import compute_precision_recall
    from kdgan.metrics.inception import InceptionFeatures
    from kdgan.metrics.vgg import load_vgg16

    monkeypatch.setenv("KDGAN_OFFLINE", "1")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    assert load_vgg16("cpu") is None  # no weights, no download

    rng = np.random.default_rng(0)
    real, fake = (rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8) for _ in range(2))
    main = InceptionFeatures(PooledPixels(4), "pooled-4", False, torch.device("cpu"))
    vgg = InceptionFeatures(PooledPixels(2), "pooled-2", False, torch.device("cpu"))
    vgg.fid_stats = False
    ref, pr_ref = extract_features(real, main), extract_features(real, vgg)
    proto = get_protocol("custom", 40)
    with_vgg = evaluate(lambda s: fake, ref, main, proto, ("pr",), pr=(vgg, pr_ref))
    expected = compute_precision_recall(extract_features(fake, vgg).pool3, pr_ref.pool3)
    assert with_vgg["pr_features"] == "pooled-2" and not with_vgg["notes"]
    assert (with_vgg["metrics"]["precision"]["mean"], with_vgg["metrics"]["recall"]["mean"]) == expected
    fallback = evaluate(lambda s: fake, ref, main, proto, ("pr",))
    assert fallback["pr_features"] == "pooled-4 pool3"
    assert any("not comparable with published values" in n for n in fallback["notes"])


def test_vgg_reference_features_are_cached_without_fid_statistics(tmp_path, monkeypatch, image_folder):
    from kdgan.metrics import reference_features
    from kdgan.metrics.inception import InceptionFeatures

    monkeypatch.setenv("KDGAN_CACHE_DIR", str(tmp_path / "cache"))
    vgg = InceptionFeatures(PooledPixels(2), "pooled-2", False, torch.device("cpu"))
    vgg.fid_stats = False
    first = reference_features(str(image_folder), "train", vgg)
    again = reference_features(str(image_folder), "train", vgg)
    assert first.info["cache"] == "miss" and again.info["cache"] == "hit"
    assert torch.equal(first.pool3, again.pool3)
    with np.load(first.info["cache_file"]) as z:
        assert "sigma" not in z.files


def test_dry_run_shows_the_released_values():
    from click.testing import CliRunner

    from kdgan.cli import cli

    def dry_run(preset):
        out = CliRunner().invoke(cli, ["train", "--preset", preset, "--outdir", "unused", "--dry-run"])
        return json.loads(out.output)

    cfg = dry_run("biggan-cifar10-10pct-lecam-da-kd")
    assert (cfg["lecam_decay"], cfg["lecam_start_steps"], cfg["lecam_warmup"]) == (0.9, 1000, "g-steps")
    assert (cfg["ema_bn_mode"], cfg["ema_bn_batch"], cfg["data_draw"]) == ("batch", 50, "released")
    cfg = dry_run("stylegan2-obama-da")
    assert (cfg["channel_base"], cfg["lazy_reg"], cfg["ada_p_cap"]) == (32768, "separate", False)
    assert cfg["ema_decay"] == pytest.approx(0.5 ** (16 / 10_000))
