"""The BLIP teacher (transformers, optional extra kdgan[blip]) on a tiny random BLIP."""

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the BLIP teacher needs pip install 'kdgan[blip]'")

from kdgan.config import PRESETS, kd_terms, resolve  # noqa: E402
from kdgan.errors import KdganError  # noqa: E402
from kdgan.teachers import build_teacher  # noqa: E402
from kdgan.teachers.blip import load_blip  # noqa: E402
from kdgan.training.loop import Trainer  # noqa: E402
from tests.unit.test_checkpoint import tiny_data  # noqa: E402


def test_tiny_blip_is_frozen_and_gives_itc_features_of_images_and_prompts():
    t = build_teacher("blip-tiny-random")
    assert t.dim == 16 and t.supports_text and not t.training
    assert not any(p.requires_grad for p in t.parameters())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    feats = t.image_features(x)
    assert feats.shape == (2, 16) and feats.dtype == torch.float32
    # the ITC image feature is vision_proj of the ViT's [CLS] token of the upsampled image
    with torch.no_grad():
        up = torch.nn.functional.interpolate(x, size=(32, 32), mode="nearest")
        cls = t.model.vision_model(pixel_values=up).last_hidden_state[:, 0]
        torch.testing.assert_close(t.image_features(x), t.model.vision_proj(cls))
    text = t.text_features(["a cat", "a photo of a dog", "a ship"])
    assert text.shape == (3, 16) and not torch.allclose(text[0], text[1])
    x.requires_grad_(True)
    t.image_features(x).sum().backward()  # differentiable in its input (pd_mode = generator)
    assert x.grad is not None and all(p.grad is None for p in t.parameters())


def test_blip_teacher_in_training_with_agkd_and_cgkd(tmp_path):
    cfg = resolve("tiny", {"data": "in-memory", "device": "cpu", "teacher": "blip-tiny-random"})
    assert kd_terms(cfg) == ["agkd", "cgkd"]  # a text teacher: both terms by default
    t = Trainer(cfg, tmp_path, dataset=tiny_data())
    assert t.D.config["kd_dim"] == 16
    logs = t.train_step()
    assert logs["d/agkd"] > 0 and logs["d/cgkd"] > 0


def test_missing_weights_are_one_clear_error(tmp_path):
    with pytest.raises(KdganError, match="does not exist; pass a folder saved with save_pretrained"):
        load_blip(str(tmp_path / "no-such-folder"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(KdganError, match="cannot load BLIP weights"):
        load_blip(str(tmp_path / "empty"))


def test_a_saved_blip_folder_loads_back(tmp_path):
    tiny = build_teacher("blip-tiny-random")
    tiny.model.save_pretrained(tmp_path / "blip")
    tiny.tokenizer.save_pretrained(tmp_path / "blip")
    loaded = build_teacher("blip", weights=str(tmp_path / "blip"))
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(loaded.image_features(x), tiny.image_features(x))
        torch.testing.assert_close(loaded.text_features(["a cat"]), tiny.text_features(["a cat"]))


def test_preset():
    p = PRESETS["biggan-cifar10-10pct-da-kd-blip"]
    assert p.paper_fid == 15.74 and p.overrides["teacher"] == "blip"
    assert PRESETS["biggan-cifar10-10pct-da-kd"].paper_fid == 14.20  # the CLIP teacher's row
