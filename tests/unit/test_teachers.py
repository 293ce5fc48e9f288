"""Teachers that are not the judge: the trained classifier teacher and torchvision / timm backbones."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from kdgan.config import kd_terms, resolve
from kdgan.data import ImageSet
from kdgan.errors import KdganError
from kdgan.teachers import build_teacher
from kdgan.teachers.classifier import CifarResNet, match_prompts, read_classifier, save_classifier
from kdgan.teachers.classifier_train import (
    ClassifierTrainConfig,
    augment,
    exclude_images,
    learning_rate,
    train_classifier,
)
from kdgan.training.checkpoint import load_checkpoint
from kdgan.training.loop import Trainer
from tests.conftest import write_image_folder
from tests.unit.test_checkpoint import tiny_data

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def saved_classifier(folder, class_names=("c0", "c1", "c2"), width=4, seed=0):
    torch.manual_seed(seed)
    net = CifarResNet(len(class_names), width=width, blocks=1)
    with torch.no_grad():  # non-trivial batch-norm statistics, so eval mode matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    save_classifier(folder, net, {"class_names": list(class_names), "resolution": 32, "val_accuracy": 0.5})
    return net.eval()


def assert_frozen(teacher):
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    teacher.train()
    assert not teacher.training


# ------------------------------------------------------------------ classifier teacher
def test_classifier_teacher_features_class_vectors_and_frozen(tmp_path):
    net = saved_classifier(tmp_path / "t", CIFAR)
    t = build_teacher("classifier", weights=str(tmp_path / "t"))
    assert t.supports_text and t.dim == 16 and t.class_names == tuple(CIFAR)
    assert_frozen(t)
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    feats = t.image_features(x)
    assert feats.shape == (5, 16) and feats.dtype == torch.float32 and (feats >= 0).all()
    with torch.no_grad():
        torch.testing.assert_close(feats, net.features(x))
        # the class embeddings are the rows of the final layer, matched by name
        text = t.text_features(["a photo of a dog", "cat", "A Truck."])
        assert torch.equal(text, net.fc.weight[[5, 3, 9]])
        # so image features x class embeddings are exactly the classifier's logits (CGKD's C_T)
        torch.testing.assert_close(feats @ t.text_features(CIFAR).t(), net(x))
    # D at 64 px: resized (antialiased bilinear) to the classifier's 32 px
    big = F.interpolate(x, size=(64, 64), mode="nearest")
    expected = net.features(F.interpolate(big, size=(32, 32), mode="bilinear", antialias=True))
    torch.testing.assert_close(t.image_features(big), expected.detach())
    sha = hashlib.sha256((tmp_path / "t" / "teacher.safetensors").read_bytes()).hexdigest()
    assert t.weights_sha256 == sha and "val acc 0.500" in t.name
    half = build_teacher("classifier", weights=str(tmp_path / "t" / "teacher.safetensors"), half=True)
    assert half.dtype == torch.float16 and half.image_features(x).dtype == torch.float32


def test_gradients_reach_the_images_not_the_classifier(tmp_path):
    saved_classifier(tmp_path / "t")
    t = build_teacher("classifier", weights=str(tmp_path / "t"))
    x = (torch.rand(2, 3, 32, 32) * 2 - 1).requires_grad_(True)
    t.image_features(x).sum().backward()
    assert x.grad.abs().sum() > 0 and all(p.grad is None for p in t.parameters())


@pytest.mark.slow
def test_compiled_classifier_teacher_matches_eager(tmp_path):
    saved_classifier(tmp_path / "t")
    eager = build_teacher("classifier", weights=str(tmp_path / "t"))
    compiled = build_teacher("classifier", weights=str(tmp_path / "t"), use_compile=True)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(compiled.image_features(x), eager.image_features(x), atol=1e-4, rtol=1e-4)
    assert not any(p.requires_grad for p in compiled.parameters())


def test_prompts_are_matched_to_classes_by_name():
    names = ["truck", "pickup_truck", "maple_tree", "dog"]
    assert match_prompts(["dog", "a dog", "a photo of a dog.", "Dog"], names) == [3, 3, 3, 3]
    assert match_prompts(["a maple tree", "maple_tree", "a pickup truck", "a truck"], names) == [2, 2, 1, 0]
    with pytest.raises(KdganError, match=r"'a photo of a happy person' names none of the classifier "
                       r"teacher's classes \(truck, pickup_truck, maple_tree, dog\)"):
        match_prompts(["a dog", "a photo of a happy person"], names)
    with pytest.raises(KdganError, match=r"names several \(truck, dog\)"):
        match_prompts(["a dog and a truck"], names)
    with pytest.raises(KdganError, match="names none"):
        match_prompts(["a doghouse"], names)  # whole words only


def test_classifier_teacher_errors(tmp_path):
    with pytest.raises(KdganError, match="needs --teacher-weights DIR"):
        build_teacher("classifier")
    with pytest.raises(KdganError, match="does not exist; pass --teacher-weights with the folder"):
        build_teacher("classifier", weights=str(tmp_path / "none"))
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(KdganError, match="is not a kdgan classifier teacher"):
        build_teacher("classifier", weights=str(tmp_path / "other.safetensors"))


# ------------------------------------------------------------------ training the classifier
def test_exclusion_by_pixel_hash_drops_equal_and_mirrored_images_only():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    ds = ImageSet(images, np.arange(6) % 2, ["a", "b"])
    near = images[4].copy()
    near[0, 0, 0] ^= 1  # one bit of one pixel differs: a different image
    excluded = ImageSet(np.stack([images[1], images[3][:, ::-1], near]))
    kept, dropped = exclude_images(ds, [excluded])
    assert dropped == 2 and len(kept) == 4
    assert [int(np.flatnonzero((images == k).all(axis=(1, 2, 3)))[0]) for k in kept.images] == [0, 2, 4, 5]
    assert kept.labels.tolist() == [0, 0, 0, 1]


def test_augmentation_crops_and_flips_and_the_schedule():
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    out = augment(x, torch.Generator().manual_seed(0), pad=4)
    assert out.shape == x.shape
    padded = F.pad(x, (4, 4, 4, 4))
    for b in range(2):  # every output is one crop of the padded image, maybe mirrored
        crops = [padded[b, :, i:i + 8, j:j + 8] for i in range(9) for j in range(9)]
        assert any(torch.equal(out[b], c) or torch.equal(out[b], c.flip(2)) for c in crops)
    assert learning_rate(0, 100, 10, 0.1) == pytest.approx(0.01)
    assert learning_rate(9, 100, 10, 0.1) == pytest.approx(0.1)
    assert learning_rate(55, 100, 10, 0.1) == pytest.approx(0.05)
    assert learning_rate(100, 100, 10, 0.1) == pytest.approx(0.0)


def tiny_labelled(root):
    write_image_folder(root / "train", {"cat": 24, "dog": 24}, seed=0)
    write_image_folder(root / "test", {"cat": 6, "dog": 6}, seed=1)
    gan = write_image_folder(root.parent / "gan", {"cat": 5}, seed=0)  # the first 5 cats
    return root, gan


def test_train_classifier_excludes_and_refuses_to_resume_other_settings(tmp_path):
    data, gan = tiny_labelled(tmp_path / "ds")
    cfg = ClassifierTrainConfig(str(data), exclude=(str(gan),), width=2, blocks=1, epochs=2, batch_size=8,
                                device="cpu")
    info = train_classifier(cfg, tmp_path / "full")
    assert info["exclusion"]["excluded_images"] == 5 and info["data"]["source_images"] == 48
    assert info["data"]["train_images"] + info["data"]["val_images"] == 43
    assert len(info["history"]) == 2 and 0 <= info["val_accuracy"] <= 1
    assert info["test_images"] == 12 and info["test_split"] == "test"
    assert info["class_names"] == ["cat", "dog"]

    from dataclasses import replace
    train_classifier(replace(cfg, epochs=1), tmp_path / "part")
    with pytest.raises(KdganError, match="different settings or data"):
        train_classifier(cfg, tmp_path / "part")  # epochs changes the schedule: not the same training
    with pytest.raises(KdganError, match="has no class labels"):
        train_classifier(replace(cfg, data=str(gan / "cat")), tmp_path / "bad")
    # a prepared zip of the training split has no test split: its images are never scored as "test"
    from kdgan.data.prepare import prepare

    prepare(str(data), tmp_path / "train.zip", split="train")
    info = train_classifier(replace(cfg, data=str(tmp_path / "train.zip"), epochs=1), tmp_path / "zip")
    assert info["test_images"] == 0 and info["test_accuracy"] is None and info["data"]["source_images"] == 48


def test_interrupted_classifier_training_resumes_bit_exactly(tmp_path, monkeypatch):
    import kdgan.teachers.classifier_train as ct

    data, gan = tiny_labelled(tmp_path / "ds")
    cfg = ClassifierTrainConfig(str(data), width=2, blocks=1, epochs=2, batch_size=8, device="cpu",
                                test_split="")
    train_classifier(cfg, tmp_path / "full")
    saves = []

    def stop_after_first(path, net, opt, meta):  # the real save, then an interruption
        real_save(path, net, opt, meta)
        saves.append(meta["epoch"])
        raise KeyboardInterrupt

    real_save = ct._save_checkpoint
    monkeypatch.setattr(ct, "_save_checkpoint", stop_after_first)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(cfg, tmp_path / "resumed")
    monkeypatch.setattr(ct, "_save_checkpoint", real_save)
    info = train_classifier(cfg, tmp_path / "resumed")
    assert saves == [1] and [h["epoch"] for h in info["history"]] == [1, 2]
    a, _ = read_classifier(tmp_path / "full")
    b, _ = read_classifier(tmp_path / "resumed")
    assert all(torch.equal(x, y)
               for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


# ------------------------------------------------------------------ torchvision / timm backbones
def test_torchvision_teacher_from_a_local_state_dict(tmp_path):
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.resnet18().eval()
    torch.save(net.state_dict(), tmp_path / "r18.pth")
    save_file(net.state_dict(), str(tmp_path / "r18.safetensors"))
    t = build_teacher("torchvision:resnet18", weights=str(tmp_path / "r18.pth"), resolution=64)
    assert t.dim == 512 and not t.supports_text and t.image_size == 64
    assert_frozen(t)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    feats = t.image_features(x)
    assert feats.shape == (2, 512) and feats.dtype == torch.float32
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    y = (F.interpolate((x + 1) / 2, size=(64, 64), mode="bilinear") - mean) / std
    net.fc = torch.nn.Identity()  # the pooled penultimate layer
    with torch.no_grad():
        torch.testing.assert_close(feats, net(y))
        other = build_teacher("torchvision:resnet18", weights=str(tmp_path / "r18.safetensors"),
                              resolution=64)
        torch.testing.assert_close(other.image_features(x), feats)
    assert build_teacher("torchvision:resnet18", weights=str(tmp_path / "r18.pth")).image_size == 224
    assert t.weights_sha256 == hashlib.sha256((tmp_path / "r18.pth").read_bytes()).hexdigest()
    with pytest.raises(ValueError, match="no text encoder"):
        t.text_features(["a dog"])


def test_timm_teacher_from_a_local_state_dict(tmp_path):
    import timm

    torch.manual_seed(0)
    full = timm.create_model("test_vit", pretrained=False).eval()  # with its classifier head
    torch.save({"state_dict": full.state_dict()}, tmp_path / "vit.pt")
    t = build_teacher("timm:test_vit", weights=str(tmp_path / "vit.pt"))
    assert t.dim == full.num_features and t.image_size == 160
    assert_frozen(t)
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    y = (F.interpolate((x + 1) / 2, size=(160, 160), mode="bilinear", align_corners=False) - 0.5) / 0.5
    with torch.no_grad():
        expected = full.forward_head(full.forward_features(y), pre_logits=True)
        torch.testing.assert_close(t.image_features(x), expected)


def test_backbone_teacher_errors(tmp_path):
    import torchvision

    with pytest.raises(KdganError, match="needs weights: --teacher-weights FILE"):
        build_teacher("torchvision:resnet18")
    with pytest.raises(KdganError, match="do not exist"):
        build_teacher("torchvision:resnet18", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(KdganError, match="unknown torchvision classification model 'resnet5'"):
        build_teacher("torchvision:resnet5", weights=str(tmp_path / "missing.pth"))
    with pytest.raises(KdganError, match="unknown timm model"):
        build_teacher("timm:no_such_model", weights="x.pt")
    torch.save(torchvision.models.resnet34().state_dict(), tmp_path / "r34.pth")
    with pytest.raises(KdganError, match="do not fit this model .*unexpected: layer1.2"):
        build_teacher("torchvision:resnet18", weights=str(tmp_path / "r34.pth"))
    torch.save(torchvision.models.resnet18(), tmp_path / "pickled.pth")  # a pickled module, not a state dict
    with pytest.raises(KdganError, match="cannot read teacher weights"):
        build_teacher("torchvision:resnet18", weights=str(tmp_path / "pickled.pth"))


def test_teacher_names_in_the_config():
    assert kd_terms(resolve(None, {"teacher": "classifier", "teacher_weights": "t"})) == ["agkd", "cgkd"]
    assert kd_terms(resolve(None, {"teacher": "torchvision:resnet50"})) == ["agkd"]
    assert kd_terms(resolve(None, {"teacher": "timm:vit_small_patch16_224"})) == ["agkd"]
    with pytest.raises(KdganError, match="the timm:resnet50 teacher is image-only"):
        resolve(None, {"teacher": "timm:resnet50", "kd": "agkd,cgkd"})
    for bad in ("torchvision:", "keras:resnet50", "classifer"):
        with pytest.raises(KdganError, match="teacher must be clip, inception, classifier"):
            resolve(None, {"teacher": bad})
    with pytest.raises(KdganError, match="teacher_resolution is the input size of a torchvision:/timm:"):
        resolve(None, {"teacher": "classifier", "teacher_resolution": 64})


# ------------------------------------------------------------------ in GAN training
def kd_trainer(run_dir, dataset=None, **overrides):
    fields = {"data": "in-memory", "device": "cpu", "steps": 2, **overrides}
    return Trainer(resolve("tiny", fields), run_dir, dataset=dataset if dataset is not None else tiny_data())


def assert_teacher_not_checkpointed(t, ckpt):
    n_saved = sum(v.numel() for net in ckpt["nets"].values() for v in net["state"].values())
    n_nets = sum(sum(v.numel() for v in m.state_dict().values()) for m in (t.G, t.D, t.G_ema))
    assert n_saved == n_nets
    keys = [k for net in ckpt["nets"].values() for k in net["state"]]
    assert not any(k.startswith(("teacher", "net.", "kd.teacher")) for k in keys)
    teacher_keys = set(t.teacher.state_dict())
    assert not teacher_keys & {k.split(".", 1)[1] for k in keys if "." in k}

    def tensors(obj):  # every tensor anywhere in the checkpoint (nets, optimisers, objective, ...)
        if isinstance(obj, torch.Tensor):
            yield obj
        elif isinstance(obj, dict):
            for v in obj.values():
                yield from tensors(v)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                yield from tensors(v)

    saved = list(tensors(ckpt))
    for p in t.teacher.parameters():
        assert not any(s.shape == p.shape and torch.equal(s.cpu(), p.detach().cpu()) for s in saved)


def test_gan_training_with_the_classifier_teacher_agkd_and_cgkd(tmp_path):
    saved_classifier(tmp_path / "teacher", ("c0", "c1", "c2"))
    t = kd_trainer(tmp_path / "run", teacher="classifier", teacher_weights=str(tmp_path / "teacher"))
    assert t.objective.kd.terms == ("agkd", "cgkd") and t.objective.kd.text.shape == (3, 16)
    before = [p.clone() for p in t.teacher.parameters()]
    logs = t.train_step()
    assert {"d/agkd", "d/cgkd"} <= set(logs) and all(torch.isfinite(v) for v in logs.values())
    t.run()
    assert all(torch.equal(a, b) for a, b in zip(before, t.teacher.parameters(), strict=True))
    ckpt = load_checkpoint(t.ckpts.path(2))
    assert_teacher_not_checkpointed(t, ckpt)
    assert ckpt["nets"]["D"]["config"]["kd_dim"] == 16
    assert ckpt["kd_teacher"]["weights_sha256"] == t.teacher.weights_sha256 != ""
    # another teacher file under the same path: the run refuses to resume with it
    saved_classifier(tmp_path / "teacher", ("c0", "c1", "c2"), seed=1)
    again = kd_trainer(tmp_path / "run", teacher="classifier", teacher_weights=str(tmp_path / "teacher"),
                       steps=3)
    with pytest.raises(KdganError, match="different classifier teacher weights"):
        again.run()


def test_classifier_prompts_for_unlabelled_data_are_its_classes(tmp_path):
    saved_classifier(tmp_path / "teacher", ("cat", "dog"))
    data = tiny_data()
    unlabelled = ImageSet(data.images)
    t = kd_trainer(tmp_path / "run", unlabelled, teacher="classifier",
                   teacher_weights=str(tmp_path / "teacher"))
    assert torch.equal(t.objective.kd.text, t.teacher.net.fc.weight)
    with pytest.raises(KdganError, match="names none of the classifier teacher's classes"):
        kd_trainer(tmp_path / "run2", unlabelled, teacher="classifier", prompts="faces",
                   teacher_weights=str(tmp_path / "teacher"))


def test_gan_training_with_a_torchvision_teacher(tmp_path):
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    t = kd_trainer(tmp_path / "run", teacher="torchvision:resnet18",
                   teacher_weights=str(tmp_path / "r18.pth"), teacher_resolution=32, clip_on="clean")
    assert t.objective.kd.terms == ("agkd",)
    before = [p.clone() for p in t.teacher.parameters()]
    t.run()
    assert all(torch.equal(a, b) for a, b in zip(before, t.teacher.parameters(), strict=True))
    ckpt = load_checkpoint(t.ckpts.path(2))
    assert_teacher_not_checkpointed(t, ckpt)
    assert ckpt["nets"]["D"]["config"]["kd_dim"] == 512
